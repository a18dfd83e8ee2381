#!/usr/bin/env python3
"""Record reference fixtures for hlm from llama.cpp (via llama-cpp-python).

llama.cpp is used ONLY as an oracle here; hlm never links it.  The files this
script writes are committed under tests/fixtures/, so the C++ tests never need
the reference installed.

    python3 tools/reference/record_fixtures.py \
        --model ~/.cache/hlm/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out tests/fixtures
    python3 tools/reference/record_fixtures.py --prefix gemma3 --bos --ppl-window 1024 \
        --model ~/.cache/hlm/models/gemma-3-270m-q4_k_m.gguf --out tests/fixtures

Writes (see tools/reference/README.md for the exact formats):
    smollm2_tokens.json  tokenizer cases (text -> ids)
    smollm2_logits.json  next-token top-50 logits for a few prompts, plus
                         top-50 logits at every position of one prompt
    smollm2_ppl.json     perplexity on /usr/share/common-licenses/GPL-3
(with --prefix P, P_tokens.json and so on). --bos starts every evaluated sequence with the
model's BOS (Gemma is trained to see it); --ppl-window sets the perplexity window (longer than a
sliding window, the window's layers are tested too).
"""

import argparse
import hashlib
import json
import math
import os
import sys

N_CTX = 512
N_THREADS = 2
TOP_K = 50
LOGIT_DECIMALS = 5

PPL_TEXT = "/usr/share/common-licenses/GPL-3"
PPL_MAX_TOKENS = 2048
PPL_WINDOW = 512

# SmolLM2's chat template rendered with its default system prompt, one user
# turn and add_generation_prompt=True.
CHATML_PROMPT = (
    "<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\n"
    "What is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\n"
)

# (text, add_special, parse_special)
TOKEN_CASES = [
    # ASCII sentences
    ("Hello world", False, False),
    ("Hello, world!", False, False),
    ("The quick brown fox jumps over the lazy dog.", False, False),
    (" leading space and trailing space ", False, False),
    ("Hello world", True, False),  # add_special: this vocab adds neither BOS nor EOS
    ("", False, False),
    ("", True, False),
    ("a", False, False),
    # accents / Latin-1 / other Latin scripts
    ("café naïve Zürich résumé façade", False, False),
    ("Crème brûlée à la carte, señor! Ångström, Øresund, Łódź, straße.", False, False),
    # emoji, ZWJ sequences, flags, skin tones, variation selectors
    ("I love pizza 🍕🍕 and 😀!", False, False),
    ("family: 👨‍👩‍👧‍👦 couple: 👩‍❤️‍👨 rainbow flag: 🏳️‍🌈", False, False),
    ("flags 🇫🇷🇩🇪🇯🇵 thumbs 👍🏽 heart ❤️ star ⭐", False, False),
    # CJK, Korean, Arabic, Cyrillic, Greek, Hebrew, Devanagari
    ("你好，世界！今天天气很好。", False, False),
    ("日本語のテキスト、カタカナとひらがな。", False, False),
    ("안녕하세요 세계", False, False),
    ("مرحبا بالعالم، كيف حالك؟", False, False),
    ("Привет, мир! Γειά σου κόσμε. שלום עולם. नमस्ते दुनिया", False, False),
    # code
    ("def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
     False, False),
    ("#include <vector>\n\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) {\n\t\tx *= 2;\n\t}\n\treturn 0;\n}\n",
     False, False),
    ('{"key": [1, 2.5, null], "nested": {"a": true}}', False, False),
    ("x<<=1; y->z != w && !q || a >= b // comment", False, False),
    # whitespace runs
    ("multiple   spaces    here     ok", False, False),
    ("tabs\tand\t\ttabs\t\t\tend", False, False),
    ("line one\n\n\nline four\n", False, False),
    ("trailing spaces   ", False, False),
    ("   ", False, False),
    ("\n", False, False),
    (" \n \n\t\r\n  x", False, False),
    # digits
    ("1234567", False, False),
    ("3.14159 and 2.71828", False, False),
    ("Call +1 (555) 123-4567 or 020 7946 0958.", False, False),
    ("In 2024, 1,000,000 people paid $19.99 each; 100% of 7/8 is 0.875.", False, False),
    # contractions (case matters for the pre-tokenizer regex)
    ("don't can't won't it's", False, False),
    ("I'LL WE'VE THEY'RE SHE'D", False, False),
    ("we've you're I'm he'd they'll", False, False),
    # punctuation runs
    ("Wait... what?!?! No way!!! ---- *** ___ ??? ...", False, False),
    ("<<<>>> ((())) [[[]]] {{{}}} ~~~ ``` ''' \"\"\"", False, False),
    # ChatML special tokens: parsed vs treated as plain text
    (CHATML_PROMPT, False, True),
    (CHATML_PROMPT, False, False),
    (CHATML_PROMPT, True, True),
    ("<|endoftext|>text after eos<|im_end|>", False, True),
    ("<|endoftext|>text after eos<|im_end|>", False, False),
]

