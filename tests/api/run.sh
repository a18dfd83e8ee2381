#!/usr/bin/env bash
# tests/api/run.sh HLM_BINARY: the `hlm api` tests with real clients (the official openai Python
# package and curl). Creates, or reuses while tests/api/requirements.txt is unchanged, a
# virtualenv with the pinned client in $HLM_TEST_VENV (default ~/.cache/hlm/test-venv-api), then
# runs test_openai_api.py against the default models.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export HLM_BINARY=$(realpath "${1:?usage: run.sh HLM_BINARY}")
venv=${HLM_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hlm/test-venv-api}
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "run.sh: creating the test virtualenv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi
cd "$here"
exec "$venv/bin/python" -m unittest -v test_openai_api
