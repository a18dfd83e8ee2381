#!/usr/bin/env python3
"""Writes docs/RESULTS.md from a make_results.sh work directory: the per-method table on the
test split (the target paper's form), the calibration fit, the plots, the importance study,
the exact commands, the models and the machine. Called by tools/eval/make_results.sh.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess


def load(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def fmt(g, name, digits=3, scale=1.0, pct=False):
    m = g["metrics"].get(name)
    if not m:
        return "–"
    s = 100.0 if pct else scale
    if m.get("n", 0) > 1:
        return f"{s * m['mean']:.{digits}f} ± {s * m['ci95']:.{digits}f}"
    return f"{s * m['mean']:.{digits}f}"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""


def machine():
    cpu = sh("lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1") or platform.processor()
    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    return (f"{cpu}, {os.cpu_count()} cores, {mem} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def method_table(summary):
    rows = ["| method | setting | BERTScore F1 vs LLM | BERTScore F1 vs ref | ROUGE-L vs LLM | "
            "tokens/s (modelled) | energy/token (J) | energy saving vs hlm (%) | upload rate | "
            "TSR | n |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in summary["groups"]:
        rows.append("| " + " | ".join([
            g["method"], f"`{g['setting']}`", fmt(g, "bertscore_f1_llm"), fmt(g, "bertscore_f1_ref"),
            fmt(g, "rougeL_f1_llm"), fmt(g, "tokens_per_s", 3), fmt(g, "e_per_token_j", 2),
            fmt(g, "energy_saving_vs_hlm", 1, pct=True), fmt(g, "upload_rate"), fmt(g, "tsr"),
            str(g["n_prompts"])]) + " |")
    return "\n".join(rows)


def channel_table(work):
    out = []
    for ch in ("narrowband", "lte", "wifi"):
        s = load(os.path.join(work, f"channel-{ch}", "summary.json"))
        if not s:
            continue
        for g in s["groups"]:
            out.append(f"| {ch} | {g['method']} | `{g['setting']}` | {fmt(g, 'tokens_per_s', 3)} | "
                       f"{fmt(g, 'e_per_token_j', 2)} | {fmt(g, 'upload_rate')} | {g['n_prompts']} |")
    if not out:
        return "(no channel runs)"
    return ("| channel | method | setting | tokens/s (modelled) | energy/token (J) | upload rate | n |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(out))


def grid_section(grid):
    """How the study's u_th and λ values were read off the data (tools/eval/study_grid.py)."""
    if not grid:
        return ""
    lines = ["Grid from the data (`tools/eval/study_grid.py`, step `grid`): iuhlm at u_th = 0 and "
             "λ = −1 (scores every token, vetoes nothing) traced "
             f"{grid['tokens']} tokens over the {len(grid['estimators'])} estimators' runs; u_th at "
             "quantiles "
             f"{', '.join(f'{q:g}' for q in grid['study_u_quantiles'])} of their uncertainty "
             f"(u_th = {', '.join(f'{v:g}' for v in grid['study_u_th'])}), and per estimator λ at "
             f"quantiles {', '.join(f'{q:g}' for q in grid['lambda_quantiles'])} of `lambda_flip` "
             "(the largest λ at which a token is still important) among the tokens above u_th, "
             "i.e. λ values that veto about that share of the candidate uploads. uhlm runs at "
             f"u_th = {', '.join(f'{v:g}' for v in grid['uhlm_u_th'])}.", "",
             "| estimator | u_th | candidates | λ grid |", "|---|---|---|---|"]
    for est, e in grid["estimators"].items():
        for u, g in e["by_u_th"].items():
            lines.append(f"| {est} | {u} | {g['candidates']} | "
                         f"{', '.join(f'{v:g}' for v in g['lambda'])} |")
    return "\n".join(lines) + "\n"


