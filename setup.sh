#!/usr/bin/env bash
# setup.sh: from a fresh Debian 12 machine to a working hlm: installs the Debian build
# dependencies (when missing), builds a Release tree in build/, and fetches the default model.
#
#   ./setup.sh                 all three steps
#   ./setup.sh deps|build|fetch  one step
#   ./setup.sh vocab             llama.cpp's test vocabularies for the tokenizer tests (not in
#                                "all"; CI runs it): tools/reference/fetch_vocabs.sh
#   ./setup.sh --print-packages  the Debian packages needed, one per line
#
# Environment: BUILD_DIR (build), BUILD_TYPE (Release), JOBS (nproc), CMAKE_ARGS (extra -D...),
# HLM_MODELS_DIR (model cache, default ~/.cache/hlm/models), HLM_VOCAB_DIR (test vocabularies,
# default ~/.cache/hlm/llama-vocab).
set -euo pipefail
cd "$(dirname "$0")"

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-$(nproc)}

packages() {
  printf '%s\n' ninja-build cmake g++ pkg-config ca-certificates \
    libhwy-dev libgtest-dev googletest libbenchmark-dev libcli11-dev nlohmann-json3-dev \
    libspdlog-dev libfmt-dev libgrpc++-dev libprotobuf-dev protobuf-compiler \
    protobuf-compiler-grpc libmicrohttpd-dev libssl-dev libcurl4-openssl-dev curl python3 python3-pip python3-venv
  # Packages other parts of the tree need, one per line (# comments allowed).
  if [[ -f .ci/packages.txt ]]; then
    sed -e 's/#.*//' -e 's/[[:space:]]//g' .ci/packages.txt | grep -v '^$' || true
  fi
}

step_deps() {
  local missing=()
  local p
  for p in $(packages | sort -u); do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "setup: Debian packages already installed"
    return
  fi
  echo "setup: installing ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends \
    "${missing[@]}"
}

step_build() {
  # shellcheck disable=SC2086 # CMAKE_ARGS is a list of words by design
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" ${CMAKE_ARGS:-}
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

step_fetch() {
  "$BUILD_DIR/hlm" models fetch
}

step_vocab() {
  tools/reference/fetch_vocabs.sh
}

case "${1:-all}" in
  all) step_deps; step_build; step_fetch ;;
  deps) step_deps ;;
  build) step_build ;;
  fetch) step_fetch ;;
  vocab) step_vocab ;;
  --print-packages) packages | sort -u ;;
  *) echo "usage: $0 [deps|build|fetch|vocab|--print-packages]" >&2; exit 2 ;;
esac
