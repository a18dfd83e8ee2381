#!/usr/bin/env bash
# tests/api/run.sh HLM_BINARY: the `hlm api` tests with real clients (the official openai Python
# package and curl). Creates, or reuses while tests/api/requirements.txt is unchanged, a
# virtualenv with the pinned client in $HLM_TEST_VENV (default ~/.cache/hlm/test-venv-api), then
# runs test_openai_api.py against the default models.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HLM_BINARY=$(realpath "${1:?usage: run.sh HLM_BINARY}")
venv=${HLM_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hlm/test-venv-api}
source "$here/../venv.sh"
hlm_venv "$venv" "$here/requirements.txt"
cd "$here"
exec "$venv/bin/python" -m unittest -v test_openai_api