def importance_section(imp):
    if not imp:
        return "(the importance study has not been run)"
    lines = [f"Quality metric: `{imp['quality_metric']}` (against the LLM-only output). "
             "Δ = iuhlm quality − uhlm quality read off uhlm's curve at the same upload rate.", "",
             "| estimator | points | matched | mean Δ | wins | significant wins | significant losses | never vetoed (= uhlm at same u_th) | upload-rate range |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in imp["by_estimator"]:
        md = "–" if t["mean_delta"] is None else f"{t['mean_delta']:+.4f}"
        lo, hi = t["upload_rate_range"]
        lines.append(f"| {t['estimator']} | {t['points']} | {t['matched']} | {md} | {t['wins']} | "
                     f"{t['significant_wins']} | {t['significant_losses']} | {t.get('no_veto_points', 0)} of {t['points']} | {lo:.3f}–{hi:.3f} |")
    lines += ["", "uhlm's curve: " + ", ".join(
        f"{p['upload_rate']:.3f} → {p['quality']:.3f}" for p in imp["uhlm_curve"]), ""]
    lines += ["All iuhlm points:", "",
              "| setting | upload rate | quality | uhlm at that rate | Δ |", "|---|---|---|---|---|"]
    for p in imp["points"]:
        ref = p.get("uhlm_quality_at_rate")
        lines.append(f"| `{p['setting']}` | {p['upload_rate']:.3f} | {p['quality']:.3f} ± "
                     f"{p['quality_ci95']:.3f} | {'–' if ref is None else f'{ref:.3f}'} | "
                     f"{'–' if 'delta' not in p else f'{p[chr(100) + chr(101) + chr(108) + chr(116) + chr(97)]:+.4f}'} |")
    c = imp["choice"]
    lines += [""]
    if c:
        lines.append(f"**Choice from the data:** estimator `{c['estimator']}` with λ = {c['lambda']:g} "
                     f"(its best matched point: u_th = {c['u_th']:g}, upload rate "
                     f"{c['upload_rate']:.3f}, Δ = {c['delta']:+.4f}). The estimator is the one "
                     "with the highest mean Δ over its matched points; λ the one with the largest Δ "
                     "within it.")
    else:
        lines.append("**Choice from the data:** none. No estimator has a positive mean Δ over its "
                     "matched points: at these upload rates, vetoing uploads by importance did not "
                     "buy quality that the same number of uploads chosen by uncertainty alone "
                     "would not.")
    lines += ["", f"**Does iuhlm dominate uhlm?** {imp['verdict']}."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hlm", default="build/hlm")
    ap.add_argument("--slm", default="slm")
    ap.add_argument("--llm", default="llm")
    a = ap.parse_args()
    test = load(os.path.join(a.work, "test", "summary.json"))
    dev = load(os.path.join(a.work, "dev", "summary.json"))
    cal = load(os.path.join(a.work, "calibration.json"))
    imp = load("docs/results/importance.json")
    grid = load(os.path.join(a.work, "study_grid.json"))
    cfg = (test or {}).get("config", {})
    scoring = (test or {}).get("scoring", {})
    commands = ""
    if os.path.exists(os.path.join(a.work, "commands.log")):
        commands = open(os.path.join(a.work, "commands.log")).read().strip()
    slm_path = cfg.get("slm", a.slm)
    standin = "trunc" in os.path.basename(slm_path) or "stand" in os.path.basename(slm_path)

    md = []
    md.append("# hlm results\n")
    md.append("Generated by `tools/eval/make_results.sh` on "
              f"{datetime.date.today().isoformat()}; regenerate everything with\n\n"
              "```sh\ntools/eval/make_results.sh          # calibrate + eval + scoring + plots + this page\n```\n")
    md.append("Every number below comes from the files in `docs/results/` (summaries copied from the "
              "work directory) and is a mean over prompts with the half-width of its two-sided 95% "
              "Student-t confidence interval (± …). Quality is measured against the LLM-only output "
              "for the same prompt and seed (fidelity) and against the data set's reference answer.\n")
    if standin:
        md.append("> **Device model caveat.** The SLM used here is a *stand-in*: the cloud model "
                  "truncated to its first 6 transformer blocks (`hlm::write_truncated_model`), "
                  "without distillation, because the distilled device model (`slm`) was not yet "
                  "available. Its drafts are rejected by the LLM most of the time (see the "
                  "calibration's mean β), so the method comparison below shows the pipeline, not "
                  "the method's potential. Rerun this page once `slm` exists.\n")
    else:
        card = load("models/slm-delta.json") or {}
        if os.path.basename(slm_path) == card.get("student"):
            what = (f"`slm`, the shipped device model: the cloud model's first {card['m']} "
                    "transformer blocks, distilled (docs/models.md has its held-out top-1 "
                    "agreement and acceptance against the LLM)")
        else:
            what = f"the device model `{slm_path}`"
        md.append(f"> **Device model.** The SLM is {what}. On this model pair it falls far short "
                  "of the paper's TinyLlama/Llama-2 pair in agreement, so the LLM rejects or "
                  "resamples many drafts and the absolute savings are smaller than with a strong "
                  "device model; the comparison between methods is what the page shows.\n")
    md.append("## Setup\n")
    md.append(f"- Device model (SLM): `{slm_path}`\n- Cloud model (LLM): `{cfg.get('llm', a.llm)}`")
    md.append(f"- Prompts: `data/prompts/` — AlpacaEval evaluation set from the PyPI package "
              "`alpaca-eval` 0.6.6 (sdist member `example/outputs.json`; code Apache-2.0, data "
              "CC BY-NC 4.0), instructions ≤ 300 characters, split 100/100/100 by a fixed seed "
              "(`tools/eval/prepare_prompts.py`; see `data/README.md`).")
    md.append(f"- Decoding: chat template on, temperature {cfg.get('temperature')} "
              f"({'greedy: hlm reproduces the LLM output exactly, so fidelity measures only what skipped verifications change' if cfg.get('temperature') == 0 else 'sampling'}), "
              f"{cfg.get('max_tokens')} new tokens, channel `{cfg.get('channel')}`, upload encoding "
              f"`{cfg.get('encoding')}`, K = {cfg.get('unc_samples')} perturbed samples, θ_max = "
              f"{cfg.get('theta_max')}.")
    if scoring.get("bertscore"):
        b = scoring["bertscore"]
        md.append(f"- BERTScore: {b['package']}, model {b['model']}, layer {b['num_layers']} of "
                  f"{b['of_layers']}, idf {'on' if b['idf'] else 'off'}, baseline rescaling "
                  f"{'on' if b['rescale_with_baseline'] else 'off'} (raw F1: compare methods with "
                  "each other, not with rescaled published numbers).")
    if scoring.get("rouge"):
        r = scoring["rouge"]
        md.append(f"- ROUGE-L: {r['package']}, {r['variant']} F1, Porter stemmer.")
    md.append("- Energy and throughput: SPEC §7's channel model on measured step times "
              "(t_slm, t_filter and t_llm are wall times on this machine, shared with other "
              "jobs, so absolute values are noisy; all methods run interleaved prompt by prompt "
              "so that load drifts touch them alike). Energy saving = 1 − E/E_hlm on total energy "
              "per token, paired per prompt.")
    md.append(f"- `rand` uploads with probability r = the mean measured upload rate of iuhlm at "
              "the same setting (see `rate_source` in the summary).")
    md.append(f"- Machine: {machine()}.\n")

    md.append("## Methods on the test split\n")
    if test:
        n = max(g["n_prompts"] for g in test["groups"])
        md.append(f"{n} test prompts × {cfg.get('max_tokens')} tokens, seed(s) "
                  f"{', '.join(str(s) for s in test['groups'][0]['seeds'])}.\n")
        md.append(method_table(test))
        md.append("\nFull columns (CIs, acceptance rate, uplink bytes, device/cloud energy, "
                  "filter overhead, wall-clock tokens/s): `docs/results/test_summary.csv`.\n")
    else:
        md.append("(not run)\n")

    md.append("## Calibration (SPEC §9)\n")
    if cal:
        md.append(f"`hlm calibrate --prompts data/prompts/calibration.jsonl --json` over "
                  f"{cal['n_prompts']} prompts, {cal['n_tokens']} drafted tokens, T = "
                  f"{cal['temperature']:.2f}:\n")
        md.append("| a | b | correlation r | Δ = P(q(d) < p(d)) | mean β | risk-averse u_th | risk-prone u_th |\n"
                  "|---|---|---|---|---|---|---|\n"
                  f"| {cal['a']:.4f} | {cal['b']:.4f} | {cal['correlation']:.3f} | {cal['delta']:.3f} | "
                  f"{cal['mean_beta']:.3f} | {cal['u_th_risk_averse']:.4f} | {cal['u_th_risk_prone']:.4f} |\n")
        md.append("Fit β ≈ a·u + b by least squares over (u, β) of every drafted token "
                  "(β = max(0, 1 − q(d)/p(d))). U-HLM reports β ≈ 0.82·u − 0.06 for "
                  "TinyLlama-1.1B → Llama-2-7B.\n")
    else:
        md.append("(not run)\n")

    md.append("## Plots\n")
    for name, cap in (("quality_vs_energy", "Quality against total energy per token (Pareto front dashed)"),
                      ("quality_vs_upload", "Quality against upload rate"),
                      ("energy_saving", "Energy saving against hlm (test split)"),
                      ("throughput_channels", "Modelled throughput per channel preset")):
        if os.path.exists(os.path.join("docs", "results", f"{name}.png")):
            md.append(f"**{cap}** ([SVG](results/{name}.svg))\n\n![{cap}](results/{name}.png)\n")
    md.append("### Throughput and energy per channel preset\n")
    md.append(channel_table(a.work) + "\n")

    md.append("## Importance study (dev split)\n")
    if dev:
        n = max(g["n_prompts"] for g in dev["groups"])
        md.append(f"{n} dev prompts × {dev.get('config', {}).get('max_tokens')} tokens; iuhlm "
                  "over estimator × u_th × λ, uhlm over a finer u_th grid "
                  "(`tools/eval/importance_study.py`).\n")
        md.append(grid_section(grid))
    md.append(importance_section(imp) + "\n")

    md.append("## Exact commands\n")
    md.append("```sh\n" + (commands or "(see tools/eval/make_results.sh)") + "\n"
              "python3 tools/eval/plots.py --work WORK --out docs/results\n"
              "cp WORK/importance.json docs/results/importance.json\n"
              "python3 tools/eval/make_results.py --work WORK --out docs/RESULTS.md\n```\n")
    md.append("`hlm eval` runs `python3 tools/eval/score.py --results DIR/results.jsonl` at the end "
              "of each run (unless `--no-score`) and folds the scores into summary.json/csv.\n")
    with open(a.out, "w") as f:
        f.write("\n".join(md))
    print(f"make_results: wrote {a.out}")


if __name__ == "__main__":
    main()
