#!/usr/bin/env bash
# fetch_vocabs.sh: downloads the sdist of the pinned llama-cpp-python (tools/reference/
# requirements.txt) with pip and extracts llama.cpp's tokenizer test vocabularies from it:
# vendor/llama.cpp/models/ggml-vocab-*.gguf with their .inp/.out cases (read by
# src/tokenizer/tokenizer_vocab_test.cc). Nothing else is kept; the sdist is deleted.
#
#   tools/reference/fetch_vocabs.sh [DIR]
#
# DIR: $HLM_VOCAB_DIR, else ${XDG_CACHE_HOME:-~/.cache}/hlm/llama-vocab. Idempotent: when DIR
# holds the stamp of this version (llama-cpp-python-<version>.done), it does nothing. Needs
# python3 with pip (pip only downloads; it installs nothing). pip's settings (PIP_INDEX_URL,
# proxies) apply; HLM_PYTHON selects another interpreter.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python=${HLM_PYTHON:-python3}
dir=${1:-${HLM_VOCAB_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hlm/llama-vocab}}

version=$(sed -n 's/^llama-cpp-python==\([^[:space:]#]*\).*/\1/p' "$here/requirements.txt")
if [[ -z "$version" ]]; then
  echo "fetch_vocabs: no 'llama-cpp-python==VERSION' line in $here/requirements.txt" >&2
  exit 1
fi
stamp="$dir/llama-cpp-python-$version.done"
if [[ -f "$stamp" ]]; then
  echo "fetch_vocabs: $dir already holds the vocabularies of llama-cpp-python $version"
  exit 0
fi

if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "fetch_vocabs: '$python -m pip' is not available (on Debian: apt-get install python3-pip)" >&2
  exit 1
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "fetch_vocabs: downloading the sdist of llama-cpp-python==$version with pip"
pip_args=(download --no-deps --no-binary :all: --dest "$tmp")
[[ -n "${CI:-}" ]] && pip_args+=(--progress-bar off)
if ! "$python" -m pip "${pip_args[@]}" "llama-cpp-python==$version"; then
  echo "fetch_vocabs: \`pip download llama-cpp-python==$version\` failed: check that PyPI can" \
    "be reached (network, proxy, PIP_INDEX_URL)" >&2
  exit 1
fi

# Extract only the vocabularies and their cases into $tmp/out, then move them into place.
"$python" - "$tmp" "$version" <<'EOF'
import os, sys, tarfile
tmp, version = sys.argv[1], sys.argv[2]
sdists = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
if len(sdists) != 1:
    sys.exit(f"fetch_vocabs: expected one .tar.gz sdist in {tmp}, found {sdists}")
path = os.path.join(tmp, sdists[0])
prefix = "vendor/llama.cpp/models/ggml-vocab-"
out = os.path.join(tmp, "out")
os.makedirs(out)
n = 0
with tarfile.open(path) as tar:
    for m in tar:
        parts = m.name.split("/", 1)
        if len(parts) != 2 or not parts[1].startswith(prefix) or not m.isfile():
            continue
        name = os.path.basename(m.name)
        if not (name.endswith(".gguf") or name.endswith(".gguf.inp") or name.endswith(".gguf.out")):
            continue
        with tar.extractfile(m) as src, open(os.path.join(out, name), "wb") as dst:
            dst.write(src.read())
        n += 1
if n == 0:
    sys.exit(f"fetch_vocabs: {path} has no {prefix}* files")
print(f"fetch_vocabs: extracted {n} files")
EOF
mv -f "$tmp"/out/* "$dir"/
echo "llama-cpp-python==$version" >"$stamp"
echo "fetch_vocabs: vocabularies in $dir"
