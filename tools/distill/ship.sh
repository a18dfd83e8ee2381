#!/usr/bin/env bash
# ship.sh: makes a trained student the shipped device model `slm`, with everything that depends
# on it, in the order the project needs:
#   delta    distill.py export of run NAME into models/slm-delta.gguf (+ -2, -3 ... parts, each
#            under 20 MB; stale parts removed), models/slm-delta.json (parts' sha256 and sizes,
#            the student's), the student rebuilt by the C++ builder as `hlm models fetch` does,
#            then the held-out scores of the old and new student on both splits
#   cost     its device cost profile, costs/device/slm-mM-TAG.json (hlm bench engine --save-cost,
#            the same settings and powers as slm-m8-epyc2's). It depends on the shape only: a
#            student of a depth that has one already skips this step (STEPS="delta profile page")
#   profile  the pair profile (tools/eval/make_profile.sh: calibration split, hlm calibrate --save)
#   page     docs/RESULTS.md regenerated (tools/eval/make_results.sh, about an hour on 2 cores)
# Then docs/models.md's model card is yours to update from the printed figures.
#
#   tools/distill/ship.sh NAME M                    # all steps
#   STEPS="delta cost" tools/distill/ship.sh m14out 14
#
# Environment: WORK [~/.cache/hlm/distill-v2] (where `distill.py train --name NAME` ran), PY [the
# distill venv's python, ~/.cache/hlm/distill-venv/bin/python], EVAL_PATH [~/.cache/hlm/eval-venv/
# bin: bert-score & co. for the page], TAG [epyc2: the machine in the cost profile's name],
# THREADS [2], RESULTS_WORK [~/.cache/hlm/results-student-mM: the page's work directory].
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $# -ne 2 ]]; then
  sed -n '2,22p' "$0" >&2
  exit 2
fi
NAME=$1
M=$2
WORK=${WORK:-$HOME/.cache/hlm/distill-v2}
PY=${PY:-$HOME/.cache/hlm/distill-venv/bin/python}
EVAL_PATH=${EVAL_PATH:-$HOME/.cache/hlm/eval-venv/bin}
TAG=${TAG:-epyc2}
THREADS=${THREADS:-2}
RESULTS_WORK=${RESULTS_WORK:-$HOME/.cache/hlm/results-student-m$M}
STEPS=${STEPS:-delta cost profile page}
HLM=build/hlm
STUDENT=SmolLM2-135M-Instruct.slm-m$M.Q4_1.gguf
want() { [[ " $STEPS " == *" $1 "* ]]; }
log() { echo "ship [$(date +%H:%M:%S)]: $*" >&2; }

if [[ ! -x $HLM ]]; then
  log "no $HLM: build first (./setup.sh build)"
  exit 1
fi

if want delta; then
  [[ -f "$WORK/student_$NAME.pt.done" ]] || log "warning: run $NAME has not finished its schedule"
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  log "export $NAME (m = $M) from $WORK"
  "$PY" tools/distill/distill.py --work "$WORK" --m "$M" --name "$NAME" \
    --delta "$out/slm-delta.gguf" export > /dev/null
  parts=("$out"/slm-delta.gguf)
  for f in "$out"/slm-delta-[0-9]*.gguf; do [[ -e $f ]] && parts+=("$f"); done
  # kept aside: a student of the same depth is rebuilt under the same file name
  old_student="$out/old-$(basename "$("$HLM" models path slm)")"
  cp "$("$HLM" models path slm)" "$old_student"
  rm -f models/slm-delta.gguf models/slm-delta-[0-9]*.gguf
  derive=()
  for f in "${parts[@]}"; do
    cp "$f" models/
    derive+=(--delta "models/$(basename "$f")")
  done
  log "rebuild the student from the teacher and ${#parts[@]} part(s)"
  "$HLM" models derive "${derive[@]}" --out "$out/$STUDENT" > /dev/null
  python3 - "$M" "$STUDENT" "$out/$STUDENT" "$NAME" "${parts[@]}" <<'EOF'
import hashlib, json, os, sys
m, student, built, name, parts = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
path = "models/slm-delta.json"
j = json.load(open(path))
j["description"] = (f"hlm device model: SmolLM2-135M-Instruct's first {m} layers, distilled "
                    f"(tools/distill, run {name}), Q4_1")
j["deltas"] = [{"file": os.path.basename(p), "sha256": sha(p), "size": os.path.getsize(p)}
               for p in parts]
j.update(student=student, sha256_student=sha(built), size_student=os.path.getsize(built), m=m)
j["builder"] = (f"hlm::build_student (src/models/derive.cc): teacher metadata with "
                f"llama.block_count={m}, token_embd Q8_0->Q4_1, the delta parts' tensors copied")
json.dump(j, open(path, "w"), indent=2)
open(path, "a").write("\n")
print(f"models/slm-delta.json: {student} {j['sha256_student'][:12]}… {j['size_student']} B, "
      f"{len(parts)} part(s)")
EOF
  log "rebuild hlm (the registry is generated from models/slm-delta.json) and fetch slm"
  cmake --build build --target hlm > /dev/null
  "$HLM" models fetch slm
  for split in dev test; do
    for s in "$old_student" "$("$HLM" models path slm)"; do
      "$PY" tools/distill/distill.py --work "$WORK" --student "$s" --heldout "$split" --no-bench \
        eval 2> /dev/null | python3 -c 'import json, sys
j = json.load(sys.stdin)
h = j["metrics"]["heldout"]
name = j["student"].split("/")[-1]
print("%4s %s: acceptance %.3f, top-1 %.3f" % (sys.argv[1], name, h["accept"], h["top1"]))' \
        "$split"
    done
  done
fi

if want cost; then
  log "device cost profile slm-m$M-$TAG"
  "$HLM" bench engine --model slm --threads "$THREADS" --ctx 512 --reps 40 \
    --save-cost "costs/device/slm-m$M-$TAG.json" --cost-role device > /dev/null
fi

if want profile; then
  log "pair profile (calibration split)"
  PATH="$EVAL_PATH:$PATH" STEPS=calibrate WORK="$RESULTS_WORK/profile" tools/eval/make_profile.sh
fi

if want page; then
  log "results page (work directory $RESULTS_WORK)"
  PATH="$EVAL_PATH:$PATH" STEPS=all WORK="$RESULTS_WORK" tools/eval/make_results.sh
fi
log "done: update docs/models.md's model card from the figures above, and commit models/,
costs/device/, profiles/ and docs/"
