#!/usr/bin/env python3
"""Writes docs/RESULTS.md from a make_results.sh work directory ("Results v2", issue 18): the
goals of issue 18 part 4, every method on the test split at each temperature (bootstrap CIs),
"when does hybrid win" (channel preset × cloud profile × fidelity floor), the comparison with
the target paper, the calibration fit, the plots, the importance study on dev, the exact
commands, the models and the machine. The figures come from results_v2.json
(tools/eval/results_v2.py). Called by tools/eval/make_results.sh.
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


# ------------------------------------------------------------------------------ Results v2

METHOD_NAME = {"slm": "slm (device only)", "llm": "llm (cloud only, streaming)",
               "hlm": "hlm (compressed upload)", "hlm-full": "hlm, `full` upload (standard HLM)",
               "uhlm": "uhlm", "iuhlm": "iuhlm"}


def ci(m, digits=3, pct=False):
    """'mean [lo, hi]' of a bootstrap figure, '–' when absent."""
    if not m:
        return "–"
    s = 100.0 if pct else 1.0
    if m.get("n", 1) < 2:
        return f"{s * m['mean']:.{digits}f}"
    return f"{s * m['mean']:.{digits}f} [{s * m['lo']:.{digits}f}, {s * m['hi']:.{digits}f}]"


def mean(m, digits=3, pct=False):
    return "–" if not m else f"{(100.0 if pct else 1.0) * m['mean']:.{digits}f}"


def setting_name(r):
    if r["method"] in ("uhlm", "iuhlm") and r.get("default_point"):
        return f"`{r['setting']}` (profile default)"
    return f"`{r['setting']}`"


def v2_method_table(tab):
    rows = ["| method | setting | BERTScore vs LLM (fidelity) | BERTScore vs reference | "
            "ROUGE-L vs LLM | energy/token (J) | saving vs hlm, same upload (%) | saving vs "
            "standard HLM (%) | tokens/s (modelled) | upload rate | TSR |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in tab["rows"]:
        m = r["metrics"]
        rows.append("| " + " | ".join([
            METHOD_NAME.get(r["method"], r["method"]), setting_name(r),
            ci(m.get("bertscore_f1_llm")), ci(m.get("bertscore_f1_ref")),
            ci(m.get("rougeL_f1_llm")), ci(m.get("e_per_token_j"), 3),
            ci(m.get("saving_vs_hlm"), 1, pct=True), ci(m.get("saving_vs_hlm_full"), 1, pct=True),
            mean(m.get("tokens_per_s"), 2),
            mean(m.get("upload_rate")), mean(m.get("tsr"))]) + " |")
    return "\n".join(rows)


def v2_goals(v2, temps, slm):
    g = v2["goals"]
    if not g:
        return "(the test step has not been run)\n"
    out = [f"Issue 18, part 4, with the device model `{os.path.basename(slm)}`, judged on the "
           "**test split** (the operating points and thresholds "
           "were chosen on the dev and calibration splits only). Fidelity = BERTScore F1 against "
           "the LLM-only output; energy saving against `hlm` with the same (default, compressed) "
           "upload, paired per prompt and seed, so that it measures what skipping verifications "
           "buys; against standard HLM (the `full` upload) the compression adds its own saving "
           "(next section).", "",
           "| T | goal | met? | evidence |", "|---|---|---|---|"]
    for t in temps:
        if t not in g:
            continue
        g1, g2 = g[t]["saving_at_095"], g[t]["iuhlm_vs_uhlm"]
        if not g1["evaluable"]:
            ev1 = "no scored uhlm/iuhlm runs with a standard-HLM pair"
        elif g1["best"]:
            b = g1["best"]
            ev1 = (f"best point at fidelity ≥ 0.95: {b['method']} `{b['setting']}`, fidelity "
                   f"{ci(b['fidelity'])}, saving {ci(b['saving'], 1, pct=True)} %")
        else:
            h = g1["highest_fidelity_point"]
            ev1 = (f"no uhlm/iuhlm operating point reaches fidelity 0.95; the closest, "
                   f"{h['method']} `{h['setting']}`, has {ci(h['fidelity'])} at a saving of "
                   f"{ci(h['saving'], 1, pct=True)} %")
        out.append(f"| {t} | best skipping method saves ≥ 40 % vs hlm at fidelity ≥ 0.95 | "
                   f"**{'yes' if g1['met'] else 'no'}** | {ev1} |")
        if g2["matched_points"]:
            ev2 = (f"{g2['matched_points']} of {g2['all_points']} iuhlm points fall inside "
                   "uhlm's upload-rate range; not worse at all of them (uhlm's quality at the "
                   "same "
                   f"rate inside or below iuhlm's CI): "
                   f"{'yes' if g2['not_worse_everywhere'] else 'no'}; better beyond the CIs at "
                   f"{g2['better_beyond_ci']}, worse beyond them at {g2['worse_beyond_ci']} "
                   f"({g2['quality_metric']})")
        else:
            ev2 = "no iuhlm point falls inside uhlm's upload-rate range: nothing to compare"
        out.append(f"| {t} | iuhlm ≥ uhlm at every matched upload rate, better beyond the CIs "
                   f"at ≥ 1 | **{'yes' if g2['met'] else 'no'}** | {ev2} |")
    out.append("")
    if any(t in g and not g[t]["iuhlm_vs_uhlm"]["met"] for t in temps):
        out.append("Why iuhlm does not beat uhlm here, token by token: \"Where the importance "
                   "gate fails\" below.\n")
    for t in temps:
        tab = v2["tables"].get(t)
        if not tab or float(t) == 0:
            continue
        h = next((r for r in tab["rows"] if r["method"] == "hlm-full"), None) or \
            next((r for r in tab["rows"] if r["method"] == "hlm"), None)
        fid = h and h["metrics"].get("bertscore_f1_llm")
        if fid:
            out.append(f"At T = {t} the LLM-only reference is one sample of the LLM, so fidelity "
                       "is bounded by how alike two samples of the same distribution are: "
                       f"{h['method']}, which samples exactly the LLM's distribution, scores "
                       f"{ci(fid)}. The fidelity floors are therefore met at T = {t} by no "
                       "method but llm-only itself; the greedy runs (T = 0) are where they "
                       "discriminate, and \"When does hybrid win\" uses them.\n")
    return "\n".join(out)


def v2_matched_table(g, t):
    mt = g[t]["matched"]
    if not mt["points"]:
        return ""
    rows = [f"iuhlm against uhlm at T = {t} ({mt['quality_metric']}; uhlm's figures read off its "
            "curve by linear interpolation between its operating points; – outside its range):",
            "", "| iuhlm setting | upload rate | iuhlm quality | uhlm quality at that rate | "
            "iuhlm saving vs hlm (%) | uhlm saving at that quality (%) |",
            "|---|---|---|---|---|---|"]
    for p in mt["points"]:
        rows.append(f"| `{p['setting']}`{' (default)' if p['default_point'] else ''} | "
                    f"{p['upload_rate']:.3f} | {ci(p['quality'])} | "
                    f"{ci(p['uhlm_quality_at_rate'])} | {ci(p['saving'], 1, pct=True)} | "
                    f"{ci(p['uhlm_saving_at_quality'], 1, pct=True)} |")
    return "\n".join(rows) + "\n"


def cloud_power(name):
    """'400 W' from costs/cloud/NAME.json's power.compute_w, '?' when not found."""
    prof = load(os.path.join("costs", "cloud", f"{name}.json")) or {}
    w = (prof.get("power") or {}).get("compute_w")
    return f"{w:g} W" if w is not None else "? W"


