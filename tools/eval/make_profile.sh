#!/usr/bin/env bash
# make_profile.sh: builds the pair profile shipped for the default pair (registry `slm` + `llm`)
# from the committed calibration prompts, then measures what its defaults give on the dev split
# (docs/profiles.md has the figures and the reasoning).
#
#   tools/eval/make_profile.sh            # calibrate + save, then the dev-split check
#   STEPS=calibrate tools/eval/make_profile.sh   # steps: calibrate dev fallback
#
# Environment (defaults in brackets): HLM [build/hlm], THREADS [2], WORK [profile-out],
# MAX_RISK [0.10] the skip-risk budget, CAL_TOKENS [64], N_DEV [30], DEV_TOKENS [48],
# TEMPS [0.8 0] the dev-split temperatures, UHLM_SWEEP [u_th values for the uhlm curve beside
# the default], OUT [the shipped file].
# The dev step scores ROUGE-L only (pip install rouge-score==0.1.2); SCORE=full adds BERTScore
# (pip install -r tools/eval/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."

HLM=${HLM:-build/hlm}
THREADS=${THREADS:-2}
WORK=${WORK:-profile-out}
MAX_RISK=${MAX_RISK:-0.10}
CAL_TOKENS=${CAL_TOKENS:-64}
N_DEV=${N_DEV:-30}
DEV_TOKENS=${DEV_TOKENS:-48}
UHLM_SWEEP=${UHLM_SWEEP:-0.425,0.525,0.725,0.825}
OUT=${OUT:-profiles/smollm2-135m-instruct.slm-llm.json}
STEPS=${STEPS:-calibrate dev fallback}
TEMPS=${TEMPS:-0.8 0}
SCORE_FLAG=--fast-score
[[ ${SCORE:-fast} == full ]] && SCORE_FLAG=

run() {
  echo "+ $*" >&2
  "$@"
}

mkdir -p "$WORK"
for step in $STEPS; do
  case $step in
    calibrate)
      # Full verification over all 100 calibration prompts at the run defaults (T = 0.8,
      # K = 20, θ_max = 2); the importance estimator and λ are hlm's defaults (the importance
      # study, docs/RESULTS.md).
      run "$HLM" calibrate --slm slm --llm llm --threads "$THREADS" \
        --prompts data/prompts/calibration.jsonl --max-tokens "$CAL_TOKENS" \
        --max-risk "$MAX_RISK" --save "$OUT" --json >"$WORK/calibration.json"
      # The fit, the choice and the rule's trade-off at every u level (skip share, risk).
      python3 - "$WORK/calibration.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
print(f"{c['n_prompts']} prompts, {c['n_tokens']} tokens: beta = {c['a']:.4f} u {c['b']:+.4f} "
      f"(r = {c['correlation']:.3f}), Delta = {c['delta']:.4f}, risk-averse u_th = "
      f"{c['u_th_risk_averse']:.4f}, risk-prone u_th = {c['u_th_risk_prone']:.4f}")
print(f"skip-risk (max_risk {c['max_risk']}): u_th = {c['u_th']:.4f}, skips "
      f"{100 * c['skip_share']:.1f}% at risk {c['risk']:.4f} -> {c['profile']}")
print("| u level | skip share | risk |\n|---|---|---|")
for u, share, risk in c["risk_curve"]:
    print(f"| {u:.2f} | {share:.3f} | {risk:.4f} |")
PY
      ;;
    dev)
      # At each temperature: the defaults the profile gives (uhlm, iuhlm) against llm and hlm,
      # then uhlm along a u_th grid around the default (the u_th that budgets 0.03, 0.05, 0.15 and
      # 0.2 choose); the same prompts and seeds, interleaved prompt by prompt. T = 0.8 is what
      # `hlm run` does by default; at T = 0 hlm reproduces the LLM's output exactly, so fidelity
      # there measures only what skipping changes.
      for temp in $TEMPS; do
        dir="$WORK/dev-t$temp"
        run "$HLM" eval --slm slm --llm llm --threads "$THREADS" --profile "$OUT" --temp "$temp" \
          --methods llm,hlm,uhlm,iuhlm --prompts dev --n "$N_DEV" --max-tokens "$DEV_TOKENS" \
          --out "$dir" $SCORE_FLAG
        run "$HLM" eval --slm slm --llm llm --threads "$THREADS" --profile "$OUT" --temp "$temp" \
          --methods uhlm --sweep "u_th=$UHLM_SWEEP" --prompts dev --n "$N_DEV" \
          --max-tokens "$DEV_TOKENS" --out "$dir" $SCORE_FLAG
        echo "dev split, T = $temp:"
        python3 - "$dir" <<'PY'
import collections, json, math, sys
d = sys.argv[1]
s = json.load(open(f"{d}/summary.json"))
# Paired fidelity difference to hlm per prompt (mean and 95% t half-width; t ~ 2.05 at n = 30).
rouge = collections.defaultdict(dict)
for line in open(f"{d}/scores.jsonl"):
    j = json.loads(line)
    prompt, method, label, seed = j["key"].split("|")
    if j.get("rougeL_f1_llm") is not None:
        rouge[(method, label)][(prompt, seed)] = j["rougeL_f1_llm"]
def paired(method, label):
    ref, own = rouge[("hlm", "default")], rouge[(method, label)]
    diffs = [own[k] - ref[k] for k in own if k in ref]
    if len(diffs) < 2:
        return "–"
    m = sum(diffs) / len(diffs)
    sd = math.sqrt(sum((x - m) ** 2 for x in diffs) / (len(diffs) - 1))
    return f"{m:+.3f} ± {2.05 * sd / math.sqrt(len(diffs)):.3f}"
cols = ["upload_rate", "tsr", "rougeL_f1_llm", "bertscore_f1_llm", "energy_saving_vs_hlm",
        "tokens_per_s"]
print("| method | setting | " + " | ".join(cols) + " | ROUGE-L paired diff vs hlm | n |")
print("|---" * (len(cols) + 4) + "|")
for g in s["groups"]:
    m = g["metrics"]
    cells = [f"{m[c]['mean']:.3f} ± {m[c]['ci95']:.3f}" if m.get(c, {}).get("mean") is not None
             else "–" for c in cols]
    print(f"| {g['method']} | `{g['setting']}` | " + " | ".join(cells) +
          f" | {paired(g['method'], g['setting'])} | {g['n_prompts']} |")
PY
      done
      ;;
    fallback)
      # What U-HLM's published values (the fallback without a profile) do on this pair.
      run "$HLM" eval --slm slm --llm llm --threads "$THREADS" --profile none \
        --methods uhlm,iuhlm --prompts dev --n "$N_DEV" --max-tokens "$DEV_TOKENS" \
        --out "$WORK/dev-fallback" --no-score
      ;;
    *)
      echo "unknown step '$step' (calibrate, dev, fallback)" >&2
      exit 1
      ;;
  esac
done
