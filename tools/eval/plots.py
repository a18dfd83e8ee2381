#!/usr/bin/env python3
"""Plots of an hlm evaluation (PNG and SVG, matplotlib) from the summary.json files that
`hlm eval` writes:

  quality_vs_energy    quality (BERTScore F1 against the LLM output) against total energy per
                       token, every method and sweep setting, with the Pareto front
  quality_vs_upload    the same against the upload rate
  energy_saving        energy saving against hlm per method and setting (95% CI)
  hybrid_win           energy per token of each method's least-energy operating point that
                       meets each fidelity floor, per channel preset and cloud cost profile
                       (from results_v2.json, tools/eval/results_v2.py)

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


def energy_saving_plot(v2, out):
    """Energy saving against hlm with the same (compressed) upload, i.e. what skipping buys, one
    panel per temperature (against standard HLM the compression's own saving dominates)."""
    tables = [(t, tab) for t, tab in ((v2 or {}).get("tables") or {}).items()]
    panels = []
    for t, tab in tables:
        rows = [r for r in tab["rows"] if "saving_vs_hlm" in r["metrics"] and
                r["method"] not in ("hlm", "hlm-full")]
        if rows:
            panels.append((t, rows))
    if not panels:
        return []
    n = max(len(rows) for _, rows in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 0.32 * n + 1.4),
                             squeeze=False)
    for ax, (t, rows) in zip(axes[0], panels):
        labels = [f"{r['method']} {r['setting']}" if r["setting"] != "default" else r["method"]
                  for r in rows]
        sv = [r["metrics"]["saving_vs_hlm"] for r in rows]
        vals = [100 * x["mean"] for x in sv]
        err = [[100 * (x["mean"] - x["lo"]) for x in sv], [100 * (x["hi"] - x["mean"]) for x in sv]]
        colors = [STYLE.get(r["method"], ("tab:blue", "s"))[0] for r in rows]
        y = list(range(len(rows)))
        ax.barh(y, vals, xerr=err, color=colors, alpha=0.85, capsize=2)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"test split, T = {t}", fontsize=9)
        ax.set_xlabel("energy saving vs hlm, same upload (%, 95% bootstrap CI)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save(fig, out, "energy_saving")
    return ["energy_saving"]


def hybrid_win_plot(v2, out):
    """One panel per cloud profile × fidelity floor: per channel, a bar per qualifying method."""
    w = (v2 or {}).get("win")
    if not w or not w["cells"]:
        return []
    methods = ["slm", "llm", "hlm", "uhlm", "iuhlm"]
    floors = sorted({c["floor"] for c in w["cells"]})
    clouds, channels = w["clouds"], w["channels"]
    fig, axes = plt.subplots(len(clouds), len(floors), figsize=(5.2 * len(floors),
                             3.4 * len(clouds)), squeeze=False, sharey="row")
    width = 0.8 / len(methods)
    for i, cloud in enumerate(clouds):
        for j, floor in enumerate(floors):
            ax = axes[i][j]
            for k, m in enumerate(methods):
                xs, ys, lo, hi = [], [], [], []
                for x, ch in enumerate(channels):
                    c = next((c for c in w["cells"] if c["cloud"] == cloud and
                              c["channel"] == ch and c["floor"] == floor), None)
                    pt = c and c["methods"].get(m)
                    if not pt or not pt["qualifies"]:
                        continue
                    e = pt["metrics"]["e_per_token_j"]
                    xs.append(x + (k - (len(methods) - 1) / 2) * width)
                    ys.append(e["mean"])
                    lo.append(e["mean"] - e["lo"])
                    hi.append(e["hi"] - e["mean"])
                    if c["verdict"] and c["verdict"]["best"] == m:
                        ax.annotate("best", (xs[-1], e["mean"]), ha="center", va="bottom",
                                    fontsize=7, xytext=(0, 2), textcoords="offset points")
                if xs:
                    ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=2, label=m,
                           color=STYLE[m][0], alpha=0.85)
            ax.set_xticks(range(len(channels)))
            ax.set_xticklabels(channels)
            lo_e = [c["methods"][m]["metrics"]["e_per_token_j"]["mean"] for c in w["cells"]
                    for m in c["methods"] if c["methods"][m]["qualifies"]]
            if lo_e and max(lo_e) > 20 * max(min(lo_e), 1e-9):
                ax.set_yscale("log")  # slm-only next to the cloud's joules
            else:
                ax.set_ylim(bottom=0)
            ax.set_title(f"{cloud}, fidelity ≥ {floor:.2f}", fontsize=9)
            if j == 0:
                ax.set_ylabel("energy per token (J)")
            ax.grid(axis="y", alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
                   ncol=len(handles), fontsize=8, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save(fig, out, "hybrid_win")
    return ["hybrid_win"]


def main():
    ap = argparse.ArgumentParser(description="Plots of an hlm evaluation")
    ap.add_argument("--work", required=True, help="the make_results.sh work directory")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    v2 = load(os.path.join(a.out, "results_v2.json"))
    dev = load(os.path.join(a.work, "dev", "summary.json"))
    sets = []
    tests = sorted(glob.glob(os.path.join(a.work, "test-t*", "summary.json")))
    tests = [t for t in tests if not os.path.dirname(t).endswith("-full")]
    tests.sort(key=lambda p: float(os.path.basename(os.path.dirname(p))[len("test-t"):]))
    for path in tests:
        t = os.path.basename(os.path.dirname(path))[len("test-t"):]
        sets.append((f"test split, T = {t}", load(path)["groups"]))
    if dev:
        sets.append(("dev split: importance study sweep", dev["groups"]))
    written = quality_plots(sets, a.out)
    if tests:
        written += energy_saving_plot(v2, a.out)
    written += hybrid_win_plot(v2, a.out)
    print("plots: wrote " + ", ".join(f"{n}.png/.svg" for n in written) + f" to {a.out}")


if __name__ == "__main__":
    main()
