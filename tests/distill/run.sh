#!/usr/bin/env bash
# tests/distill/run.sh HLM_BINARY: the distillation text's pack/unpack round trip
# (tools/distill/pack_test.py) on the real teacher, in the numpy test virtualenv of tests/eval.
# Skipped (exit 77) when the teacher is not cached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hlm=$(realpath "${1:?usage: run.sh HLM_BINARY}")
if ! teacher=$("$hlm" models path llm 2>/dev/null) || [[ ! -f $teacher ]]; then
  echo "llm is not cached (hlm models fetch llm): skipped"
  exit 77
fi
venv=${HLM_TEST_VENV_EVAL:-${XDG_CACHE_HOME:-$HOME/.cache}/hlm/test-venv-eval}
source "$here/../venv.sh"
hlm_venv "$venv" "$here/../eval/requirements.txt"
"$venv/bin/python" "$here/../../tools/distill/pack_test.py" "$hlm" "$teacher"
