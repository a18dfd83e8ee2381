#!/usr/bin/env python3
"""Plots of an hlm evaluation (PNG and SVG, matplotlib) from the summary.json files that
`hlm eval` writes:

  quality_vs_energy    quality (BERTScore F1 against the LLM output) against total energy per
                       token, every method and sweep setting, with the Pareto front
  quality_vs_upload    the same against the upload rate
  energy_saving        energy saving against hlm per method and setting (95% CI)
  throughput_channels  modelled tokens/s per method under each channel preset

    python3 tools/eval/plots.py --work eval-out --out docs/results
"""

import argparse
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

METHODS = ["slm", "llm", "hlm", "rand", "uhlm", "iuhlm", "spec"]
STYLE = {"slm": ("tab:gray", "v"), "llm": ("black", "*"), "hlm": ("tab:blue", "s"),
         "rand": ("tab:olive", "x"), "uhlm": ("tab:orange", "o"), "iuhlm": ("tab:red", "D"),
         "spec": ("tab:purple", "^")}


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def quality_key(groups):
    for k in ("bertscore_f1_llm", "rougeL_f1_llm"):
        if any(k in g["metrics"] for g in groups):
            return k
    return None


def metric(g, name):
    m = g["metrics"].get(name)
    return (m["mean"], m.get("ci95", 0.0)) if m else (None, None)


def pareto(points, maximize_y=True):
    """Points (x, y) on the front: lower x and higher y are better."""
    front, best = [], -float("inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def save(fig, out, name):
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(out, f"{name}.{ext}"), dpi=130, bbox_inches="tight")
    plt.close(fig)


def scatter_panel(ax, groups, xname, qname, xlabel, qlabel, title):
    pts = []
    for method in METHODS:
        gs = [g for g in groups if g["method"] == method]
        xs, ys, xe, ye = [], [], [], []
        for g in gs:
            x, xc = metric(g, xname)
            y, yc = metric(g, qname)
            if x is None or y is None:
                continue
            xs.append(x), ys.append(y), xe.append(xc), ye.append(yc)
            pts.append((x, y))
        if xs:
            color, marker = STYLE[method]
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=marker, color=color, label=method,
                        alpha=0.85, capsize=2, markersize=6, linewidth=0.8)
    front = pareto(pts)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="0.4", linewidth=1,
                label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(qlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def quality_plots(sets, out):
    """sets: [(title, groups)]."""
    written = []
    for xname, xlabel, name, logx in (
            ("e_per_token_j", "total energy per token (J, device + cloud)", "quality_vs_energy", True),
            ("upload_rate", "upload rate (uploads / token)", "quality_vs_upload", False)):
        usable = [(t, gs) for t, gs in sets if gs and quality_key(gs)]
        if not usable:
            continue
        fig, axes = plt.subplots(1, len(usable), figsize=(6.2 * len(usable), 4.6), squeeze=False)
        for ax, (title, gs) in zip(axes[0], usable):
            q = quality_key(gs)
            qlabel = ("BERTScore F1 vs LLM output" if q.startswith("bert")
                      else "ROUGE-L F1 vs LLM output")
            scatter_panel(ax, gs, xname, q, xlabel, qlabel, title)
            if logx:
                ax.set_xscale("log")
                # Ticks at 1, 2, 5 per decade as plain numbers: matplotlib's default minor
                # labels overlap when the axis spans less than a decade.
                ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
                ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        for ax in axes[0]:  # each panel shows its own set of methods
            ax.legend(fontsize=8, loc="best")
        save(fig, out, name)
        written.append(name)
    return written


def energy_saving_plot(groups, out):
    rows = [g for g in groups if "energy_saving_vs_hlm" in g["metrics"] and g["method"] != "hlm"]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.4))
    labels = [f"{g['method']} {g['setting']}" if g["setting"] != "default" else g["method"]
              for g in rows]
    vals = [100 * g["metrics"]["energy_saving_vs_hlm"]["mean"] for g in rows]
    errs = [100 * g["metrics"]["energy_saving_vs_hlm"].get("ci95", 0) for g in rows]
    colors = [STYLE[g["method"]][0] for g in rows]
    y = range(len(rows))
    ax.barh(list(y), vals, xerr=errs, color=colors, alpha=0.85, capsize=2)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("energy saving vs hlm (% of energy per token, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    save(fig, out, "energy_saving")
    return ["energy_saving"]


def throughput_plot(channel_sets, out):
    if not channel_sets:
        return []
    methods = [m for m in METHODS if any(g["method"] == m for _, gs in channel_sets for g in gs)]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.8 / len(channel_sets)
    for i, (ch, gs) in enumerate(channel_sets):
        vals, errs = [], []
        for m in methods:
            g = next((g for g in gs if g["method"] == m), None)
            v, e = metric(g, "tokens_per_s") if g else (None, None)
            vals.append(v or 0.0)
            errs.append(e or 0.0)
        xs = [j + (i - (len(channel_sets) - 1) / 2) * width for j in range(len(methods))]
        ax.bar(xs, vals, width=width, yerr=errs, capsize=2, label=ch, alpha=0.85)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods)
    ax.set_yscale("log")
    ax.set_ylabel("modelled throughput (tokens/s, log scale)")
    ax.legend(title="channel preset", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    save(fig, out, "throughput_channels")
    return ["throughput_channels"]


def main():
    ap = argparse.ArgumentParser(description="Plots of an hlm evaluation")
    ap.add_argument("--work", required=True, help="the make_results.sh work directory")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    test = load(os.path.join(a.work, "test", "summary.json"))
    dev = load(os.path.join(a.work, "dev", "summary.json"))
    sets = []
    if test:
        sets.append(("test split: all methods", test["groups"]))
    if dev:
        sets.append(("dev split: importance study sweep", dev["groups"]))
    written = quality_plots(sets, a.out)
    if test:
        written += energy_saving_plot(test["groups"], a.out)
    channel_sets = []
    for ch in ("narrowband", "lte", "wifi"):
        s = load(os.path.join(a.work, f"channel-{ch}", "summary.json"))
        if s:
            channel_sets.append((ch, s["groups"]))
    written += throughput_plot(channel_sets, a.out)
    print("plots: wrote " + ", ".join(f"{n}.png/.svg" for n in written) + f" to {a.out}")


if __name__ == "__main__":
    main()
