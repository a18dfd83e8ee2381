#!/usr/bin/env python3
"""The upload-encoding sweep behind hlm's default --encoding (docs/encoding.md).

Runs `hlm eval` once per encoding (same prompts, seeds and methods; each encoding in its own
directory, so reruns resume), scores the outputs with tools/eval/score.py, and prints a
Markdown table: per encoding and method, the uplink bytes of one verification request and the
reduction against `full`, the acceptance rate (accepted drafts / drafts sent) and the
BERTScore F1 against the LLM-only output, each with its paired difference from `full` (the
same prompt and seed under both encodings) and the 95% confidence interval of that difference
over prompts.

    python3 tools/eval/encoding_sweep.py --hlm build/hlm --out /tmp/sweep \\
        --encodings 'full,topk(32,8),topk(64,8)' --n 25 --max-tokens 32 --seeds 42,43
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

from jsonl import read_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))
# Two-sided 95% Student-t quantiles by degrees of freedom (1..30); 1.96 beyond.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def dir_name(encoding):
    return encoding.replace("(", "").replace(")", "").replace(",", "_").replace(":", "_")


def mean_ci(values):
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    if n == 1:
        return m, float("nan")
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return m, t * sd / math.sqrt(n)


def request_bytes(run):
    """Mean bytes of one verification request: the uplink less the session's prompt upload."""
    if not run["uploads"]:
        return None
    open_bytes = (32 * run["n_prompt_tokens"] + 320 + 7) // 8  # SPEC §7: prompt ids + header
    return (run["uplink_bytes"] - open_bytes) / run["uploads"]


def load(out, encoding, methods):
    d = os.path.join(out, dir_name(encoding))
    runs = {r["key"]: r for r in read_jsonl(os.path.join(d, "results.jsonl"))}
    scores = {}
    path = os.path.join(d, "scores.jsonl")
    if os.path.exists(path):
        scores = {s["key"]: s for s in read_jsonl(path)}
    per = {}  # (method, prompt id) -> list of (acceptance, bertscore, request bytes) over seeds
    for key, r in runs.items():
        if r["method"] not in methods:
            continue
        acc = r["accepted"] / r["drafts_sent"] if r["drafts_sent"] else None
        bs = scores.get(key, {}).get("bertscore_f1_llm")
        per.setdefault((r["method"], r["id"]), {})[r["seed"]] = (acc, bs, request_bytes(r))
    return per


def paired(base, other, method, index):
    """Prompt-level means (over the seeds both have) of other − base for one metric."""
    diffs, values = [], []
    for (m, pid), seeds in other.items():
        if m != method or (m, pid) not in base:
            continue
        b = base[(m, pid)]
        pairs = [(seeds[s][index], b[s][index]) for s in seeds
                 if s in b and seeds[s][index] is not None and b[s][index] is not None]
        if not pairs:
            continue
        values.append(sum(p[0] for p in pairs) / len(pairs))
        diffs.append(sum(p[0] - p[1] for p in pairs) / len(pairs))
    return mean_ci(values), mean_ci(diffs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hlm", default="build/hlm")
    ap.add_argument("--out", required=True)
    ap.add_argument("--encodings", default="full,topk(32,8),topk(64,8),topk(128,8),topk(256,8)")
    ap.add_argument("--methods", default="llm,hlm,iuhlm")
    ap.add_argument("--prompts", default="dev")
    ap.add_argument("--n", default="25")
    ap.add_argument("--max-tokens", default="32")
    ap.add_argument("--seeds", default="42,43")
    ap.add_argument("--analyze-only", action="store_true", help="score and tabulate what is there")
    a = ap.parse_args()
    # Commas separate encodings except inside topk(k,bits).
    encodings = [e.strip() for e in re.findall(r"[^,(]+(?:\([^)]*\))?", a.encodings)]
    if "full" not in encodings:
        sys.exit("encoding_sweep: --encodings must include full (the baseline)")
    for enc in encodings:
        d = os.path.join(a.out, dir_name(enc))
        if not a.analyze_only:
            subprocess.run([a.hlm, "eval", "--methods", a.methods, "--prompts", a.prompts,
                            "--n", a.n, "--max-tokens", a.max_tokens, "--seeds", a.seeds,
                            "--encoding", enc, "--out", d, "--no-score", "--quiet"], check=True)
        subprocess.run([sys.executable, os.path.join(HERE, "score.py"), "--results",
                        os.path.join(d, "results.jsonl")], check=True)
    methods = [m for m in a.methods.split(",") if m != "llm"]
    base = load(a.out, "full", methods)
    full_bytes = {}
    print("| encoding | method | bytes/request | vs full | acceptance | Δ acceptance (points) "
          "| BERTScore vs LLM | Δ BERTScore (points) |")
    print("|---|---|---|---|---|---|---|---|")
    for enc in encodings:
        per = load(a.out, enc, methods)
        for m in methods:
            (b, _), _ = paired(base, per, m, 2)
            if enc == "full":
                full_bytes[m] = b
            (acc, _), (dacc, dacc_ci) = paired(base, per, m, 0)
            (bs, _), (dbs, dbs_ci) = paired(base, per, m, 1)
            ratio = full_bytes.get(m, float("nan")) / b if b else float("nan")
            print(f"| `{enc}` | {m} | {b:,.0f} | {ratio:,.0f}× | {100 * acc:.1f}% | "
                  f"{100 * dacc:+.2f} ± {100 * dacc_ci:.2f} | {100 * bs:.2f} | "
                  f"{100 * dbs:+.2f} ± {100 * dbs_ci:.2f} |")


if __name__ == "__main__":
    main()
