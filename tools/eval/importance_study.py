#!/usr/bin/env python3
"""The importance study: compares the importance estimators (focus, received(1), received(2),
entropy) with no importance (uhlm) at matched upload rates, from the dev-split summary that
`make_results.sh importance` produces (iuhlm over est × u_th × λ, uhlm over a u_th grid).

Matching: uhlm's quality-versus-upload-rate curve (its sweep points, sorted by rate, joined
linearly) is read at each iuhlm point's upload rate; Δ = quality(iuhlm) − quality(uhlm at the
same rate). Points outside uhlm's measured rate range are not matched (no extrapolation).
The default estimator is the one with the highest mean Δ over its matched points; its λ is the
one with the highest Δ among that estimator's points (ties: the lower upload rate). iuhlm
"dominates" uhlm when every matched point has Δ >= 0, and "significantly" when every Δ exceeds
the larger of the two points' 95% CI half-widths.

    python3 tools/eval/importance_study.py --summary eval-out/dev/summary.json \\
        --out docs/results/importance.json
"""

import argparse
import json
import re
import sys

QUALITY = ("bertscore_f1_llm", "rougeL_f1_llm")


def interp(curve, x):
    """curve: [(x, y, ci)] sorted by x. Linear interpolation; None outside the range."""
    if not curve or x < curve[0][0] - 1e-12 or x > curve[-1][0] + 1e-12:
        return None
    for (x0, y0, c0), (x1, y1, c1) in zip(curve, curve[1:]):
        if x0 - 1e-12 <= x <= x1 + 1e-12:
            t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            return y0 + t * (y1 - y0), max(c0, c1)
    return curve[0][1], curve[0][2]  # a single point


def parse_setting(label):
    d = {}
    for m in re.finditer(r"(\w+)=([^,]+(?:\(\d+\))?)", label):
        d[m.group(1)] = m.group(2)
    return d


def study(summary):
    groups = summary["groups"]
    q = next((k for k in QUALITY if any(k in g["metrics"] for g in groups)), None)
    if q is None:
        sys.exit("importance_study: the summary has no quality scores; run tools/eval/score.py")
    curve = []
    for g in groups:
        if g["method"] == "uhlm" and q in g["metrics"] and "upload_rate" in g["metrics"]:
            curve.append((g["metrics"]["upload_rate"]["mean"], g["metrics"][q]["mean"],
                          g["metrics"][q]["ci95"]))
    # Equal rates: keep the better quality (the front).
    curve.sort()
    points = []
    for g in groups:
        if g["method"] != "iuhlm" or q not in g["metrics"]:
            continue
        s = parse_setting(g["setting"])
        rate = g["metrics"]["upload_rate"]["mean"]
        qual, qci = g["metrics"][q]["mean"], g["metrics"][q]["ci95"]
        ref = interp(curve, rate)
        p = {"setting": g["setting"], "estimator": s.get("est"), "u_th": float(s.get("u_th", "nan")),
             "lambda": float(s.get("lambda", "nan")), "upload_rate": rate, "quality": qual,
             "quality_ci95": qci,
             "e_per_token_j": g["metrics"].get("e_per_token_j", {}).get("mean")}
        if ref is not None:
            p["uhlm_quality_at_rate"], ref_ci = ref
            p["delta"] = qual - ref[0]
            p["significant"] = abs(p["delta"]) > max(qci, ref_ci)
        points.append(p)
    # A point with the same upload rate as uhlm at the same u_th: importance never vetoed.
    uhlm_at = {}
    for g in groups:
        if g["method"] == "uhlm":
            uhlm_at[float(parse_setting(g["setting"]).get("u_th", "nan"))] = \
                g["metrics"]["upload_rate"]["mean"]
    for p in points:
        r = uhlm_at.get(p["u_th"])
        p["no_veto"] = r is not None and abs(r - p["upload_rate"]) < 1e-12
    by_est = {}
    for p in points:
        by_est.setdefault(p["estimator"], []).append(p)
    table = []
    for est, ps in sorted(by_est.items()):
        matched = [p for p in ps if "delta" in p]
        table.append({
            "estimator": est, "points": len(ps), "matched": len(matched),
            "mean_delta": sum(p["delta"] for p in matched) / len(matched) if matched else None,
            "wins": sum(p["delta"] > 0 for p in matched),
            "significant_wins": sum(p["delta"] > 0 and p["significant"] for p in matched),
            "significant_losses": sum(p["delta"] < 0 and p["significant"] for p in matched),
            "no_veto_points": sum(p["no_veto"] for p in ps),
            "upload_rate_range": [min(p["upload_rate"] for p in ps), max(p["upload_rate"] for p in ps)],
        })
    ranked = [t for t in table if t["mean_delta"] is not None]
    ranked.sort(key=lambda t: -t["mean_delta"])
    choice = None
    if ranked and ranked[0]["mean_delta"] > 0:
        best = ranked[0]["estimator"]
        cands = [p for p in by_est[best] if "delta" in p]
        cands.sort(key=lambda p: (-p["delta"], p["upload_rate"]))
        choice = {"estimator": best, "lambda": cands[0]["lambda"], "u_th": cands[0]["u_th"],
                  "delta": cands[0]["delta"], "upload_rate": cands[0]["upload_rate"]}
    matched = [p for p in points if "delta" in p]
    dominates = bool(matched) and all(p["delta"] >= 0 for p in matched)
    dominates_sig = bool(matched) and all(p["delta"] > 0 and p["significant"] for p in matched)
    if not matched:
        verdict = ("undetermined: no iuhlm point fell inside uhlm's measured upload-rate range, "
                   "so nothing could be compared at a matched rate")
    elif dominates_sig:
        verdict = "yes: every matched iuhlm point beats uhlm beyond the 95% CIs"
    elif dominates:
        verdict = ("not shown: every matched iuhlm point is at least as good as uhlm, but not "
                   "beyond the 95% CIs")
    else:
        n_neg = sum(p["delta"] < 0 for p in matched)
        n_sig = sum(p["delta"] < 0 and p["significant"] for p in matched)
        n_pos = sum(p["delta"] > 0 for p in matched)
        verdict = (f"no: {n_neg} of {len(matched)} matched iuhlm points score below uhlm at the "
                   f"same upload rate ({n_sig} of them beyond the 95% CIs), {n_pos} above, the "
                   "rest equal")
    return {"quality_metric": q, "uhlm_curve": [{"upload_rate": x, "quality": y, "ci95": c}
                                                for x, y, c in curve],
            "points": points, "by_estimator": table, "choice": choice,
            "iuhlm_dominates_uhlm": dominates, "iuhlm_dominates_uhlm_significantly": dominates_sig,
            "verdict": verdict}


def main():
    ap = argparse.ArgumentParser(description="Importance estimators vs uhlm at matched rates")
    ap.add_argument("--summary", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.summary) as f:
        res = study(json.load(f))
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"importance_study: {res['verdict']}; choice {res['choice']}")


if __name__ == "__main__":
    main()
