#!/usr/bin/env python3
"""results_v2.py: the figures of "Results v2" (issue 18) from a make_results.sh work directory,
as one JSON file that plots.py and make_results.py render.

Reads, per temperature T in --temps,
  WORK/test-tT/       hlm eval of slm, llm, hlm, uhlm, iuhlm (default compressed upload) over
                      the operating points, several seeds, scored (results.jsonl + scores.jsonl)
  WORK/test-tT-full/  llm and hlm with the full upload (standard HLM)
and WORK/win/CHANNEL--CLOUD/ (unscored runs of the same methods under each channel preset and
cloud cost profile at T = --win-temp).

Every figure is a mean over prompts (each prompt's value the mean over its seeds) with a 95%
percentile bootstrap interval: 2000 resamples of the prompts, numpy seed 20261206, so the page is
the same from run to run. Energy saving vs standard HLM is 1 − E/E_hlm(full), paired per prompt
and seed, then averaged as above.

Writes: tables per T (every method and operating point), "when does hybrid win" (per cloud
profile × channel × fidelity floor: each method's least-energy operating point whose mean
fidelity meets the floor, the best method and its margin), the paper comparison (energy saving
and fidelity of uhlm and iuhlm at the pair profile's default point and at matched quality) and
the goals of issue 18 part 4 (met or not, with the numbers).

    results_v2.py --work WORK --temps "0 0.8" --win-temp 0 --out docs/results/results_v2.json
"""

import argparse
import json
import math
import os

import numpy as np

from jsonl import read_jsonl

BOOT = 2000
BOOT_SEED = 20261206
FLOORS = (0.90, 0.95)
# The saving the goals and the matched-quality comparison use: against hlm with the same
# (default, compressed) upload, i.e. what skipping verifications buys. Against standard HLM
# (the `full` upload) the saving also counts the compression; the tables show both.
SAV = "saving_vs_hlm"
METHODS = ("slm", "llm", "hlm", "hlm-full", "uhlm", "iuhlm")
RUN_METRICS = ("bertscore_f1_llm", "bertscore_f1_ref", "rougeL_f1_llm", "rougeL_f1_ref",
               "e_per_token_j", "tokens_per_s", "upload_rate", "tsr")
# The target paper (Park, Oh, Kim, arXiv 2508.12590), as SPEC.md quotes it.
PAPER = {
    "setting": "TinyLlama-1.1B on the device, Llama-2-7B in the cloud; the paper's own prompts, "
               "channel and energy constants (not public)",
    "best_saving_vs_hlm": 0.407, "best_bertscore": 0.875,
    "uhlm_bertscore": 0.858, "iuhlm_bertscore": 0.870,
    "uhlm_saving_vs_hlm": 0.316, "iuhlm_saving_vs_hlm": 0.436,
    "uhlm_tokens_per_s": 0.36, "iuhlm_tokens_per_s": 0.40,
}


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_runs(d, method_suffix=""):
    """results.jsonl lines of an eval directory, merged with their scores, by key."""
    runs = read_jsonl(os.path.join(d, "results.jsonl"))
    scores = {s["key"]: s for s in read_jsonl(os.path.join(d, "scores.jsonl"))}
    out = []
    for r in runs:
        s = scores.get(r["key"], {})
        r = dict(r)
        for k, v in s.items():
            if k not in ("key", "hash"):
                r[k] = v
        if method_suffix and r["method"] == "hlm":
            r["method"] = "hlm" + method_suffix
        out.append(r)
    return out


def per_prompt(values):
    """{(prompt, seed): x} -> {prompt: mean over seeds}."""
    by = {}
    for (p, _), x in values.items():
        if x is None or (isinstance(x, float) and math.isnan(x)):
            continue
        by.setdefault(p, []).append(x)
    return {p: float(np.mean(v)) for p, v in by.items()}


def boot(prompt_values):
    """Mean over prompts and its 95% percentile bootstrap interval (fixed seed)."""
    xs = np.array(list(prompt_values.values()), dtype=float)
    if len(xs) == 0:
        return None
    m = float(xs.mean())
    if len(xs) == 1:
        return {"mean": m, "lo": m, "hi": m, "n": 1}
    rng = np.random.default_rng(BOOT_SEED)
    idx = rng.integers(0, len(xs), size=(BOOT, len(xs)))
    means = xs[idx].mean(axis=1)
    return {"mean": m, "lo": float(np.percentile(means, 2.5)),
            "hi": float(np.percentile(means, 97.5)), "n": int(len(xs))}


def group(runs, keys=None):
    """{(method, setting): {(prompt, seed): run}}, optionally only the (prompt, seed) in keys."""
    g = {}
    for r in runs:
        ps = (r["id"], r["seed"])
        if keys is not None and ps not in keys:
            continue
        g.setdefault((r["method"], r["setting"]), {})[ps] = r
    return g


