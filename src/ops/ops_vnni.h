// The 8-, 4- and 5-bit matmul kernels with VNNI dot products (vpdpbusd), for x86 CPUs that have
// AVX-VNNI or AVX512-VNNI. Highway 1.0.3 has no target for either, so ops.cc picks these by hand.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gguf/tensor_type.h"
#include "ops/act_q8.h"

namespace hlm::ops::vnni {

// Which form of vpdpbusd this build and CPU run: the EVEX one (AVX512-VNNI, with 512-bit
// prefill tiles) where the CPU has it, else the VEX one (AVX-VNNI), else none.
enum class Kind { kNone, kAvxVnni, kAvx512Vnni };
Kind kind();

// True when kind() is not kNone.
bool supported();

// The extension in use, e.g. "AVX512-VNNI"; empty when none.
const char* name();

// True for the tensor types these kernels cover (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K).
bool handles(TensorType t);

// Rows [r0, r1) of y[i*rows + r] = sum_k W[r][k] * a_i[k], as MatmulRowsQ does; results are
// bit-identical to it except for Q8_0 (same integer sums, other f32 rounding). Only for types
// handles() accepts, and only when supported(). blocks: the same activations block-major, which
// the AVX512-VNNI prefill tiles read; required when wants_blocks(t, n_tok), else ignored.
void matmul_rows(TensorType t, const void* w, size_t row_bytes, int64_t rows, int64_t cols,
                 size_t r0, size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok,
                 float* y);

// Whether matmul_rows or matmul_tiles of type t over n_tok tokens reads the block-major
// activations.
bool wants_blocks(TensorType t, int64_t n_tok);

// ---- Tiled weights (ops.h's TiledWeights) ----

// Bytes per 16-row tile and 32-column block of type t in the tiled layout, or 0 when this CPU
// reads no tiles (only the AVX512-VNNI kernels do) or t has no tiled layout (Q8_0, Q4_0, Q4_1).
size_t tile_block_bytes(TensorType t);
// Lays out `rows` GGUF rows of type t (row_bytes apart, cols columns) as tiles in out, which holds
// tile_block_bytes(t) * ceil(rows / 16) * cols / 32 bytes, 64-byte aligned. Rows past the end of
// the last tile are zero.
void pack_tiles(TensorType t, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols,
                uint8_t* out);
// Rows [r0, r1) of the matmul from tiled weights, bit for bit what matmul_rows gives.
void matmul_tiles(TensorType t, const uint8_t* tiles, int64_t rows, int64_t cols, size_t r0,
                  size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok, float* y);

}  // namespace hlm::ops::vnni
