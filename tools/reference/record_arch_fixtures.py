#!/usr/bin/env python3
"""Record llama.cpp's logits on the small random-weight model of every architecture and weight type.

The models come from hlm's own writer (build/src/engine/write_arch_models, from
arch_test_spec in src/engine/model_writer.h); the test regenerates the same bytes, checks their
sha256 against this fixture and compares its logits (src/engine/engine_arch_test.cc). llama.cpp is
only the oracle; nothing here is linked into hlm.

    python3 tools/reference/record_arch_fixtures.py \
        --writer build/src/engine/write_arch_models --out tests/fixtures/arch_logits.json
"""

import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from record_fixtures import import_llama_cpp, sha256_file, topk, write_json  # noqa: E402

N_CTX = 64
TOP_K = 50            # entries kept at the last position
TOP_K_POSITIONS = 8   # entries kept at every position
# BOS then 23 ordinary tokens of the writer's 279-token vocabulary: longer than gemma3's
# 8-position sliding window, so sliding and global layers differ.
PROMPT = [1] + [(7 + 13 * i) % 276 + 3 for i in range(23)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writer", required=True, help="path to the write_arch_models binary")
    ap.add_argument("--out", required=True, help="fixture to write (tests/fixtures/arch_logits.json)")
    args = ap.parse_args()

    llama_cpp = import_llama_cpp()
    import numpy as np

    models = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = subprocess.run([args.writer, tmp], check=True, capture_output=True,
                               text=True).stdout.split()
        for path in paths:
            name = os.path.basename(path)[: -len(".gguf")]
            arch, type_name = name.split("-", 1)
            llm = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                                  n_threads=2, n_threads_batch=2, logits_all=True,
                                  flash_attn=False, verbose=False)
            llm.reset()
            llm.eval(PROMPT)
            logits = np.array(llm.scores[: len(PROMPT), :], dtype=np.float32)
            models.append({
                "name": name,
                "arch": arch,
                "type": type_name,
                "sha256": sha256_file(path),
                "argmax": int(np.argmax(logits[-1])),
                "top": topk(np, logits[-1], TOP_K),
                "top_all_positions": [topk(np, row, TOP_K_POSITIONS) for row in logits],
            })
            print("%-12s argmax %d" % (name, models[-1]["argmax"]))
            del llm
    write_json(args.out, {
        "reference": "llama-cpp-python %s" % llama_cpp.__version__,
        "ids": PROMPT,
        "n_ctx": N_CTX,
        "notes": ("Each model (arch_test_spec(arch, type), written by write_arch_models) evaluates "
                  "'ids' from an empty KV cache in one batch (logits_all, flash_attn off). 'top' = "
                  "the 50 largest logits of the last position as [token_id, logit]; "
                  "'top_all_positions'[p] = the 8 largest at position p."),
        "models": models,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
