#!/usr/bin/env bash
# tests/eval/run.sh: checks the results page's statistics (tools/eval/results_v2_test.py: bootstrap
# intervals, the goals and the when-does-hybrid-win verdicts on a made-up work directory;
# tools/eval/gate_analysis_test.py: the per-token gate analysis on made-up traces) in a
# virtualenv with pinned numpy ($HLM_TEST_VENV_EVAL, default ~/.cache/hlm/test-venv-eval).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${HLM_TEST_VENV_EVAL:-${XDG_CACHE_HOME:-$HOME/.cache}/hlm/test-venv-eval}
source "$here/../venv.sh"
hlm_venv "$venv" "$here/requirements.txt"
"$venv/bin/python" "$here/../../tools/eval/results_v2_test.py"
"$venv/bin/python" "$here/../../tools/eval/gate_analysis_test.py"