LOGIT_PROMPTS = [
    # (name, text, parse_special)
    ("france", "The capital of France is", False),
    ("story", "Once upon a time, there was a little", False),
    ("code", "def fibonacci(n):\n    ", False),
    ("count", "1, 2, 3, 4, 5,", False),
    ("science", "Water boils at a temperature of", False),
    ("chat", CHATML_PROMPT, True),
]
ALL_POSITIONS_PROMPT = "chat"


def import_llama_cpp():
    try:
        import llama_cpp  # noqa: F401
        import numpy  # noqa: F401
    except Exception as e:  # ImportError or a broken shared library
        sys.stderr.write(
            "error: cannot import llama_cpp (%s).\n"
            "Install the reference with: pip install -r tools/reference/requirements.txt\n" % e)
        sys.exit(2)
    return llama_cpp


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- JSON output

def _is_scalar(v):
    return v is None or isinstance(v, (bool, int, float, str))


def _inline(v):
    if _is_scalar(v):
        return True
    if isinstance(v, list) and all(_is_scalar(x) for x in v):
        return True
    if isinstance(v, list) and all(isinstance(x, list) and all(_is_scalar(y) for y in x) for x in v):
        return True  # e.g. [[id, logit], ...]
    return len(json.dumps(v, ensure_ascii=False, separators=(",", ":"))) <= 100


def to_json(v, indent=0):
    """Compact-but-readable JSON: containers of scalars go on one line."""
    if _inline(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    pad = " " * (indent + 1)
    if isinstance(v, dict):
        items = ["%s%s: %s" % (pad, json.dumps(k, ensure_ascii=False), to_json(x, indent + 1))
                 for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + to_json(x, indent + 1) for x in v]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def write_json(path, obj):
    text = to_json(obj) + "\n"
    json.loads(text)  # sanity
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s (%d bytes)" % (path, len(text.encode("utf-8"))))


# ---------------------------------------------------------------- recorders

def topk(np, row, k=TOP_K):
    row = np.asarray(row, dtype=np.float32)
    idx = np.argpartition(-row, k)[:k]
    # sort by logit descending, ties by id ascending
    idx = sorted(idx.tolist(), key=lambda i: (-float(row[i]), i))
    return [[int(i), round(float(row[i]), LOGIT_DECIMALS)] for i in idx]


def record_tokens(llm, header):
    cases = []
    roundtrip_failures = []
    for text, add_special, parse_special in TOKEN_CASES:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
        cases.append({"text": text, "add_special": add_special,
                      "parse_special": parse_special, "ids": [int(t) for t in ids]})
        back = llm.detokenize(ids, special=parse_special).decode("utf-8", errors="replace")
        if back != text:
            roundtrip_failures.append((text, back))
    out = dict(header)
    out["notes"] = ("ids from llama_tokenize(vocab, text, add_special, parse_special): "
                    "add_special adds what the vocabulary asks for (add_bos_token, "
                    "add_eos_token). Texts are UTF-8.")
    out["cases"] = cases
    for text, back in roundtrip_failures:
        print("note: detokenize round-trip differs: %r -> %r" % (text, back))
    return out


def eval_all_logits(llm, np, ids):
    """Evaluate ids from an empty cache in one batch; return [n, n_vocab] logits."""
    assert 0 < len(ids) <= llm.n_ctx()
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids), :], dtype=np.float32)


def record_logits(llm, np, header, bos):
    prompts = []
    for name, text, parse_special in LOGIT_PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=parse_special)
        if bos:
            ids = [llm.token_bos()] + ids
        logits = eval_all_logits(llm, np, ids)
        last = logits[-1]
        entry = {
            "name": name,
            "text": text,
            "parse_special": parse_special,
            "ids": [int(t) for t in ids],
            "argmax": int(np.argmax(last)),
            "top": topk(np, last),
        }
        if name == ALL_POSITIONS_PROMPT:
            entry["top_all_positions"] = [topk(np, logits[p]) for p in range(len(ids))]
        prompts.append(entry)
    out = dict(header)
    out.update({
        "n_ctx": N_CTX,
        "n_threads": N_THREADS,
        "top_k": TOP_K,
        "bos": bos,
        "notes": ("Each prompt is tokenized without BOS (add_special=false) and, if 'bos', "
                  "prefixed with the vocabulary's BOS id, then evaluated "
                  "from an empty KV cache in ONE batch with logits for every position "
                  "(logits_all=True, n_batch=n_ubatch=512, flash_attn off). 'top' = the 50 "
                  "largest raw logits (pre-softmax) of the LAST position as [token_id, logit], "
                  "sorted by logit descending, rounded to 5 decimals; 'argmax' = argmax of the "
                  "last position. 'top_all_positions'[p] = same for position p (the logits "
                  "predicting token p+1). llama.cpp multiplies Q4_1 weights with activations "
                  "quantized to Q8_1, so expect ~1e-2 differences from an f32-activation engine."),
        "prompts": prompts,
    })
    return out