def stats(runs_by_ps, refs=None):
    """Bootstrap figures of one method and setting; refs: {name: runs by (prompt, seed)} of the
    runs to pair an energy saving with (saving_vs_hlm, saving_vs_hlm_full)."""
    out = {}
    for m in RUN_METRICS:
        vals = {ps: r.get(m) for ps, r in runs_by_ps.items() if r.get(m) is not None}
        if vals:
            out[m] = boot(per_prompt(vals))
    for name, ref in (refs or {}).items():
        if not ref:
            continue
        sav = {}
        for ps, r in runs_by_ps.items():
            h = ref.get(ps)
            if h and h.get("e_per_token_j"):
                sav[ps] = 1.0 - r["e_per_token_j"] / h["e_per_token_j"]
        if sav:
            out[name] = boot(per_prompt(sav))
    return out


def u_th_of(setting):
    for part in setting.split(","):
        if part.startswith("u_th="):
            return float(part[5:])
    return None


def test_tables(work, temps):
    tables = {}
    for t in temps:
        d = os.path.join(work, f"test-t{t}")
        runs = load_runs(d)
        if not runs:
            continue
        full = load_runs(d + "-full", "-full")
        cfg = load_json(os.path.join(d, "config.json")) or {}
        g = group(runs)
        gf = group([r for r in full if r["method"] == "hlm-full"])
        refs = {"saving_vs_hlm": g.get(("hlm", "default")),
                "saving_vs_hlm_full": gf.get(("hlm-full", "default"))}
        default_u = (cfg.get("profile") or {}).get("u_th")
        rows = []
        for (method, setting), by in list(g.items()) + list(gf.items()):
            u = u_th_of(setting)
            rows.append({"method": method, "setting": setting, "u_th": u,
                         "default_point": method in ("uhlm", "iuhlm") and u is not None and
                         default_u is not None and abs(u - default_u) < 1e-6,
                         "n_runs": len(by), "metrics": stats(by, refs)})
        rows.sort(key=lambda r: (METHODS.index(r["method"]) if r["method"] in METHODS else 99,
                                 -(r["u_th"] or 0) if r["method"] in ("uhlm", "iuhlm") else 0))
        seeds = sorted({r["seed"] for r in runs})
        tables[t] = {"dir": d, "config": cfg, "seeds": seeds,
                     "n_prompts": len({r["id"] for r in runs}), "default_u_th": default_u,
                     "has_full": refs["saving_vs_hlm_full"] is not None, "rows": rows}
    return tables


def m_of(row, name):
    return (row["metrics"].get(name) or {}).get("mean")


def interp(points, x):
    """Piecewise-linear y at x over (x, y, lo, hi) points sorted by x; None outside."""
    pts = sorted(points)
    if not pts or x < pts[0][0] - 1e-12 or x > pts[-1][0] + 1e-12:
        return None
    for a, b in zip(pts, pts[1:] + [pts[-1]]):
        if a[0] - 1e-12 <= x <= b[0] + 1e-12:
            if b[0] - a[0] < 1e-12:
                return a[1:]
            w = (x - a[0]) / (b[0] - a[0])
            return tuple(a[i] + w * (b[i] - a[i]) for i in (1, 2, 3))
    return None


def matched(table):
    """iuhlm against uhlm: quality at the same upload rate, energy saving at the same quality."""
    rows = table["rows"]
    q = "bertscore_f1_llm" if any(m_of(r, "bertscore_f1_llm") is not None for r in rows) \
        else "rougeL_f1_llm"
    u = [r for r in rows if r["method"] == "uhlm"]
    iu = [r for r in rows if r["method"] == "iuhlm"]
    curve_rate = [(m_of(r, "upload_rate"), r["metrics"][q]["mean"], r["metrics"][q]["lo"],
                   r["metrics"][q]["hi"]) for r in u if q in r["metrics"]]
    curve_q = [(r["metrics"][q]["mean"], *(r["metrics"][SAV][k] for k in ("mean", "lo", "hi")))
               for r in u if q in r["metrics"] and SAV in r["metrics"]]
    out = []
    for r in iu:
        if q not in r["metrics"]:
            continue
        rate, qq = m_of(r, "upload_rate"), r["metrics"][q]
        at_rate = interp(curve_rate, rate)
        sav = r["metrics"].get(SAV)
        at_q = interp(curve_q, qq["mean"]) if sav else None
        e = {"setting": r["setting"], "default_point": r["default_point"], "upload_rate": rate,
             "quality": qq, "saving": sav,
             "uhlm_quality_at_rate": None if at_rate is None else
             {"mean": at_rate[0], "lo": at_rate[1], "hi": at_rate[2]},
             "uhlm_saving_at_quality": None if at_q is None else
             {"mean": at_q[0], "lo": at_q[1], "hi": at_q[2]}}
        if at_rate is not None:
            e["not_worse"] = qq["hi"] >= at_rate[0]  # uhlm's mean inside or below iuhlm's CI
            e["better_beyond_ci"] = qq["lo"] > at_rate[2]
            e["worse_beyond_ci"] = qq["hi"] < at_rate[1]
        out.append(e)
    return {"quality_metric": q, "points": out}


