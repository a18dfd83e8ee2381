# tests/venv.sh: sourced by the tests that run Python. `hlm_venv DIR REQUIREMENTS` creates, or
# reuses while REQUIREMENTS is unchanged, a virtualenv in DIR with the pinned packages. Tests that
# share DIR may run at once (ctest -j): a lock beside it lets one build it while the others wait.
hlm_venv() {
  local venv=$1 requirements=$2
  local stamp="$venv/.requirements.sha256" want lock
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  mkdir -p "$(dirname "$venv")"
  exec {lock}>"$venv.lock"
  flock "$lock"
  if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "creating the test virtualenv $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
  fi
  exec {lock}>&-
}
