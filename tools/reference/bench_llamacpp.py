#!/usr/bin/env python3
"""Benchmark llama.cpp (via llama-cpp-python) as a speed reference for hlm.

    python3 tools/reference/bench_llamacpp.py --model MODEL.gguf --threads 2 --json

Mirrors llama-bench's pp/tg tests using the low-level API
(llama_batch_get_one + llama_decode + llama_synchronize):

  pp: after one warm-up run, roll the KV cache back to --depth tokens and time
      ONE llama_decode of an n_prompt-token batch (n_batch = n_ubatch >=
      n_prompt, logits only for the last token).  Repeated --reps times; the
      median is reported.
  tg: after a one-token warm-up, roll the KV cache back to --depth tokens and
      time n_gen consecutive single-token llama_decode calls (like
      llama-bench's "tg64 @ d<depth>").  Repeated --reps times; the median is
      reported.

The context holds --ctx tokens (default 512, as hlm bench engine's).  The
--depth cached tokens are decoded once, before the timed runs.  The JSON also
reports the process's peak resident memory (ru_maxrss).

Token ids are pseudo-random (fixed seed) like llama-bench; speed does not
depend on their values.  Exit code 2 if llama_cpp cannot be imported.
"""

import argparse
import ctypes
import json
import os
import random
import resource
import statistics
import sys
import time


def import_llama_cpp():
    try:
        import llama_cpp
    except Exception as e:  # ImportError or a broken shared library
        sys.stderr.write(
            "error: cannot import llama_cpp (%s).\n"
            "Install the reference with: pip install -r tools/reference/requirements.txt\n" % e)
        sys.exit(2)
    return llama_cpp


def main():
    ap = argparse.ArgumentParser(description="llama.cpp pp/tg tokens/s reference benchmark")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--n-prompt", type=int, default=128)
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--depth", type=int, default=0, help="tokens cached before pp and tg")
    ap.add_argument("--ctx", type=int, default=512, help="context size (KV cache) in tokens")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per test (median reported)")
    ap.add_argument("--flash-attn", action="store_true", help="enable flash attention (default off)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()

    if args.threads < 1 or args.n_prompt < 1 or args.n_gen < 1 or args.reps < 1:
        ap.error("--threads, --n-prompt, --n-gen and --reps must be >= 1")
    if args.depth < 0 or args.ctx < args.depth + max(args.n_prompt, args.n_gen):
        ap.error("--ctx must hold --depth plus max(--n-prompt, --n-gen) tokens")
    if not os.path.isfile(args.model):
        sys.stderr.write("error: model not found: %s\n" % args.model)
        return 1

    llama_cpp = import_llama_cpp()

    n_batch = max(512, args.n_prompt)
    llm = llama_cpp.Llama(
        model_path=args.model, n_ctx=args.ctx, n_batch=n_batch, n_ubatch=n_batch,
        n_threads=args.threads, n_threads_batch=args.threads, logits_all=False,
        flash_attn=args.flash_attn, verbose=False)
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()

    def clear_cache():  # back to the --depth cached tokens
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, args.depth, -1)

    def decode(tokens):
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            raise RuntimeError("llama_decode returned %d" % rc)

    rng = random.Random(1234)
    prompt = [rng.randrange(n_vocab) for _ in range(args.n_prompt)]
    gen = [rng.randrange(n_vocab) for _ in range(args.n_gen)]
    context = [rng.randrange(n_vocab) for _ in range(args.depth)]
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
    for i in range(0, args.depth, n_batch):
        decode(context[i:i + n_batch])
    llama_cpp.llama_synchronize(ctx)
    # pre-build the single-token arrays so Python overhead stays out of the loop
    gen_arrs = [(llama_cpp.llama_token * 1)(t) for t in gen]

    def run_pp():
        clear_cache()
        t0 = time.perf_counter()
        decode(prompt)
        llama_cpp.llama_synchronize(ctx)
        return time.perf_counter() - t0

    def run_tg():
        clear_cache()
        t0 = time.perf_counter()
        for arr in gen_arrs:
            rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, 1))
            if rc != 0:
                raise RuntimeError("llama_decode returned %d" % rc)
            llama_cpp.llama_synchronize(ctx)
        return time.perf_counter() - t0

    # warm-up (as llama-bench: one pp run, one single-token run)
    run_pp()
    clear_cache()
    decode(gen[:1])
    llama_cpp.llama_synchronize(ctx)

    pp_times = [run_pp() for _ in range(args.reps)]
    tg_times = [run_tg() for _ in range(args.reps)]
    pp_tps = [args.n_prompt / t for t in pp_times]
    tg_tps = [args.n_gen / t for t in tg_times]

    result = {
        "pp_tokens_per_s": round(statistics.median(pp_tps), 2),
        "tg_tokens_per_s": round(statistics.median(tg_tps), 2),
        "threads": args.threads,
        "n_prompt": args.n_prompt,
        "n_gen": args.n_gen,
        "depth": args.depth,
        "ctx": args.ctx,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "reference": "llama-cpp-python %s" % llama_cpp.__version__,
        "reps": args.reps,
        "pp_tokens_per_s_runs": [round(x, 2) for x in pp_tps],
        "tg_tokens_per_s_runs": [round(x, 2) for x in tg_tps],
        "flash_attn": bool(args.flash_attn),
        "model": os.path.basename(args.model),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print("%s  threads=%d" % (result["reference"], args.threads))
        print("pp%-5d %8.2f tok/s  runs %s" % (args.n_prompt, result["pp_tokens_per_s"],
                                                result["pp_tokens_per_s_runs"]))
        print("tg%-5d %8.2f tok/s  runs %s" % (args.n_gen, result["tg_tokens_per_s"],
                                                result["tg_tokens_per_s_runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