def v2_win(v2, rel):
    w = v2.get("win")
    if not w or not w["cells"]:
        return "(the win step has not been run)\n"
    powers = ", ".join(f"`{c}` {cloud_power(c)}" for c in w["clouds"])
    out = [f"Each method's energy per token and modelled throughput under every channel preset "
           f"(`hlm eval --channel`) and cloud cost profile (`--cloud-cost`; "
           f"`costs/cloud/*.json`: `llm-135m-epyc2` is this machine's 135M LLM measured, "
           f"`a100-llama-2-7b-fp16` the target paper's cloud model on an A100 as a roofline "
           f"*assumption*; the cloud's power while it verifies, from each profile: {powers}), "
           f"{w['n_prompts']} test prompts, T = {w['temperature']}, seed(s) "
           f"{', '.join(str(s) for s in w['seeds'])}. The device model, prompts and tokens are "
           "the same in every cell; only the costing changes. A method qualifies in a cell when "
           "its mean fidelity (BERTScore vs LLM) meets the floor (✓✓: the lower end of its "
           "95% CI does too); uhlm and iuhlm are shown at the operating point of their "
           "threshold sweep that qualifies with the least energy. Not qualifying: the figures "
           "of its highest-fidelity point, in parentheses. llm-only is the reference output, so "
           "its fidelity is 1 by definition.", ""]
    out.append(f"Fidelity comes from the scored test run of the same prompt, seed and setting: "
               f"{w['outputs_compared']} runs compared, {w['outputs_mismatched']} with other "
               "output tokens (those would be left unscored).\n")
    methods = ["slm", "llm", "hlm", "uhlm", "iuhlm"]
    for floor in sorted({c["floor"] for c in w["cells"]}):
        out += [f"**Fidelity floor {floor:.2f}** — energy per token in J (tokens/s); the best "
                "qualifying method in bold", "",
                "| cloud | channel | " + " | ".join(methods) + " | best, and by how much |",
                "|---|---|" + "---|" * len(methods) + "---|"]
        for c in [c for c in w["cells"] if c["floor"] == floor]:
            cells = []
            for m in methods:
                x = c["methods"].get(m)
                if not x:
                    cells.append("–")
                    continue
                e = x["metrics"]["e_per_token_j"]["mean"]
                tps = (x["metrics"].get("tokens_per_s") or {}).get("mean", 0)
                txt = f"{e:.3g} ({tps:.3g}/s)"
                if m in ("uhlm", "iuhlm"):
                    txt += f" `{x['setting']}`"
                if not x["qualifies"]:
                    txt = f"({txt}, fid. {mean(x['metrics'].get('bertscore_f1_llm'), 2)})"
                else:
                    txt += " ✓✓" if x.get("ci_clears_floor") else " ✓"
                if c["verdict"] and c["verdict"]["best"] == m:
                    txt = f"**{txt}**"
                cells.append(txt)
            v = c["verdict"]
            if not v:
                verdict = "no method qualifies"
            else:
                verdict = f"**{v['best']}**"
                if "runner_up" in v:
                    verdict += (f": {100 * v['saving_vs_runner_up']:.1f} % less energy than "
                                f"{v['runner_up']}")
                extra = [f"{100 * v[f'saving_vs_{o}']:.1f} % less than {o}"
                         for o in ("llm", "hlm") if f"saving_vs_{o}" in v and
                         o != v.get("runner_up")]
                if extra:
                    verdict += "; " + ", ".join(extra)
            out.append(f"| {c['cloud']} | {c['channel']} | " + " | ".join(cells) +
                       f" | {verdict} |")
        out.append("")
    counts = {}
    for c in w["cells"]:
        if c["verdict"]:
            counts.setdefault(c["floor"], {}).setdefault(c["verdict"]["best"], 0)
            counts[c["floor"]][c["verdict"]["best"]] += 1
    summary = "; ".join(f"floor {f:.2f}: " + ", ".join(f"{m} best in {n}" for m, n in
                                                        sorted(d.items()))
                        for f, d in sorted(counts.items()))
    out.append(f"**In short:** {summary or 'no method qualifies anywhere'} "
               f"(of {len(w['clouds']) * len(w['channels'])} cells per floor).\n")
    return "\n".join(out)


