#!/usr/bin/env python3
"""tools/vllm/convert_gguf.py: turns hlm's LLM GGUF into the Hugging Face folder vLLM serves.

Run it with the venv's python (tools/vllm/setup.sh):

    ~/.cache/hlm/vllm-venv/bin/python tools/vllm/convert_gguf.py [--gguf FILE] [--out DIR]

--gguf defaults to the registry's `llm` (`build/hlm models path llm`, else the model cache);
--out to ~/.cache/hlm/vllm-model/smollm2-135m. transformers reads the GGUF and dequantises its
weights to float32 (517 MB for SmolLM2-135M-Instruct Q4_1); the folder holds config.json,
model.safetensors, the tokenizer and the chat template. Before the folder is published (written
under a temporary name, then renamed) it is checked: the tokenizer has exactly the GGUF's
vocabulary (same size, every id the same token string), round-trips a few strings, carries a
chat template, and the model's vocabulary size agrees. A stamp in the folder holds the SHA-256
of the source GGUF, so a rerun on the same file is a no-op (--force converts anyway).
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

STAMP = ".hlm-convert-stamp"
# Bump when the output's layout or checks change, so existing folders are rebuilt.
CONVERTER_VERSION = 1
ROUND_TRIP = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, tabs\tand\nnewlines",
    "Ünïcödé: naïve café, 東京, emoji 🙂",
    "def f(x):\n    return x ** 2  # code",
    "<|im_start|>user\nHi<|im_end|>\n",
]


def say(msg):
    print(f"convert_gguf: {msg}", flush=True)


def die(msg):
    print(f"convert_gguf: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "hlm"


def default_gguf(repo):
    """The registry's llm: asks the built hlm, else looks in the model cache."""
    for hlm in (os.environ.get("HLM_BIN"), repo / "build" / "hlm"):
        if hlm and Path(hlm).is_file() and os.access(hlm, os.X_OK):
            r = subprocess.run([str(hlm), "models", "path", "llm"], capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip():
                return Path(r.stdout.strip())
    models = Path(os.environ.get("HLM_MODELS_DIR") or cache_dir() / "models")
    return models / "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def gguf_tokens(path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get("tokenizer.ggml.tokens")
    if field is None:
        die(f"{path} has no tokenizer.ggml.tokens: not a model with a vocabulary")
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def convert(src, tmp):
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' per-tensor progress bars
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(src.parent), src.name
    say(f"reading {src} with transformers (dequantises to float32)")
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are already dequantised; save_pretrained refuses a model that still carries
    # its GGUF quantisation config.
    for obj, attr in ((model.config, "quantization_config"), (model, "hf_quantizer")):
        if hasattr(obj, attr):
            delattr(obj, attr)
    model.is_quantized = False
    say(f"writing {tmp}")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)


def check(src, tmp):
    """Checks the written folder against the GGUF; returns a short summary."""
    from transformers import AutoConfig, AutoTokenizer

    tokens = gguf_tokens(src)
    tok = AutoTokenizer.from_pretrained(tmp)
    config = AutoConfig.from_pretrained(tmp)
    n = len(tokens)
    if len(tok) != n:
        die(f"the tokenizer has {len(tok)} ids but the GGUF's vocabulary {n}")
    if config.vocab_size != n:
        die(f"config.json's vocab_size is {config.vocab_size} but the GGUF's vocabulary {n}")
    got = tok.convert_ids_to_tokens(list(range(n)))
    bad = [i for i in range(n) if got[i] != tokens[i]]
    if bad:
        i = bad[0]
        die(f"{len(bad)} ids differ from the GGUF's tokens, first id {i}: "
            f"{got[i]!r} vs {tokens[i]!r}")
    for text in ROUND_TRIP:
        ids = tok.encode(text, add_special_tokens=False)
        back = tok.decode(ids)
        if back != text:
            die(f"the tokenizer does not round-trip {text!r}: {ids} decodes to {back!r}")
    if not tok.chat_template:
        die("the tokenizer has no chat template (the GGUF's tokenizer.chat_template)")
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                     add_generation_prompt=True)
    if not (Path(tmp) / "model.safetensors").is_file():
        die("no model.safetensors was written")
    return {"vocab": n, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "chat_prompt": prompt}


def main():
    repo = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=Path, help="source GGUF (default: the registry's llm)")
    ap.add_argument("--out", type=Path, default=cache_dir() / "vllm-model" / "smollm2-135m",
                    help="output folder (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="convert even if the stamp matches")
    args = ap.parse_args()

    src = (args.gguf or default_gguf(repo)).resolve()
    if not src.is_file():
        die(f"no GGUF at {src}: run `build/hlm models fetch` (or pass --gguf FILE)")
    out = args.out.resolve()
    t0 = time.monotonic()
    digest = sha256(src)
    want = json.dumps({"gguf_sha256": digest, "converter": CONVERTER_VERSION}, sort_keys=True)
    stamp = out / STAMP
    if not args.force and stamp.is_file() and stamp.read_text().strip() == want:
        say(f"{out} is already converted from {src.name} (sha256 {digest[:12]})")
        return

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        try:
            convert(src, tmp)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            die(f"cannot convert {src}: {type(e).__name__}: {e}")
        info = check(src, tmp)
        (tmp / STAMP).write_text(want + "\n")
        # Publish: move any old folder aside, rename the new one into place, drop the old.
        old = out.parent / f".{out.name}.old.{os.getpid()}"
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    say(f"{out}: {info['vocab']} tokens (same ids as the GGUF), {info['layers']} layers, "
        f"hidden {info['hidden']}, {size:.0f} MB, chat template ok, "
        f"in {time.monotonic() - t0:.1f}s")


if __name__ == "__main__":
    main()
