#!/usr/bin/env bash
# tools/vllm/ci.sh: CI's vLLM stage, runnable on its own: sets up the vLLM CPU venv
# (tools/vllm/setup.sh), converts the registry's LLM to a Hugging Face folder
# (tools/vllm/convert_gguf.py), starts vLLM on 127.0.0.1 (tools/vllm/serve.sh), waits for /health,
# runs the ctest label `vllm` against it and stops the server, also on failure. Prints the time of
# each step. Needs the Release build and the fetched default model (./setup.sh build fetch).
#
#   tools/vllm/ci.sh
#
# Environment: BUILD_DIR (build), HLM_VLLM_PORT (8100), HLM_VLLM_WAIT (seconds to wait for
# /health, 180), and those of setup.sh and serve.sh (HLM_VLLM_VENV, ...). The tests get
# HLM_VLLM_URL=http://127.0.0.1:PORT and HLM_VLLM_SERVE (this directory's serve.sh, with which
# they may stop, kill, stall and restart that server or start replicas on other ports).
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD_DIR=${BUILD_DIR:-build}
port=${HLM_VLLM_PORT:-8100}
venv=${HLM_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hlm/vllm-venv}
serve="$PWD/tools/vllm/serve.sh"
t0=$SECONDS
step_t0=
step() {
  [[ -z "$step_t0" ]] || echo "vllm-ci: ...took $((SECONDS - step_t0))s"
  step_t0=$SECONDS
  echo "vllm-ci: [$(date +%T)] $*"
}

if [[ ! -x "$BUILD_DIR/hlm" ]]; then
  echo "vllm-ci: no $BUILD_DIR/hlm: run ./setup.sh build" >&2
  exit 1
fi

step "setup the venv"
tools/vllm/setup.sh

step "convert the LLM"
gguf=$("$BUILD_DIR/hlm" models path llm)
"$venv/bin/python" tools/vllm/convert_gguf.py --gguf "$gguf"

step "start vLLM on port $port"
"$serve" start "$port"
# Only a server this stage started is stopped on exit (start refuses a busy port).
trap '"$serve" stop "$port"' EXIT
"$serve" wait "$port" "${HLM_VLLM_WAIT:-180}"

step "ctest -L vllm"
ctest_args=(--test-dir "$BUILD_DIR" --output-on-failure -L vllm)
if [[ -d src/vllm ]]; then
  # The backend is in the tree, so its tests must be too: finding none is a failure.
  ctest_args+=(--no-tests=error)
elif ! ctest --test-dir "$BUILD_DIR" -N -L vllm | grep -q 'Total Tests: [1-9]'; then
  echo "vllm-ci: no tests labelled vllm yet (src/vllm is not in the tree): the server was" \
    "started and answered /health, nothing more to run"
fi
HLM_VLLM_URL="http://127.0.0.1:$port" HLM_VLLM_SERVE="$serve" ctest "${ctest_args[@]}"

step "stop vLLM"
trap - EXIT
"$serve" stop "$port"
step "done in $((SECONDS - t0))s"