def goals(tables):
    """Issue 18 part 4, per temperature, on the test split."""
    out = {}
    for t, tab in tables.items():
        skip = [r for r in tab["rows"] if r["method"] in ("uhlm", "iuhlm")
                and "bertscore_f1_llm" in r["metrics"] and SAV in r["metrics"]]
        ok = [r for r in skip if r["metrics"]["bertscore_f1_llm"]["mean"] >= 0.95]
        best = max(ok, key=lambda r: r["metrics"][SAV]["mean"], default=None)
        top_q = max(skip, key=lambda r: (r["metrics"]["bertscore_f1_llm"]["mean"],
                                         r["metrics"][SAV]["mean"]), default=None)
        g1 = {"met": bool(best and best["metrics"][SAV]["mean"] >= 0.40),
              "best": None if not best else {
                  "method": best["method"], "setting": best["setting"],
                  "fidelity": best["metrics"]["bertscore_f1_llm"],
                  "saving": best["metrics"][SAV]},
              "highest_fidelity_point": None if not top_q else {
                  "method": top_q["method"], "setting": top_q["setting"],
                  "fidelity": top_q["metrics"]["bertscore_f1_llm"],
                  "saving": top_q["metrics"][SAV]},
              "evaluable": bool(skip)}
        mt = matched(tab)
        cmp = [p for p in mt["points"] if p["uhlm_quality_at_rate"] is not None]
        g2 = {"quality_metric": mt["quality_metric"], "matched_points": len(cmp),
              "all_points": len(mt["points"]),
              "not_worse_everywhere": bool(cmp) and all(p["not_worse"] for p in cmp),
              "better_beyond_ci": sum(p["better_beyond_ci"] for p in cmp),
              "worse_beyond_ci": sum(p["worse_beyond_ci"] for p in cmp)}
        g2["met"] = g2["not_worse_everywhere"] and g2["better_beyond_ci"] >= 1
        out[t] = {"saving_at_095": g1, "iuhlm_vs_uhlm": g2, "matched": mt}
    return out


def paper(tables):
    out = {}
    for t, tab in tables.items():
        rows = {(r["method"], r["setting"]): r for r in tab["rows"]}
        pick = {}
        for m in ("uhlm", "iuhlm"):
            d = next((r for r in tab["rows"] if r["method"] == m and r["default_point"]), None)
            if d:
                pick[m] = {"setting": d["setting"],
                           "bertscore": d["metrics"].get("bertscore_f1_llm"),
                           "saving": d["metrics"].get(SAV),
                           "saving_full": d["metrics"].get("saving_vs_hlm_full"),
                           "tokens_per_s": d["metrics"].get("tokens_per_s"),
                           "upload_rate": d["metrics"].get("upload_rate")}
        best = None
        for r in tab["rows"]:
            if r["method"] in ("uhlm", "iuhlm") and SAV in r["metrics"] \
                    and "bertscore_f1_llm" in r["metrics"]:
                key = (r["metrics"]["bertscore_f1_llm"]["mean"], r["metrics"][SAV]["mean"])
                if best is None or key > (best["metrics"]["bertscore_f1_llm"]["mean"],
                                          best["metrics"][SAV]["mean"]):
                    best = r
        out[t] = {"default": pick, "hlm_full": rows.get(("hlm-full", "default"), {}).get(
            "metrics"), "highest_fidelity": None if not best else {
            "method": best["method"], "setting": best["setting"],
            "bertscore": best["metrics"]["bertscore_f1_llm"],
            "saving": best["metrics"][SAV],
            "saving_full": best["metrics"].get("saving_vs_hlm_full")}}
    return out