def log_softmax_rows(np, logits):
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def record_ppl(llm, np, header, text_path, bos, window):
    with open(text_path, "rb") as f:
        raw = f.read()
    all_ids = llm.tokenize(raw, add_bos=False, special=False)
    ids = all_ids[:PPL_MAX_TOKENS]
    step = window - 1 if bos else window  # text tokens per window
    n_windows = len(ids) // step
    total_nll = 0.0
    n_scored = 0
    windows = []
    for w in range(n_windows):
        win = ids[w * step:(w + 1) * step]
        if bos:
            win = [llm.token_bos()] + win
        logits = eval_all_logits(llm, np, win)
        lp = log_softmax_rows(np, logits[:-1])  # rows 0..510 predict tokens 1..511
        targets = np.asarray(win[1:], dtype=np.int64)
        nll = -lp[np.arange(len(targets)), targets]
        windows.append({"index": w, "first_token": w * step,
                        "mean_nll": round(float(nll.mean()), 6)})
        total_nll += float(nll.sum())
        n_scored += len(targets)
    mean_nll = total_nll / n_scored
    out = dict(header)
    out.update({
        "text_file": text_path,
        "text_sha256": hashlib.sha256(raw).hexdigest(),
        "text_bytes": len(raw),
        "text_total_tokens": len(all_ids),
        "definition": (
            "Tokenize the whole text file (raw UTF-8 bytes) with add_special=false "
            "(no BOS/EOS) and parse_special=false. Keep the first n_tokens=2048 tokens. "
            "Split them into n_windows=4 consecutive non-overlapping windows of n_ctx=512 "
            "tokens. Evaluate each window independently from an empty KV cache (positions "
            "0..511). In each window score tokens 1..511 given the preceding tokens of the "
            "same window: NLL_i = -log softmax(logits[i-1])[token_i] (natural log, computed "
            "in float64 from the float32 logits). Token 0 of each window is not scored. "
            "mean_nll = sum of all NLL_i / n_scored (n_scored = 4*511 = 2044); "
            "ppl = exp(mean_nll). With 'bos' and window n_ctx, each window is the BOS id "
            "followed by n_ctx - 1 text tokens (the text advances by n_ctx - 1), every text "
            "token of the window scored."),
        "bos": bos,
        "n_ctx": window,
        "n_threads": N_THREADS,
        "n_tokens": len(ids),
        "n_windows": n_windows,
        "n_scored": n_scored,
        "mean_nll": round(mean_nll, 6),
        "ppl": round(math.exp(mean_nll), 4),
        "windows": windows,
    })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="path to the GGUF model")
    ap.add_argument("--out", required=True, help="output directory (e.g. tests/fixtures)")
    ap.add_argument("--ppl-text", default=PPL_TEXT, help="text for the perplexity fixture")
    ap.add_argument("--prefix", default="smollm2", help="fixture file name prefix")
    ap.add_argument("--bos", action="store_true",
                    help="start every evaluated sequence with BOS (Gemma)")
    ap.add_argument("--ppl-window", type=int, default=PPL_WINDOW,
                    help="perplexity window in tokens (default %d)" % PPL_WINDOW)
    args = ap.parse_args()

    llama_cpp = import_llama_cpp()
    import numpy as np

    if not os.path.isfile(args.model):
        sys.stderr.write("error: model not found: %s\n" % args.model)
        return 1
    os.makedirs(args.out, exist_ok=True)

    n_ctx = max(N_CTX, args.ppl_window)
    llm = llama_cpp.Llama(
        model_path=args.model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
        n_threads=N_THREADS, n_threads_batch=N_THREADS, logits_all=True,
        flash_attn=False, verbose=False)

    header = {
        "model": os.path.basename(args.model),
        "sha256": sha256_file(args.model),
        "reference": "llama-cpp-python %s" % llama_cpp.__version__,
    }

    write_json(os.path.join(args.out, args.prefix + "_tokens.json"), record_tokens(llm, header))
    write_json(os.path.join(args.out, args.prefix + "_logits.json"),
               record_logits(llm, np, header, args.bos))
    ppl = record_ppl(llm, np, header, args.ppl_text, args.bos, args.ppl_window)
    write_json(os.path.join(args.out, args.prefix + "_ppl.json"), ppl)
    print("ppl = %.4f (mean NLL %.6f over %d tokens)" % (ppl["ppl"], ppl["mean_nll"], ppl["n_scored"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
