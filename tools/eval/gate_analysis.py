#!/usr/bin/env python3
"""Where the importance gate fails: a per-token analysis (issue 18, part 4).

iuhlm uploads a draft when it is uncertain (u > u_th) *and* important (lambda_flip >= λ, the
estimator's own threshold in one scale); uhlm uploads every uncertain draft. Whether the
importance gate earns its place is a per-token question: of the drafts the LLM would replace,
does it keep more in the upload than a rule of the same upload count that looks at u alone?

For every prompt of a split this runs `hlm run --policy hlm --trace F --trace-signals` at T = 0
once per estimator: every draft is verified, so each trace line carries the LLM's verdict on the
SLM's draft (greedy: replaced iff the draft is not the LLM's argmax) beside the u and importance
a gate would have seen, along the LLM's own greedy continuation (hlm at T = 0 is the LLM's
output). The figures:

- AUC of u, and within the uncertain tokens (u > u_th) of the importance (lambda_flip), for
  telling replaced drafts from kept ones (0.5: no information), with 95% bootstrap intervals
  over prompts;
- the gate at the profile's λ: its share of the uncertain tokens, and its recall (the share of
  the replaced uncertain drafts it uploads). A gate that adds nothing has recall = share;
- the same upload count spent by u alone (the uhlm threshold that uploads as many tokens), and
  by a random choice among the uncertain tokens: the replaced drafts each catches;
- the misses by token class and position, and the commonest missed drafts.

    python3 tools/eval/gate_analysis.py --hlm build/hlm --slm slm --llm llm --prompts test \\
        --n 30 --max-tokens 48 --work eval-out/gate --out docs/results/gate_analysis.json \\
        --plot docs/results/gate_analysis

Resumable: traces already in --work are reused.
"""

import argparse
import json
import os
import random
import subprocess
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jsonl import read_jsonl  # noqa: E402

ESTIMATORS = ("entropy", "focus", "received")
BOOT = 2000
SEED = 20261207


def run_traces(a, prompts, est):
    """One hlm trace per prompt for this estimator; returns {prompt id: [trace lines]}."""
    out = {}
    d = os.path.join(a.work, est)
    os.makedirs(d, exist_ok=True)
    for k, p in enumerate(prompts):
        path = os.path.join(d, f"{p['id']}.jsonl")
        if not os.path.exists(path):
            cmd = [a.hlm, "run", "--slm", a.slm, "--llm", a.llm, "--threads", str(a.threads),
                   "--chat", "--policy", "hlm", "--estimator", est, "--temp", "0",
                   "-n", str(a.max_tokens), "--prompt", p["prompt"], "--trace", path + ".tmp",
                   "--trace-signals", "--json"]
            if a.profile:
                cmd += ["--profile", a.profile]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"gate_analysis: {' '.join(cmd[:4])} … failed on prompt {p['id']}:\n"
                         f"{r.stderr.strip()}")
            summary = json.loads(r.stdout)
            os.replace(path + ".tmp", path)
            json.dump(summary, open(os.path.join(d, f"{p['id']}.summary.json"), "w"))
        out[p["id"]] = read_jsonl(path)
        print(f"gate_analysis: {est} {k + 1}/{len(prompts)}", file=sys.stderr, flush=True)
    return out


def default_lambda(a, est):
    """The λ iuhlm applies with this estimator (the profile's for its own, else hlm's default),
    read off the policy string of a zero-token run."""
    cmd = [a.hlm, "run", "--slm", a.slm, "--llm", a.llm, "--chat", "--policy", "iuhlm",
           "--estimator", est, "-n", "0", "--prompt", "x", "--json"]
    if a.profile:
        cmd += ["--profile", a.profile]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    policy = json.loads(r.stdout)["policy"]
    return float(policy.split("lambda=")[1].split(",")[0])


def profile_of(a, prompts):
    """The pair profile hlm resolved for these models (u_th, estimator, λ)."""
    first = prompts[0]["id"]
    for est in ESTIMATORS:
        path = os.path.join(a.work, est, f"{first}.summary.json")
        if os.path.exists(path):
            return json.load(open(path))["profile"]
    sys.exit("gate_analysis: no run summary to read the pair profile from")


