#!/usr/bin/env bash
# make_results.sh: regenerates docs/RESULTS.md and docs/results/ from scratch, in this order:
# calibration fit, the study grid (u_th and λ from the data), the importance study on the dev
# split (which chooses the estimator and λ iuhlm runs with next), the method comparison on the
# test split, the channel presets, quality scoring, plots and the page. Every step resumes
# (hlm eval appends to its results.jsonl), so an interrupted run continues where it stopped.
#
#   tools/eval/make_results.sh              # all steps (~15 min on 2 cores at the defaults)
#   tools/eval/make_results.sh page         # only re-render plots + RESULTS.md from $WORK
#   STEPS="calibrate grid" tools/eval/make_results.sh   # steps: calibrate grid importance test
#                                                        #        channels page
#
# Environment (defaults in brackets): HLM [build/hlm], SLM [slm], LLM [llm], THREADS [2],
# WORK [eval-out], N test prompts [30], TOKENS [48], N_CAL [20], CAL_TOKENS [32], N_DEV [30],
# DEV_TOKENS [48], N_CH [8], CH_TOKENS [32], TEMP [0], TEST_SWEEP, DEV_SWEEP, DEV_UHLM_SWEEP
# [from the grid step].
# Python needs: pip install -r tools/eval/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/../.."

HLM=${HLM:-build/hlm}
SLM=${SLM:-slm}
LLM=${LLM:-llm}
THREADS=${THREADS:-2}
WORK=${WORK:-eval-out}
N=${N:-30}
TOKENS=${TOKENS:-48}
N_CAL=${N_CAL:-20}
CAL_TOKENS=${CAL_TOKENS:-32}
N_DEV=${N_DEV:-30}
DEV_TOKENS=${DEV_TOKENS:-48}
N_CH=${N_CH:-8}
CH_TOKENS=${CH_TOKENS:-32}
TEMP=${TEMP:-0}
# The importance study: every estimator at two uncertainty thresholds and its λ grid, and uhlm
# along a u_th grid fine enough to compare iuhlm with it at matched upload rates. Both grids are
# read off the data (step `grid`, tools/eval/study_grid.py): u_th at quantiles of the SLM's
# uncertainty on the dev prompts, λ at the quartiles of lambda_flip among the tokens above each
# u_th (the λ values that block about 25 %, 50 %, 75 % of the candidate uploads).
# DEV_SWEEP and DEV_UHLM_SWEEP override them.
ESTIMATORS=(focus "received(1)" "received(2)" entropy)
STEPS=${STEPS:-${1:-all}}
export HLM_SOURCE_DIR=$PWD

# "est=E;lambda=L" as the importance study chose them ("u_th=U;est=E;lambda=L" with the u_th of
# its best point when $1 is u_th), or nothing when it chose none.
chosen() {
  [[ -f "$WORK/importance.json" ]] || return 0
  python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))["choice"]
u = "u_th=%g;" % c["u_th"] if c and sys.argv[2] == "u_th" else ""
print(u + "est=%s;lambda=%g" % (c["estimator"], c["lambda"]) if c else "")' \
    "$WORK/importance.json" "${1:-}"
}
grid_key() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
  "$WORK/study_grid.json" "$1"; }
common=(--slm "$SLM" --llm "$LLM" --threads "$THREADS" --temp "$TEMP")
# Runs a command and records it in $WORK/commands.log (the page lists the exact commands).
run() {
  printf '%q ' "$@" | sed 's/ $//' >> "$WORK/commands.log"
  echo >> "$WORK/commands.log"
  "$@"
}
want() { [[ " $STEPS " == *" all "* || " $STEPS " == *" $1 "* ]]; }
log() { echo "make_results: $*" >&2; }
mkdir -p "$WORK"

if want calibrate; then
  log "calibrate ($N_CAL calibration prompts x $CAL_TOKENS tokens, T = 0.8)"
  run "$HLM" calibrate --slm "$SLM" --llm "$LLM" --threads "$THREADS" \
    --prompts data/prompts/calibration.jsonl --n "$N_CAL" --max-tokens "$CAL_TOKENS" --json \
    > "$WORK/calibration.json"
