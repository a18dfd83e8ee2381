#!/usr/bin/env python3
"""How far two `hlm eval` output directories of the same command lie apart (docs/energy.md).

Pairs the results.jsonl lines of DIR_A and DIR_B by run key (prompt, method, setting, seed) and
prints, per figure, the largest relative difference |a - b| / mean(a, b) over the pairs and the
difference of the two means: energy per token (total, device, cloud), the modelled throughput
and the wall-clock throughput. Identical runs give 0.00%.

    python3 tools/eval/compare_runs.py /tmp/ev/a1 /tmp/ev/a2
"""

import argparse
import json
import os

FIGURES = [
    ("e_per_token_j", "energy per token"),
    ("e_device_per_token_j", "device energy per token"),
    ("e_cloud_per_token_j", "cloud energy per token"),
    ("tokens_per_s", "modelled tokens/s"),
    ("wall_tokens_per_s", "wall tokens/s"),
]


def read(path):
    lines = {}
    with open(os.path.join(path, "results.jsonl")) as f:
        for line in f:
            if line.strip():
                j = json.loads(line)
                lines[j["key"]] = j
    return lines


def rel(a, b):
    m = (a + b) / 2
    return abs(a - b) / m if m else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    args = ap.parse_args()
    a, b = read(args.a), read(args.b)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise SystemExit("no run is in both directories")
    print(f"{len(keys)} runs in both {args.a} and {args.b}")
    print(f"{'figure':26} {'max diff':>9} {'mean diff':>9}")
    for field, name in FIGURES:
        xs = [(a[k][field], b[k][field]) for k in keys if a[k].get(field) is not None]
        worst = max(rel(x, y) for x, y in xs)
        mean = rel(sum(x for x, _ in xs), sum(y for _, y in xs))
        print(f"{name:26} {100 * worst:8.2f}% {100 * mean:8.2f}%")


if __name__ == "__main__":
    main()