def v2_paper(v2, temps):
    P = v2["paper"]["figures"]
    ours = v2["paper"]["ours"]
    if not ours:
        return "(the test step has not been run)\n"
    cfg = next(iter(v2["tables"].values()))["config"]
    llm = os.path.basename(cfg.get("llm", "?"))
    slm = os.path.basename(cfg.get("slm", "?"))
    head = "| figure | paper (arXiv 2508.12590) | " + " | ".join(
        f"hlm, T = {t}" for t in temps if t in ours) + " |"
    rows = [head, "|---|---|" + "---|" * len([t for t in temps if t in ours])]

    def row(label, paper_txt, fn):
        vals = []
        for t in temps:
            if t not in ours:
                continue
            try:
                vals.append(fn(ours[t]))
            except (KeyError, TypeError):
                vals.append("–")
        rows.append(f"| {label} | {paper_txt} | " + " | ".join(vals) + " |")

    row("U-HLM (uhlm) fidelity, BERTScore", f"{100 * P['uhlm_bertscore']:.1f}",
        lambda o: ci(o["default"]["uhlm"]["bertscore"], 1, pct=True))
    row("iU-HLM (iuhlm) fidelity, BERTScore", f"{100 * P['iuhlm_bertscore']:.1f}",
        lambda o: ci(o["default"]["iuhlm"]["bertscore"], 1, pct=True))
    row("uhlm energy saving vs standard HLM (%)", f"{100 * P['uhlm_saving_vs_hlm']:.1f}",
        lambda o: ci(o["default"]["uhlm"]["saving_full"], 1, pct=True))
    row("iuhlm energy saving vs standard HLM (%)", f"{100 * P['iuhlm_saving_vs_hlm']:.1f}",
        lambda o: ci(o["default"]["iuhlm"]["saving_full"], 1, pct=True))
    row("uhlm saving vs hlm with the same upload (%): skipping alone", "–",
        lambda o: ci(o["default"]["uhlm"]["saving"], 1, pct=True))
    row("iuhlm saving vs hlm with the same upload (%): skipping alone", "–",
        lambda o: ci(o["default"]["iuhlm"]["saving"], 1, pct=True))
    row("uhlm → iuhlm throughput (tokens/s)",
        f"{P['uhlm_tokens_per_s']:.2f} → {P['iuhlm_tokens_per_s']:.2f}",
        lambda o: f"{mean(o['default']['uhlm']['tokens_per_s'], 2)} → "
                  f"{mean(o['default']['iuhlm']['tokens_per_s'], 2)}")
    row("highest-fidelity skipping point: BERTScore, saving vs standard HLM (%) (vs hlm, "
        "same upload)",
        f"{100 * P['best_bertscore']:.1f}, {100 * P['best_saving_vs_hlm']:.1f}",
        lambda o: f"{o['highest_fidelity']['method']} `{o['highest_fidelity']['setting']}`: "
                  f"{mean(o['highest_fidelity']['bertscore'], 1, pct=True)}, "
                  f"{mean(o['highest_fidelity']['saving_full'], 1, pct=True)} "
                  f"({mean(o['highest_fidelity']['saving'], 1, pct=True)})")
    out = ["Our uhlm and iuhlm rows are the pair profile's calibrated default operating point "
           "(`profiles/`); the paper's are its reported settings. Savings are paired per prompt "
           "and seed, against standard HLM (every token uploaded with the full distribution, as the "
           "paper's baseline) and against `hlm` with the same compressed upload (what skipping "
           "alone buys). The matched-quality comparison of iuhlm and uhlm is the table under each "
           "temperature in \"Methods on the test split\".",
           "", "\n".join(rows), "",
           "What differs in the setting:", "",
           f"- Models: the paper runs {P['setting'].split(';')[0]}; here the cloud is "
           f"`{llm}` and the device `{slm}` (Setup), a far weaker pair in agreement (the "
           "calibration's mean β below), so far more drafts are rejected and skipping them costs "
           "more fidelity.",
           "- Data: AlpacaEval instructions (test split), not the paper's prompts; answers are cut "
           "at the token limit in Setup.",
           "- Channel and energy: SPEC §7's model with this project's presets and cost profiles "
           "(the paper's constants are not public); the cloud's energy is the cloud profile's "
           "power × its verification time (the powers are listed under \"When does hybrid win\"), "
           "so its share of the total, and hence every saving, "
           "depends on the cloud profile (see \"When does hybrid win\").",
           "- Metric: BERTScore F1 with all-MiniLM-L6-v2, no baseline rescaling; the paper's "
           "encoder and rescaling are not stated, so compare differences, not absolute values.",
           "- Upload: uhlm/iuhlm here send the default compressed top-k encoding, standard HLM "
           "the full distribution, so part of the saving is the compression's, as in CU-HLM.", ""]
    return "\n".join(out)