def auc(scores, labels):
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney)."""
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        rank_sum += sum(mid for k in range(i, j + 1) if labels[order[k]])
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def boot_ci(by_prompt, stat):
    """95% percentile bootstrap interval of stat(list of tokens) over prompts (fixed seed)."""
    rng = random.Random(SEED)
    keys = sorted(by_prompt)
    vals = []
    for _ in range(BOOT):
        toks = [t for k in (rng.choice(keys) for _ in keys) for t in by_prompt[k]]
        v = stat(toks)
        if v is not None:
            vals.append(v)
    if not vals:
        return None
    vals.sort()
    return [vals[int(0.025 * len(vals))], vals[min(len(vals) - 1, int(0.975 * len(vals)))]]


def flip(t):
    """lambda_flip as a number: "inf" (no attention evidence: important at any λ) → +inf."""
    v = t["lambda_flip"]
    return float("inf") if v == "inf" else float(v)


def token_class(piece):
    s = piece or ""
    if s.strip() == "":
        return "whitespace/newline"
    if all(not c.isalnum() for c in s.strip()):
        return "punctuation"
    if any(c.isdigit() for c in s):
        return "number"
    if s.startswith(" ") or s.startswith("\u2581"):
        return "word start"
    return "word continuation"


def analyse(traces, u_th, lam):
    """traces: {prompt: [lines]} of one estimator. Returns the figures of the module doc."""
    toks = []
    for pid, lines in traces.items():
        for i, t in enumerate(lines):
            if not t["uploaded"] or t["u"] is None:
                continue  # an end-of-sequence draft past the limit carries no verdict
            draft = t.get("draft_piece", t["piece"]) if t["resampled"] else t["piece"]
            toks.append(dict(p=pid, i=i, u=float(t["u"]), f=flip(t), rej=bool(t["resampled"]),
                             piece=draft or f"<token {t['draft']}>",
                             llm=t["piece"] or f"<token {t['token']}>"))
    by_prompt = defaultdict(list)
    for t in toks:
        by_prompt[t["p"]].append(t)
    unc = [t for t in toks if t["u"] > u_th]
    unc_by_prompt = defaultdict(list)
    for t in unc:
        unc_by_prompt[t["p"]].append(t)

    def auc_u(ts):
        return auc([t["u"] for t in ts], [t["rej"] for t in ts])

    def auc_i(ts):
        return auc([min(t["f"], 1e30) for t in ts], [t["rej"] for t in ts])

    gated = [t for t in unc if t["f"] >= lam]
    rej_unc = [t for t in unc if t["rej"]]
    n_up = len(gated)
    # u alone at the same upload count: the n_up most uncertain tokens of all (ties split pro
    # rata, as a threshold between equal u values cannot separate them).
    by_u = sorted(toks, key=lambda t: -t["u"])
    if n_up > 0:
        cut_u = by_u[n_up - 1]["u"]
        above = [t for t in toks if t["u"] > cut_u]
        tie = [t for t in toks if t["u"] == cut_u]
        take = n_up - len(above)
        u_caught = sum(t["rej"] for t in above) + take * sum(t["rej"] for t in tie) / len(tie)
    else:
        cut_u, u_caught = None, 0.0
    gate_caught = sum(t["rej"] for t in gated)
    rand_caught = len(rej_unc) * n_up / len(unc) if unc else 0.0

    def tally(group_of):
        """The gate's counts over the uncertain tokens, per group."""
        out = defaultdict(Counter)
        for t in unc:
            c, up = out[group_of(t)], t["f"] >= lam
            c["uncertain"] += 1
            c["replaced"] += t["rej"]
            c["uploaded"] += up
            c["caught"] += t["rej"] and up
            c["missed"] += t["rej"] and not up
        return out

    classes = tally(lambda t: token_class(t["piece"]))
    positions = tally(lambda t: "answer tokens 1-8" if t["i"] < 8 else ("9-24" if t["i"] < 24
                                                                        else "25+"))
    missed = Counter((t["piece"], t["llm"]) for t in unc if t["rej"] and t["f"] < lam)
    # replaced share by importance quintile among the uncertain tokens
    qs = sorted(unc, key=lambda t: t["f"])
    quint = []
    for q in range(5):
        part = qs[q * len(qs) // 5:(q + 1) * len(qs) // 5]
        if part:
            quint.append(dict(lo=part[0]["f"], hi=part[-1]["f"], n=len(part),
                              replaced=sum(t["rej"] for t in part) / len(part)))
    ubins = []
    for lo in [x / 10 for x in range(10)]:
        part = [t for t in toks if lo < t["u"] <= lo + 0.1 or (lo == 0 and t["u"] == 0)]
        if part:
            ubins.append(dict(lo=lo, hi=lo + 0.1, n=len(part),
                              replaced=sum(t["rej"] for t in part) / len(part)))
    fin = lambda x: x if x != float("inf") else "inf"  # noqa: E731
    return {
        "tokens": len(toks), "prompts": len(by_prompt),
        "replaced": sum(t["rej"] for t in toks),
        "uncertain": len(unc), "replaced_uncertain": len(rej_unc),
        "auc_u_all": auc_u(toks), "auc_u_all_ci": boot_ci(by_prompt, auc_u),
        "auc_u_uncertain": auc_u(unc), "auc_u_uncertain_ci": boot_ci(unc_by_prompt, auc_u),
        "auc_importance_uncertain": auc_i(unc),
        "auc_importance_uncertain_ci": boot_ci(unc_by_prompt, auc_i),
        "gate": {"lambda": lam, "uploads": n_up,
                 "share_of_uncertain": n_up / len(unc) if unc else None,
                 "recall": gate_caught / len(rej_unc) if rej_unc else None,
                 "caught": gate_caught,
                 "recall_ci": boot_ci(unc_by_prompt, lambda ts: (
                     sum(t["rej"] and t["f"] >= lam for t in ts) / max(1, sum(t["rej"] for t in ts)))),
                 "share_ci": boot_ci(unc_by_prompt, lambda ts: (
                     sum(t["f"] >= lam for t in ts) / max(1, len(ts))))},
        "same_uploads": {"gate": gate_caught, "u_alone": u_caught, "u_alone_threshold": cut_u,
                         "random_among_uncertain": rand_caught},
        "by_class": {k: dict(v) for k, v in sorted(classes.items())},
        "by_position": {k: dict(positions[k]) for k in ("answer tokens 1-8", "9-24", "25+")
                        if k in positions},
        "importance_quintiles": [dict(q, lo=fin(q["lo"]), hi=fin(q["hi"])) for q in quint],
        "u_bins": ubins,
        "top_missed": [dict(draft=d, llm=l, n=n) for (d, l), n in missed.most_common(12)],
    }


def plot(res, base):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    first = next(iter(res["estimators"].values()))
    ub = first["u_bins"]
    ax1.bar([b["lo"] + 0.05 for b in ub], [b["replaced"] for b in ub], width=0.09, color="#4c72b0")
    ax1.axvline(res["u_th"], color="k", ls="--", lw=1)
    ax1.set_xlabel("uncertainty u")
    ax1.set_ylabel("share of drafts the LLM replaces")
    ax1.set_title("u separates drafts (all tokens)")
    for est, r in res["estimators"].items():
        q = r["importance_quintiles"]
        ax2.plot(range(1, len(q) + 1), [x["replaced"] for x in q], marker="o", label=est)
    ax2.axhline(first["replaced_uncertain"] / max(1, first["uncertain"]), color="k", ls=":",
                lw=1, label="mean")
    ax2.set_xticks(range(1, 6))
    ax2.set_xlabel("importance quintile among uncertain tokens (1 = least important)")
    ax2.set_title(f"importance, given u > {res['u_th']:g}")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{base}.{ext}", dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hlm", default="build/hlm")
    ap.add_argument("--slm", default="slm")
    ap.add_argument("--llm", default="llm")
    ap.add_argument("--profile", default="", help="pair profile (hlm's default: the matching one)")
    ap.add_argument("--prompts", default="test", help="a split of data/prompts or a .jsonl file")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--estimators", default=",".join(ESTIMATORS))
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", default="", help="write PLOT.png and PLOT.svg")
    a = ap.parse_args()
    path = a.prompts if a.prompts.endswith(".jsonl") else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "prompts", a.prompts + ".jsonl")
    prompts = read_jsonl(path)[:a.n]
    ests = [e for e in a.estimators.split(",") if e]
    traces = {e: run_traces(a, prompts, e) for e in ests}
    prof = profile_of(a, prompts)
    u_th = float(prof["u_th"])
    res = {"prompts": os.path.relpath(path), "n": len(prompts), "max_tokens": a.max_tokens,
           "temperature": 0, "u_th": u_th, "profile": prof, "estimators": {}}
    for e in ests:
        res["estimators"][e] = analyse(traces[e], u_th, default_lambda(a, e))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    json.dump(res, open(a.out, "w"), indent=1)
    if a.plot:
        plot(res, a.plot)
    for e, r in res["estimators"].items():
        g = r["gate"]
        print(f"{e}: {r['tokens']} tokens, {r['uncertain']} uncertain; AUC u {r['auc_u_all']:.3f}, "
              f"AUC importance | uncertain {r['auc_importance_uncertain']:.3f}; gate uploads "
              f"{g['share_of_uncertain']:.3f} of them and catches {g['recall']:.3f} of the "
              f"replaced; same uploads: gate {r['same_uploads']['gate']}, u alone "
              f"{r['same_uploads']['u_alone']:.1f}, random {r['same_uploads']['random_among_uncertain']:.1f}")


if __name__ == "__main__":
    main()
