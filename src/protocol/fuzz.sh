#!/bin/sh
# Builds (clang, -DHLM_FUZZ=ON) and runs the protocol decoding fuzzer for a bounded time.
#   src/protocol/fuzz.sh [BUILD_DIR] [SECONDS]     (defaults: build-fuzz 60)
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build-fuzz}
secs=${2:-60}
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DHLM_FUZZ=ON -DHLM_BUILD_TESTS=OFF -DHLM_BUILD_BENCH=OFF >/dev/null
ninja -C "$build" -j"${JOBS:-2}" hlm_protocol_fuzz
corpus="$build/fuzz_corpus"
mkdir -p "$corpus"
"$build/src/protocol/hlm_protocol_fuzz" -max_total_time="$secs" -max_len=65536 -timeout=10 \
  -print_final_stats=1 "$corpus"
