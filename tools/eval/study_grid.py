#!/usr/bin/env python3
"""study_grid.py: the importance study's u_th and λ grids, read off the data instead of guessed.

Input: per-token traces (`hlm run --trace`) of iuhlm runs at u_th = 0 and λ = -1, one file per
prompt named <estimator>-<i>.jsonl. Those settings score importance on every token with u > 0
and never block an upload, so every token carries its uncertainty `u` and (if u > 0) its
`lambda_flip`, the largest λ at which it is still important.

- u_th grid: thresholds at quantiles of u, so that uhlm's upload rate spans its range evenly
  (u takes K + 1 discrete values, so neighbouring quantiles may coincide and are merged).
- λ grid, per estimator and study u_th: quantiles of lambda_flip among the tokens with
  u > u_th (the candidate uploads), so that λ blocks about 25 %, 50 %, 75 % of them whatever the
  scale of the estimator's I.

    study_grid.py --dir DIR --out grid.json

Writes JSON with the quantiles, the grids and the two sweep strings `hlm eval --sweep` takes
("dev_sweep" for iuhlm, "uhlm_sweep" for uhlm on dev; "test_sweep", the study u_th values, for
the test split), and prints the first two.
"""
import argparse
import glob
import json
import math
import os
import sys


def read_tokens(paths):
    """(u, lambda_flip or None) of every traced token with u."""
    out = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                j = json.loads(line)
                u, flip = j.get("u"), j.get("lambda_flip")
                if u is None:
                    continue
                if flip is not None:
                    flip = math.inf if flip == "inf" else float(flip)
                out.append((float(u), flip))
    return out


def quantile(sorted_values, q):
    """Linear-interpolation quantile (numpy's default) of a sorted list; inf-safe."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    a, b = sorted_values[lo], sorted_values[hi]
    if math.isinf(a) or math.isinf(b) or pos == lo:
        return a if pos == lo else b
    return a + (b - a) * (pos - lo)


def grid(values, quantiles):
    """The value at each quantile, rounded to 3 significant digits, finite and distinct."""
    s = sorted(values)
    out = []
    for q in quantiles:
        v = quantile(s, q)
        if math.isinf(v):
            continue
        v = float(f"{v:.3g}")
        if v not in out:
            out.append(v)
    return out


def floats(text, name):
    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        sys.exit(f"study_grid: {name} must be comma-separated numbers, got {text!r}")
    if any(not 0 <= q <= 1 for q in v):
        sys.exit(f"study_grid: {name} must lie in [0, 1]")
    return v


def fmt(values):
    return ",".join(f"{v:g}" for v in values)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="directory holding <estimator>-<i>.jsonl traces")
    ap.add_argument("--lambda-quantiles", default="0.25,0.5,0.75",
                    help="shares of candidate uploads each λ should block")
    ap.add_argument("--study-u-quantiles", default="0.25,0.5",
                    help="u quantiles of the u_th values iuhlm is studied at")
    ap.add_argument("--curve-u-quantiles", default="0.05,0.15,0.25,0.35,0.45,0.55,0.65,0.75,0.85,0.95",
                    help="u quantiles of uhlm's u_th sweep")
    ap.add_argument("--out", required=True, help="JSON output")
    a = ap.parse_args()
    lq = floats(a.lambda_quantiles, "--lambda-quantiles")
    sq = floats(a.study_u_quantiles, "--study-u-quantiles")
    cq = floats(a.curve_u_quantiles, "--curve-u-quantiles")

    sets = {}
    for path in sorted(glob.glob(os.path.join(a.dir, "*-*.jsonl"))):
        est = os.path.basename(path).rsplit("-", 1)[0]
        sets.setdefault(est, []).append(path)
    if not sets:
        sys.exit(f"study_grid: no <estimator>-<i>.jsonl trace files in {a.dir}")
    tokens = {}
    for est, paths in sets.items():
        tokens[est] = read_tokens(paths)
        if not any(f is not None for _, f in tokens[est]):
            sys.exit(f"study_grid: {est}: no token with lambda_flip in {len(paths)} files (were "
                     "they iuhlm runs at u_th = 0?)")

    # u does not depend on the estimator; pool every run for its quantiles.
    all_u = [u for ts in tokens.values() for u, _ in ts]
    study_u = grid(all_u, sq)
    # The uhlm curve includes the study's thresholds, so each iuhlm point has its uhlm twin.
    curve_u = sorted(set(grid(all_u, cq)) | set(study_u))
    result = {"lambda_quantiles": lq, "study_u_quantiles": sq, "curve_u_quantiles": cq,
              "tokens": len(all_u), "study_u_th": study_u, "uhlm_u_th": curve_u,
              "estimators": {}}
    terms = []
    for est, ts in tokens.items():
        per_u = {}
        for u_th in study_u:
            flips = [f for u, f in ts if u > u_th and f is not None]
            if not flips:
                continue
            g = grid(flips, lq)
            per_u[f"{u_th:g}"] = {"candidates": len(flips),
                                  "always_important": sum(math.isinf(f) for f in flips),
                                  "lambda": g}
            if g:
                terms.append(f"est={est};u_th={u_th:g};lambda={fmt(g)}")
        result["estimators"][est] = {"files": len(sets[est]), "tokens": len(ts), "by_u_th": per_u}
    if not terms:
        sys.exit("study_grid: no λ grid (no token above any study u_th)")
    result["dev_sweep"] = " | ".join(terms)
    result["uhlm_sweep"] = f"u_th={fmt(curve_u)}"
    result["test_sweep"] = f"u_th={fmt(study_u)}"
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(result["dev_sweep"])
    print(result["uhlm_sweep"])


if __name__ == "__main__":
    main()