def percent(x):
    return "–" if x is None else f"{100 * x:.1f} %"


def gate_section(gate, rel, results_dir):
    """Where the importance gate fails: tools/eval/gate_analysis.py's per-token figures."""
    if not gate:
        return "(step `gate` has not been run)\n"
    ests = gate["estimators"]
    prof = gate.get("profile") or {}
    first = next(iter(ests.values()))
    out = [f"Every draft of `hlm` at T = 0 on {gate['n']} prompts of `{gate['prompts']}` × "
           f"{gate['max_tokens']} tokens, with the u and importance a gate would have seen "
           "(`hlm run --policy hlm --trace F --trace-signals`; hlm at T = 0 follows the LLM's "
           "own greedy continuation, and the LLM replaces a draft iff it is not its argmax). "
           f"The uncertain tokens are those uhlm uploads at the profile's u_th = {gate['u_th']:g}; "
           "the gate is iuhlm's importance test at each estimator's λ (the profile's for "
           f"`{prof.get('estimator')}`). AUC: the chance that a replaced draft scores above a kept "
           "one (0.5 = no information), 95% bootstrap intervals over prompts. "
           f"`tools/eval/gate_analysis.py`; data `{rel}/gate_analysis.json`.\n",
           f"Of {first['tokens']} drafts the LLM replaces {first['replaced']} "
           f"({percent(first['replaced'] / max(1, first['tokens']))}); {first['uncertain']} are "
           f"uncertain, and of those it replaces {first['replaced_uncertain']} "
           f"({percent(first['replaced_uncertain'] / max(1, first['uncertain']))}). "
           f"u tells replaced from kept drafts with AUC {first['auc_u_all']:.3f} "
           f"{fmt_ci(first['auc_u_all_ci'])} over all tokens, and still with AUC "
           f"{first['auc_u_uncertain']:.3f} {fmt_ci(first['auc_u_uncertain_ci'])} within the "
           "uncertain ones: spending a gate's uploads on the most uncertain tokens instead "
           "(\"u alone\" below, a higher u_th) is the comparison the gate has to win.\n",
           "| estimator | λ | AUC of importance among uncertain tokens | gate uploads (share of "
           "uncertain) | replaced uncertain drafts it uploads (recall) | replaced drafts caught "
           "with the gate's upload count: gate / u alone / random |",
           "|---|---|---|---|---|---|"]
    for e, r in ests.items():
        g, su = r["gate"], r["same_uploads"]
        out.append(f"| {e} | {g['lambda']:g} | {r['auc_importance_uncertain']:.3f} "
                   f"{fmt_ci(r['auc_importance_uncertain_ci'])} | {percent(g['share_of_uncertain'])} "
                   f"{fmt_ci(g['share_ci'], pct=True)} | {percent(g['recall'])} "
                   f"{fmt_ci(g['recall_ci'], pct=True)} | {su['gate']} / {su['u_alone']:.1f} / "
                   f"{su['random_among_uncertain']:.1f} |")
    out.append("")
    best = max(ests.items(), key=lambda kv: kv[1]["auc_importance_uncertain"] or 0)
    adds = [e for e, r in ests.items() if r["auc_importance_uncertain_ci"]
            and r["auc_importance_uncertain_ci"][0] > 0.5]
    if adds:
        out.append(f"**Importance carries information** about which uncertain drafts the LLM "
                   f"replaces for {', '.join(adds)} (AUC interval above 0.5).\n")
    else:
        out.append("**The importance gate adds nothing here:** for no estimator does importance "
                   "tell the replaced uncertain drafts from the kept ones beyond chance (every "
                   f"AUC interval includes 0.5; the highest is {best[0]}'s "
                   f"{best[1]['auc_importance_uncertain']:.3f}). Its uploads catch about as many "
                   "replaced drafts as a random choice of the same number of uncertain tokens, "
                   "and the tokens it skips are replaced about as often as those it uploads.\n")
    kept = 1 - first["replaced_uncertain"] / max(1, first["uncertain"])
    out.append(f"What a gate has to work with: only {percent(kept)} of the uncertain drafts are kept "
               "by the LLM, so nearly every uncertain token a gate skips is one the LLM would have "
               "changed, whatever the gate looks at; a gate can save verifications at little cost "
               "in fidelity only where a good share of uncertain drafts survive, i.e. with a device "
               "model that agrees with the LLM far more often (docs/models.md, student v2).\n")
    r = ests.get(prof.get("estimator")) or first
    out.append(f"Where the `{prof.get('estimator') or next(iter(ests))}` gate's misses (replaced "
               "uncertain drafts it skips) fall:\n")
    out.append("| token class | uncertain | replaced | gate uploads | caught | missed |")
    out.append("|---|---|---|---|---|---|")
    for k, c in list(r["by_class"].items()) + list(r["by_position"].items()):
        out.append(f"| {k} | {c.get('uncertain', 0)} | {c.get('replaced', 0)} "
                   f"({percent(c.get('replaced', 0) / max(1, c.get('uncertain', 0)))}) | "
                   f"{c.get('uploaded', 0)} | {c.get('caught', 0)} | {c.get('missed', 0)} |")
    out.append("")
    if r["top_missed"]:
        out.append("Commonest missed drafts (draft → the LLM's token): " + ", ".join(
            f"`{m['draft']!r}` → `{m['llm']!r}` ×{m['n']}" for m in r["top_missed"][:8]) + ".\n")
    if os.path.exists(os.path.join(results_dir, "gate_analysis.png")):
        cap = "Replaced share by u (all drafts) and by importance quintile (uncertain drafts)"
        out.append(f"**{cap}** ([SVG]({rel}/gate_analysis.svg))\n\n"
                   f"![{cap}]({rel}/gate_analysis.png)\n")
    return "\n".join(out)


