#!/usr/bin/env bash
# make_results.sh: regenerates docs/RESULTS.md and docs/results/ from scratch: calibration fit,
# the method comparison on the test split, the channel presets, the importance study on the dev
# split, quality scoring, plots and the page. Every step resumes (hlm eval appends to its
# results.jsonl), so an interrupted run continues where it stopped.
#
#   tools/eval/make_results.sh              # all steps (~40 min on 2 cores at the defaults)
#   tools/eval/make_results.sh page         # only re-render plots + RESULTS.md from $WORK
#   STEPS="calibrate test" tools/eval/make_results.sh
#
# Environment (defaults in brackets): HLM [build/hlm], SLM [slm], LLM [llm], THREADS [2],
# WORK [eval-out], N test prompts [30], TOKENS [48], N_CAL [20], CAL_TOKENS [32], N_DEV [12],
# DEV_TOKENS [32], N_CH [8], CH_TOKENS [32], TEMP [0], TEST_SWEEP ['u_th=0.3,0.6'].
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
N_DEV=${N_DEV:-12}
DEV_TOKENS=${DEV_TOKENS:-32}
N_CH=${N_CH:-8}
CH_TOKENS=${CH_TOKENS:-32}
TEMP=${TEMP:-0}
TEST_SWEEP=${TEST_SWEEP:-u_th=0.3,0.6}
# The importance study: every estimator at two uncertainty thresholds and its λ grid, and uhlm
# along a finer u_th grid so that iuhlm can be compared with it at matched upload rates.
DEV_SWEEP=${DEV_SWEEP:-"est=focus;u_th=0.3,0.6;lambda=1,2,3 | est=received(1),received(2);u_th=0.3,0.6;lambda=1,1.5 | est=entropy;u_th=0.3,0.6;lambda=0.2,0.3"}
DEV_UHLM_SWEEP=${DEV_UHLM_SWEEP:-u_th=0.15,0.3,0.45,0.6,0.75,0.9}
STEPS=${STEPS:-${1:-all}}
export HLM_SOURCE_DIR=$PWD

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
if want test; then
  log "test split: every method ($N prompts x $TOKENS tokens, sweep $TEST_SWEEP)"
  run "$HLM" eval "${common[@]}" --methods slm,llm,hlm,rand,uhlm,iuhlm,spec --prompts test \
    --n "$N" --max-tokens "$TOKENS" --sweep "$TEST_SWEEP" --out "$WORK/test"
fi
if want channels; then
  for ch in lte wifi narrowband; do
    log "channel $ch ($N_CH prompts x $CH_TOKENS tokens)"
    run "$HLM" eval "${common[@]}" --methods llm,hlm,uhlm,iuhlm,spec --prompts test --n "$N_CH" \
      --max-tokens "$CH_TOKENS" --channel "$ch" --out "$WORK/channel-$ch" --no-score
  done
fi
if want importance; then
  log "importance study on dev ($N_DEV prompts x $DEV_TOKENS tokens)"
  run "$HLM" eval "${common[@]}" --methods llm,hlm,iuhlm --prompts dev --n "$N_DEV" \
    --max-tokens "$DEV_TOKENS" --sweep "$DEV_SWEEP" --out "$WORK/dev" --no-score
  run "$HLM" eval "${common[@]}" --methods uhlm --prompts dev --n "$N_DEV" \
    --max-tokens "$DEV_TOKENS" --sweep "$DEV_UHLM_SWEEP" --out "$WORK/dev"
fi
if want page || want all; then
  log "plots and docs/RESULTS.md"
  python3 tools/eval/plots.py --work "$WORK" --out docs/results
  python3 tools/eval/importance_study.py --summary "$WORK/dev/summary.json" \
    --out docs/results/importance.json
  python3 tools/eval/make_results.py --work "$WORK" --hlm "$HLM" --slm "$SLM" --llm "$LLM" \
    --out docs/RESULTS.md
  cp "$WORK/test/summary.csv" docs/results/test_summary.csv
  cp "$WORK/test/summary.json" docs/results/test_summary.json
  cp "$WORK/dev/summary.json" docs/results/dev_summary.json
  cp "$WORK/calibration.json" docs/results/calibration.json
fi
log "done"