def win(work, tables, win_temp, order_channels=(), order_clouds=()):
    """Per cloud profile × channel × floor: each method's least-energy qualifying point."""
    root = os.path.join(work, "win")
    if not os.path.isdir(root):
        return None
    ref = load_runs(os.path.join(work, f"test-t{win_temp}"))
    ref_by = {(r["id"], r["seed"], r["method"], r["setting"]): r for r in ref}
    cells, clouds, channels = [], [], []
    mismatched, compared = 0, 0
    for name in sorted(os.listdir(root)):
        if "--" not in name:
            continue
        ch, cloud = name.split("--", 1)
        # Only the prompts and seeds the scored run has, so that energy and fidelity are
        # averaged over the same runs.
        have = {(r["id"], r["seed"]) for r in ref}
        runs = [r for r in load_runs(os.path.join(root, name)) if (r["id"], r["seed"]) in have]
        if not runs:
            continue
        if cloud not in clouds:
            clouds.append(cloud)
        if ch not in channels:
            channels.append(ch)
        # Fidelity from the scored run of the same prompt, seed, method and setting.
        for r in runs:
            s = ref_by.get((r["id"], r["seed"], r["method"], r["setting"]))
            if s is None:
                continue
            compared += 1
            if s.get("output_ids") != r.get("output_ids"):
                mismatched += 1
                continue
            for k in ("bertscore_f1_llm", "rougeL_f1_llm"):
                if k in s:
                    r[k] = s[k]
        cfg = load_json(os.path.join(root, name, "config.json")) or {}
        g = group(runs)
        by_method = {}
        for (method, setting), by in g.items():
            st = stats(by)
            by_method.setdefault(method, []).append({"setting": setting, "metrics": st})
        for floor in FLOORS:
            choice = {}
            for method, pts in by_method.items():
                q = [p for p in pts if (p["metrics"].get("bertscore_f1_llm") or {}).get(
                    "mean", -1) >= floor - 1e-12]
                if not q:
                    best_q = max(pts, key=lambda p: (p["metrics"].get("bertscore_f1_llm") or
                                                     {}).get("mean", -1))
                    choice[method] = {"qualifies": False, "setting": best_q["setting"],
                                      "metrics": best_q["metrics"]}
                    continue
                p = min(q, key=lambda p: p["metrics"]["e_per_token_j"]["mean"])
                choice[method] = {"qualifies": True, "setting": p["setting"],
                                  "metrics": p["metrics"],
                                  "ci_clears_floor": p["metrics"]["bertscore_f1_llm"]["lo"] >=
                                  floor - 1e-12}
            ranked = sorted([(c["metrics"]["e_per_token_j"]["mean"], m)
                             for m, c in choice.items() if c["qualifies"]])
            best = ranked[0][1] if ranked else None
            verdict = None
            if best:
                e0 = ranked[0][0]
                verdict = {"best": best, "e_per_token_j": e0}
                if len(ranked) > 1:
                    e1, m1 = ranked[1]
                    verdict.update({"runner_up": m1, "saving_vs_runner_up": 1 - e0 / e1})
                for other in ("llm", "slm", "hlm"):
                    c = choice.get(other)
                    if other != best and c and c["qualifies"]:
                        verdict[f"saving_vs_{other}"] = 1 - e0 / c["metrics"]["e_per_token_j"][
                            "mean"]
            cells.append({"channel": ch, "cloud": cloud, "floor": floor, "methods": choice,
                          "verdict": verdict, "cost": cfg.get("cost")})
        n_prompts = len({r["id"] for r in runs})
        seeds = sorted({r["seed"] for r in runs})
    # In the order the script ran them (channels within clouds), unknown ones last.
    def rank(order, x):
        return (order.index(x) if x in order else len(order), x)
    clouds.sort(key=lambda c: rank(list(order_clouds), c))
    channels.sort(key=lambda c: rank(list(order_channels), c))
    cells.sort(key=lambda c: (c["floor"], clouds.index(c["cloud"]), channels.index(c["channel"])))
    return {"temperature": win_temp, "cells": cells, "clouds": clouds, "channels": channels,
            "n_prompts": n_prompts if cells else 0, "seeds": seeds if cells else [],
            "outputs_compared": compared, "outputs_mismatched": mismatched}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--temps", default="0 0.8")
    ap.add_argument("--win-temp", default="0")
    ap.add_argument("--channels", default="narrowband lte wifi", help="their order on the page")
    ap.add_argument("--clouds", default="", help="cloud cost profiles, in their order on the page")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    temps = a.temps.split()
    tables = test_tables(a.work, temps)
    out = {"bootstrap": {"resamples": BOOT, "seed": BOOT_SEED, "interval": "95% percentile",
                         "unit": "prompts (each the mean over its seeds)"},
           "floors": list(FLOORS), "tables": tables, "goals": goals(tables),
           "paper": {"figures": PAPER, "ours": paper(tables)},
           "win": win(a.work, tables, a.win_temp, a.channels.split(), a.clouds.split())}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"results_v2: wrote {a.out}")


if __name__ == "__main__":
    main()