fi
if want grid; then
  log "study grid: traces of iuhlm at u_th = 0, λ = -1 (scores every token with u > 0, never blocks)"
  rm -rf "$WORK/grid" && mkdir -p "$WORK/grid"
  echo "# for each of the first $N_DEV dev prompts (i = 0..) and est in ${ESTIMATORS[*]}:" \
    >> "$WORK/commands.log"
  echo "$HLM run ${common[*]} --chat --prompt PROMPT_i --max-tokens $DEV_TOKENS" \
    "--policy 'iuhlm:u_th=0,lambda=-1,est=EST' --trace $WORK/grid/EST-i.jsonl" \
    >> "$WORK/commands.log"
  for est in "${ESTIMATORS[@]}"; do
    # received(w) is est=received plus w=... on the hlm run command line
    policy="iuhlm:u_th=0,lambda=-1,est=${est%%(*}"
    [[ $est == *"("* ]] && policy+=",w=$(tr -dc 0-9 <<< "$est")"
    i=0
    while IFS= read -r prompt; do
      "$HLM" run "${common[@]}" --chat --prompt "$prompt" --policy "$policy" \
        --max-tokens "$DEV_TOKENS" --trace "$WORK/grid/$est-$i.jsonl" --json > /dev/null
      i=$((i + 1))
    done < <(head -n "$N_DEV" data/prompts/dev.jsonl | python3 -c \
      'import json, sys; [print(json.loads(l)["prompt"].replace("\n", " ")) for l in sys.stdin]')
  done
  run python3 tools/eval/study_grid.py --dir "$WORK/grid" --out "$WORK/study_grid.json"
fi
if want importance; then
  if [[ -z "${DEV_SWEEP:-}" || -z "${DEV_UHLM_SWEEP:-}" ]]; then
    [[ -f "$WORK/study_grid.json" ]] || { log "no $WORK/study_grid.json: run the grid step first"; exit 1; }
  fi
  DEV_SWEEP=${DEV_SWEEP:-$(grid_key dev_sweep)}
  DEV_UHLM_SWEEP=${DEV_UHLM_SWEEP:-$(grid_key uhlm_sweep)}
  log "importance study on dev ($N_DEV prompts x $DEV_TOKENS tokens, sweep $DEV_SWEEP)"
  run "$HLM" eval "${common[@]}" --methods llm,hlm,iuhlm --prompts dev --n "$N_DEV" \
    --max-tokens "$DEV_TOKENS" --sweep "$DEV_SWEEP" --out "$WORK/dev" --no-score
  run "$HLM" eval "${common[@]}" --methods uhlm --prompts dev --n "$N_DEV" \
    --max-tokens "$DEV_TOKENS" --sweep "$DEV_UHLM_SWEEP" --out "$WORK/dev"
  run python3 tools/eval/importance_study.py --summary "$WORK/dev/summary.json" \
    --out "$WORK/importance.json"
fi
if want test; then
  if [[ -z "${TEST_SWEEP:-}" ]]; then
    [[ -f "$WORK/study_grid.json" ]] || { log "no $WORK/study_grid.json: run the grid step first"; exit 1; }
    TEST_SWEEP=$(grid_key test_sweep)
    # iuhlm runs on the test split with the estimator and λ the importance study chose (none
    # chosen: hlm's defaults); the other methods ignore those keys.
    c=$(chosen)
    TEST_SWEEP+=${c:+;$c}
  fi
  log "test split: every method ($N prompts x $TOKENS tokens, sweep $TEST_SWEEP)"
  run "$HLM" eval "${common[@]}" --methods slm,llm,hlm,rand,uhlm,iuhlm,spec --prompts test \
    --n "$N" --max-tokens "$TOKENS" --sweep "$TEST_SWEEP" --out "$WORK/test"
fi
if want channels; then
  # uhlm and iuhlm at the importance study's operating point (the default u_th uploads nearly
  # every token of a weak device model).
  c=$(chosen u_th)
  for ch in lte wifi narrowband; do
    log "channel $ch ($N_CH prompts x $CH_TOKENS tokens)"
    run "$HLM" eval "${common[@]}" --methods llm,hlm,uhlm,iuhlm,spec --prompts test --n "$N_CH" \
      --max-tokens "$CH_TOKENS" --channel "$ch" ${c:+--sweep "$c"} --out "$WORK/channel-$ch" \
      --no-score
  done
fi
if want page || want all; then
  log "plots and docs/RESULTS.md"
  python3 tools/eval/plots.py --work "$WORK" --out docs/results
  cp "$WORK/importance.json" docs/results/importance.json  # written by the importance step
  python3 tools/eval/make_results.py --work "$WORK" --hlm "$HLM" --slm "$SLM" --llm "$LLM" \
    --out docs/RESULTS.md
  cp "$WORK/test/summary.csv" docs/results/test_summary.csv
  cp "$WORK/test/summary.json" docs/results/test_summary.json
  cp "$WORK/dev/summary.json" docs/results/dev_summary.json
  cp "$WORK/calibration.json" docs/results/calibration.json
  cp "$WORK/study_grid.json" docs/results/study_grid.json
fi
log "done"