def fmt_ci(c, pct=False):
    if not c:
        return ""
    return f"[{100 * c[0]:.1f}, {100 * c[1]:.1f}]" if pct else f"[{c[0]:.3f}, {c[1]:.3f}]"


def v2_sections(v2, temps, rel, results_dir, slm):
    md = []
    md.append("## Goals (issue 18, part 4)\n")
    md.append(v2_goals(v2, temps, slm))
    md.append("## Methods on the test split\n")
    md.append(f"Figures are means over prompts (each prompt's value the mean over its seeds) with "
              f"[95% percentile bootstrap intervals]: {v2['bootstrap']['resamples']} resamples "
              f"of the prompts, a fixed seed ({v2['bootstrap']['seed']}), so the page "
              "regenerates identically. Quality against the LLM-only output of the same prompt "
              "and seed (fidelity) and against the data set's reference answer. uhlm and iuhlm "
              "run at the u_th operating points read off the dev split (step `grid`) plus the "
              "pair profile's calibrated default; iuhlm with the profile's estimator and λ.\n")
    for t in temps:
        tab = v2["tables"].get(t)
        if not tab:
            continue
        md.append(f"### T = {t}\n")
        md.append(f"{tab['n_prompts']} test prompts × {tab['config'].get('max_tokens')} tokens, "
                  f"seeds {', '.join(str(s) for s in tab['seeds'])}, channel "
                  f"`{tab['config'].get('channel')}`, cloud cost "
                  f"`{(tab['config'].get('cost') or {}).get('cloud')}`, device cost "
                  f"`{(tab['config'].get('cost') or {}).get('device')}`, upload "
                  f"`{tab['config'].get('encoding')}` (standard HLM: `full`).\n")
        md.append(v2_method_table(tab) + "\n")
        md.append(v2_matched_table(v2["goals"], t))
    md.append("Per-run summaries (Student-t CIs, every column `hlm eval` writes): "
              f"`{results_dir}/test-t*_summary.csv`.\n")
    md.append("## When does hybrid win\n")
    md.append(v2_win(v2, rel))
    for name, cap in (("hybrid_win", "Energy per token at the fidelity floors, per channel and "
                       "cloud profile (qualifying methods only)"),):
        if os.path.exists(os.path.join(results_dir, f"{name}.png")):
            md.append(f"**{cap}** ([SVG]({rel}/{name}.svg))\n\n![{cap}]({rel}/{name}.png)\n")
    md.append("## Where the importance gate fails (per token, test split)\n")
    md.append(gate_section(load(os.path.join(results_dir, "gate_analysis.json")), rel,
                           results_dir))
    md.append("## Against the paper\n")
    md.append(v2_paper(v2, temps))
    return "\n".join(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--hlm", default="build/hlm")
    ap.add_argument("--slm", default="slm")
    ap.add_argument("--llm", default="llm")
    ap.add_argument("--results-dir", default="docs/results",
                    help="where results_v2.json, the plots and the copied summaries are")
    a = ap.parse_args()
    v2 = load(os.path.join(a.results_dir, "results_v2.json")) or {
        "tables": {}, "goals": {}, "paper": {"figures": {}, "ours": {}}, "win": None,
        "bootstrap": {"resamples": 0, "seed": 0}}
    temps = list(v2["tables"].keys())
    first = next(iter(v2["tables"].values()), None)
    # Setup, scoring metadata: the first temperature's scored test run.
    test = load(os.path.join(first["dir"], "summary.json")) if first else None
    rel = os.path.relpath(a.results_dir, os.path.dirname(os.path.abspath(a.out)) or ".")
    dev = load(os.path.join(a.work, "dev", "summary.json"))
    cal = load(os.path.join(a.work, "calibration.json"))
    imp = load(os.path.join(a.results_dir, "importance.json"))
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
    md.append(f"Every number below comes from the files in `{a.results_dir}/` (`results_v2.json`, "
              "made by `tools/eval/results_v2.py` from the work directory, and the summaries "
              "copied from it). Results v2 figures are means over prompts with 95% percentile "
              "bootstrap intervals over prompts ([lo, hi], fixed seed); the importance study "
              "keeps `hlm eval`'s two-sided 95% Student-t half-widths (± …). Quality is "
              "measured "
              "against the LLM-only output for the same prompt and seed (fidelity) and against "
              "the data set's reference answer. The whole page regenerates unchanged for another "
              "device model with `SLM=... tools/eval/make_results.sh`.\n")
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
    md.append(f"- Decoding: chat template on, temperatures {', '.join(temps) or '–'} (T = 0 is "
              "greedy: hlm reproduces the LLM output exactly, so fidelity measures only what "
              f"skipped verifications change), {cfg.get('max_tokens')} new tokens, upload encoding "
              f"`{cfg.get('encoding')}` (standard HLM: `full`), K = {cfg.get('unc_samples')} "
              f"perturbed samples, θ_max = {cfg.get('theta_max')}; pair profile "
              f"`{os.path.basename((cfg.get('profile') or {}).get('path', '–'))}` "
              f"(u_th = {(cfg.get('profile') or {}).get('u_th')}, estimator "
              f"{(cfg.get('profile') or {}).get('estimator')}, λ = "
              f"{(cfg.get('profile') or {}).get('lambda', float('nan')):.4g}).")
    if scoring.get("bertscore"):
        b = scoring["bertscore"]
        md.append(f"- BERTScore: {b['package']}, model {b['model']}, layer {b['num_layers']} of "
                  f"{b['of_layers']}, idf {'on' if b['idf'] else 'off'}, baseline rescaling "
                  f"{'on' if b['rescale_with_baseline'] else 'off'} (raw F1: compare methods with "
                  "each other, not with rescaled published numbers).")
    if scoring.get("rouge"):
        r = scoring["rouge"]
        md.append(f"- ROUGE-L: {r['package']}, {r['variant']} F1, Porter stemmer.")
    cost = cfg.get("cost") or {}
    md.append("- Energy and throughput: SPEC §7's channel model on the cost profiles "
              f"(device `{cost.get('device')}`, cloud `{cost.get('cloud')}` unless a table says "
              "otherwise; docs/energy.md), so they do not follow the machine's load. Energy "
              "saving = 1 − E/E_ref on total energy per token, paired per prompt and seed, with "
              "E_ref the energy of `hlm` with the same upload encoding (what skipping buys) or of "
              "standard HLM (`hlm` with the `full` upload).")
    md.append(f"- Machine: {machine()}.\n")

    md.append(v2_sections(v2, temps, rel, a.results_dir, slm_path))

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
                      ("energy_saving",
                       "Energy saving against hlm with the same upload (test split)")):
        if os.path.exists(os.path.join(a.results_dir, f"{name}.png")):
            md.append(f"**{cap}** ([SVG]({rel}/{name}.svg))\n\n![{cap}]({rel}/{name}.png)\n")

    md.append("## Importance study (dev split)\n")
    if dev:
        n = max(g["n_prompts"] for g in dev["groups"])
        md.append(f"{n} dev prompts × {dev.get('config', {}).get('max_tokens')} tokens; iuhlm "
                  "over estimator × u_th × λ, uhlm over a finer u_th grid "
                  "(`tools/eval/importance_study.py`).\n")
        md.append(grid_section(grid))
    md.append(importance_section(imp) + "\n")
    if imp:
        md.append("The test split's iuhlm runs above use the pair profile's estimator and λ "
                  "(Setup), not this choice directly: a choice made on dev reaches the test "
                  "split through the profile (`hlm calibrate --save`, docs/profiles.md).\n")

    md.append("## Exact commands\n")
    md.append("```sh\n" + (commands or "(see tools/eval/make_results.sh)") + "\n"
              "python3 tools/eval/results_v2.py --work WORK --out docs/results/results_v2.json\n"
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
