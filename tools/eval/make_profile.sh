#!/usr/bin/env bash
# make_profile.sh: builds the pair profile shipped for the default pair (registry `slm` + `llm`)
# from the committed calibration prompts, then measures what its defaults give on the dev split
# (docs/profiles.md has the figures and the reasoning).
#
#   tools/eval/make_profile.sh            # calibrate + save, then the dev-split check
#   STEPS=calibrate tools/eval/make_profile.sh
#
# Environment (defaults in brackets): HLM [build/hlm], THREADS [2], WORK [profile-out],
# MAX_RISK [0.10] the skip-risk budget, CAL_TOKENS [64], N_DEV [30], DEV_TOKENS [48],
# UHLM_SWEEP [u_th values for the uhlm curve beside the default], OUT [the shipped file].
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
UHLM_SWEEP=${UHLM_SWEEP:-0.475,0.525,0.575,0.675,0.725,0.775}
OUT=${OUT:-profiles/smollm2-135m-instruct.slm-llm.json}
STEPS=${STEPS:-calibrate dev}
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
        --max-risk "$MAX_RISK" --save "$OUT"
      ;;
    dev)
      # The defaults the profile gives (uhlm, iuhlm) against llm and hlm, then uhlm along a u_th
      # grid around the default: the same prompts and seed, interleaved prompt by prompt.
      run "$HLM" eval --slm slm --llm llm --threads "$THREADS" --profile "$OUT" \
        --methods llm,hlm,uhlm,iuhlm --prompts dev --n "$N_DEV" --max-tokens "$DEV_TOKENS" \
        --out "$WORK/dev" $SCORE_FLAG
      run "$HLM" eval --slm slm --llm llm --threads "$THREADS" --profile "$OUT" \
        --methods uhlm --sweep "u_th=$UHLM_SWEEP" --prompts dev --n "$N_DEV" \
        --max-tokens "$DEV_TOKENS" --out "$WORK/dev" $SCORE_FLAG
      python3 - "$WORK/dev/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
cols = ["upload_rate", "tsr", "rougeL_f1_llm", "bertscore_f1_llm", "energy_saving_vs_hlm",
        "tokens_per_s"]
print("| method | setting | " + " | ".join(cols) + " | n |")
print("|---" * (len(cols) + 3) + "|")
for g in s["groups"]:
    m = g["metrics"]
    cells = [f"{m[c]['mean']:.3f} ± {m[c]['ci95']:.3f}" if c in m and m[c].get("mean") is not None
             else "–" for c in cols]
    print(f"| {g['method']} | `{g['setting']}` | " + " | ".join(cells) + f" | {g['n_prompts']} |")
PY
      ;;
    *)
      echo "unknown step '$step' (calibrate, dev)" >&2
      exit 1
      ;;
  esac
done
