#!/usr/bin/env bash
# make_results.sh: regenerates docs/RESULTS.md and docs/results/ from scratch ("Results v2",
# issue 18), in this order: calibration fit, the study grid (u_th and λ from the dev data), the
# importance study on the dev split, then on the test split every method at T = 0 and T = 0.8
# over several seeds (step `test`), the same generations priced under every channel preset ×
# cloud cost profile for "when does hybrid win" (step `win`: re-run unscored, as hlm cannot
# re-cost a recorded run), the per-token analysis of the importance gate (step `gate`), quality
# scoring, plots and the page.
# Every step resumes (hlm eval appends to its results.jsonl), so an interrupted run continues
# where it stopped.
#
#   tools/eval/make_results.sh              # all steps: about 45 min on 2 cores at the defaults
#                                           # (~200k generated tokens at 9-13 ms each on one
#                                           # loaded core, plus ~5 min of scoring and loading)
#   tools/eval/make_results.sh page         # only re-render plots + RESULTS.md from $WORK
#   STEPS="calibrate grid" tools/eval/make_results.sh   # steps: calibrate grid importance test
#                                                        #        win gate page
#   N=3 TOKENS=16 SEEDS="1 2" N_DEV=3 DEV_TOKENS=16 N_CAL=3 CAL_TOKENS=16 WORK=/tmp/res-smoke \
#     OUT_MD=/tmp/res-smoke/RESULTS.md OUT_DIR=/tmp/res-smoke/results tools/eval/make_results.sh
#                                                        # a smoke run (a few minutes)
#
# Environment (defaults in brackets): HLM [build/hlm], SLM [slm], LLM [llm], THREADS [2],
# WORK [eval-out], OUT_MD [docs/RESULTS.md], OUT_DIR [docs/results], N test prompts [30],
# TOKENS [48], SEEDS ["1 2 3"], TEMPS ["0 0.8"], N_CAL [20], CAL_TOKENS [32], N_DEV [30],
# DEV_TOKENS [48], DEV_SWEEP, DEV_UHLM_SWEEP [from the grid step], OP_UTH: the u_th operating
# points of uhlm and iuhlm on the test split, comma-separated [three values of the grid step's
# uhlm u_th grid, which quantiles of u on the dev split give: its first, a third and two thirds
# along; the pair profile's calibrated u_th is always added], N_WIN test prompts per channel x
# cloud cell [12, at most N], WIN_SEEDS [the first of SEEDS], WIN_TEMP [0], CHANNELS
# ["narrowband lte wifi"], CLOUDS [cloud cost profiles: "llm-135m-epyc2 a100-llama-2-7b-fp16"].
# DEVICE_COST [auto] and PROFILE [the pair profile matching the models] go to every hlm eval of
# the test and win steps as --device-cost and --profile.
# Another device model (a student v2): SLM=path/or/name; nothing else changes (it needs its pair
# profile, `hlm calibrate --save`, and a device cost profile, `hlm bench engine --save-cost`, in
# the search paths for its defaults and reproducible energy; otherwise hlm says what it used).
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
TEMP=${TEMP:-0}  # the dev steps (grid, importance)
SEEDS=${SEEDS:-1 2 3}
TEMPS=${TEMPS:-0 0.8}
N_WIN=${N_WIN:-$(( N < 12 ? N : 12 ))}
WIN_SEEDS=${WIN_SEEDS:-${SEEDS%% *}}
WIN_TEMP=${WIN_TEMP:-0}
CHANNELS=${CHANNELS:-narrowband lte wifi}
CLOUDS=${CLOUDS:-llm-135m-epyc2 a100-llama-2-7b-fp16}
DEVICE_COST=${DEVICE_COST:-auto}
PROFILE=${PROFILE:-}
OUT_MD=${OUT_MD:-docs/RESULTS.md}
OUT_DIR=${OUT_DIR:-docs/results}
# The importance study: every estimator at two uncertainty thresholds and its λ grid, and uhlm
# along a u_th grid fine enough to compare iuhlm with it at matched upload rates. Both grids are
# read off the data (step `grid`, tools/eval/study_grid.py): u_th at quantiles of the SLM's
# uncertainty on the dev prompts, λ at the quartiles of lambda_flip among the tokens above each
# u_th (the λ values that block about 25 %, 50 %, 75 % of the candidate uploads).
# DEV_SWEEP and DEV_UHLM_SWEEP override them.
ESTIMATORS=(focus "received(1)" "received(2)" entropy)
STEPS=${STEPS:-${1:-all}}
export HLM_SOURCE_DIR=$PWD

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
log() { echo "make_results [$(date +%T)]: $*" >&2; }
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
# The test split's operating points of uhlm and iuhlm: OP_UTH, else three u_th of the grid
# step's uhlm grid (quantiles of u on dev prompts: tuned on dev only). The sweep's empty
# alternative adds the pair profile's calibrated default (labelled with its u_th); iuhlm uses the
# profile's estimator and λ throughout.
op_sweep() {
  local u=${OP_UTH:-}
  if [[ -z "$u" ]]; then
    if [[ ! -f "$WORK/study_grid.json" ]]; then
      log "no $WORK/study_grid.json: run the grid step first (or set OP_UTH)"
      exit 1
    fi
    u=$(python3 -c 'import json, sys
g = json.load(open(sys.argv[1]))["uhlm_u_th"]
n = len(g)
print(",".join("%g" % g[i] for i in sorted({0, round((n - 1) / 3), round(2 * (n - 1) / 3)})))' \
      "$WORK/study_grid.json")
  fi
  echo "u_th=$u |"
}
v2common=(--slm "$SLM" --llm "$LLM" --threads "$THREADS" --device-cost "$DEVICE_COST"
          ${PROFILE:+--profile "$PROFILE"})
csv() { tr -s ' ' ',' <<< "$*" | sed 's/^,//; s/,$//'; }
tdir() { echo "$WORK/test-t$1"; }
if want test; then
  sweep=$(op_sweep)
  for t in $TEMPS; do
    log "test split, T = $t: slm llm hlm uhlm iuhlm ($N prompts x $TOKENS tokens," \
      "seeds $SEEDS, sweep '$sweep')"
    run "$HLM" eval "${v2common[@]}" --temp "$t" \
      --methods slm,llm,hlm,uhlm,iuhlm --prompts test --n "$N" --max-tokens "$TOKENS" \
      --seeds "$(csv $SEEDS)" --sweep "$sweep" --out "$(tdir "$t")" --quiet
    log "test split, T = $t: hlm with the full upload (standard HLM; llm for its fidelity)"
    run "$HLM" eval "${v2common[@]}" --temp "$t" \
      --methods llm,hlm --encoding full --prompts test --n "$N" --max-tokens "$TOKENS" \
      --seeds "$(csv $SEEDS)" --out "$(tdir "$t")-full" --quiet
  done
fi
if want win; then
  # The same runs under each channel preset x cloud cost profile. The tokens do not depend on
  # the channel or the cost model, so these runs are not scored: results_v2.py takes their
  # fidelity from the scored test-t$WIN_TEMP run of the same prompt and seed (and checks that
  # the output ids agree). hlm cannot re-cost a recorded run: pipelined drafting drafts past
  # in-flight uploads, and how much of that work is thrown away depends on when replies arrive,
  # i.e. on the channel, so the final trace does not determine another channel's cost.
  sweep=$(op_sweep)
  for cloud in $CLOUDS; do
    for ch in $CHANNELS; do
      log "win: channel $ch, cloud $cloud ($N_WIN prompts x $TOKENS tokens, T = $WIN_TEMP," \
        "seeds $WIN_SEEDS)"
      run "$HLM" eval "${v2common[@]}" --temp "$WIN_TEMP" \
        --methods slm,llm,hlm,uhlm,iuhlm --prompts test --n "$N_WIN" --max-tokens "$TOKENS" \
        --seeds "$(csv $WIN_SEEDS)" --sweep "$sweep" --channel "$ch" --cloud-cost "$cloud" \
        --out "$WORK/win/$ch--$cloud" --no-score --quiet
    done
  done
fi
if want gate; then
  # Where the importance gate fails: every draft of hlm at T = 0 on the test prompts with the
  # signals a gate would see, per estimator (tools/eval/gate_analysis.py; resumes).
  log "gate: per-token analysis of the importance gate ($N prompts x $TOKENS tokens, T = 0)"
  run python3 tools/eval/gate_analysis.py --hlm "$HLM" --slm "$SLM" --llm "$LLM" \
    --threads "$THREADS" ${PROFILE:+--profile "$PROFILE"} --prompts test --n "$N" \
    --max-tokens "$TOKENS" --work "$WORK/gate" --out "$WORK/gate_analysis.json" \
    --plot "$WORK/gate_analysis"
fi
if want page || want all; then
  log "plots and $OUT_MD"
  mkdir -p "$OUT_DIR"
  python3 tools/eval/results_v2.py --work "$WORK" --temps "$TEMPS" --win-temp "$WIN_TEMP" \
    --channels "$CHANNELS" --clouds "$CLOUDS" --out "$OUT_DIR/results_v2.json"
  python3 tools/eval/plots.py --work "$WORK" --out "$OUT_DIR"
  [[ -f "$WORK/importance.json" ]] && cp "$WORK/importance.json" "$OUT_DIR/importance.json"
  for f in gate_analysis.json gate_analysis.png gate_analysis.svg; do
    if [[ -f "$WORK/$f" ]]; then cp "$WORK/$f" "$OUT_DIR/$f"; fi
  done
  python3 tools/eval/make_results.py --work "$WORK" --hlm "$HLM" --slm "$SLM" --llm "$LLM" \
    --results-dir "$OUT_DIR" --out "$OUT_MD"
  for t in $TEMPS; do
    for d in "$(tdir "$t")" "$(tdir "$t")-full"; do
      [[ -f "$d/summary.json" ]] || continue
      cp "$d/summary.csv" "$OUT_DIR/$(basename "$d")_summary.csv"
      cp "$d/summary.json" "$OUT_DIR/$(basename "$d")_summary.json"
    done
  done
  [[ -f "$WORK/dev/summary.json" ]] && cp "$WORK/dev/summary.json" "$OUT_DIR/dev_summary.json"
  [[ -f "$WORK/calibration.json" ]] && cp "$WORK/calibration.json" "$OUT_DIR/calibration.json"
  [[ -f "$WORK/study_grid.json" ]] && cp "$WORK/study_grid.json" "$OUT_DIR/study_grid.json"
fi
log "done"
