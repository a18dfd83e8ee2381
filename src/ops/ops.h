// Numeric kernels for the engine: quantised-weight matmul and f32 vector helpers, with a scalar
// reference for every tensor type. SIMD bodies live in ops-inl.h and are picked at run time by
// Highway (AVX2/AVX-512 on x86, a portable fallback elsewhere).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "gguf/tensor_type.h"
#include "util/thread_pool.h"

namespace hlm::ops {

// ---- Scalar reference (the oracle the SIMD path is tested against) ----

// Decodes n elements (a multiple of the type's block size) of a row into f32.
void dequantize_row(TensorType t, const void* src, float* dst, int64_t n);

// Dequantise-then-dot, accumulated in double.
double dot_reference(TensorType t, const void* row, const float* x, int64_t n);

// Encodes n floats (a multiple of the block size) as one row of type t, round-to-nearest
// (ggml's reference quantisers for the 32-element types; for Q4_K and Q6_K a min/max fit per
// sub-block, decoded exactly as llama.cpp decodes it). Supported for F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q6_K; aborts for other types (check can_quantize first).
void quantize_row(TensorType t, const float* src, void* dst, int64_t n);
bool can_quantize(TensorType t);

// ---- Fast kernels ----

// Dot product of one weight row of type t with f32 activations x (length n). For quantised
// types x is first requantised to int8 blocks of 32 (scale amax/127), exactly as matmul does.
float dot(TensorType t, const void* row, const float* x, int64_t n);

// Produces token t's row of a matmul's input just before it is read, in the same parallel pass
// over tokens that requantises it: the norm or activation that makes the input then needs no
// loop (and no wait for the pool) of its own.
using RowFn = std::function<void(int64_t t)>;

// y[i*rows + r] = sum_k W[r][k] * x[i*cols + k] for i < n_tok, r < rows.
// W is `rows` rows of `cols` elements of type t, each row row_bytes(t, cols) long.
// Activations may be requantised internally (as llama.cpp does), so results match dot()
// rather than dot_reference() bit for bit. Parallel over rows on `pool`.
// prologue, if given, runs for every token first (see RowFn).
void matmul(TensorType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok,
            float* y, ThreadPool& pool, const RowFn* prologue = nullptr);

// One matrix of a matmul_shared call: `rows` rows of type t at w, results to y as matmul's.
// tiles: the same matrix as tile_weights() laid it out for this CPU, or null; the kernels read it
// where they can (the results are the same) and w otherwise.
struct MatmulOut {
  TensorType type;
  const void* w;
  int64_t rows;
  float* y;
  const void* tiles = nullptr;
};

// A weight matrix in 16-row tiles for the AVX512-VNNI kernels, made once when a model loads: per
// tile and 32-column block, the quants in the order the dot products consume them and the 16
// rows' scales side by side. A batched matmul then reads each tile as one straight stream with no
// per-call transposes, and one-token matmuls read no more bytes than the GGUF rows hold (Q4_0 and
// Q4_1 keep their size, Q8_0 grows 6%). Owns 64-byte-aligned memory; empty when there is none.
class TiledWeights {
 public:
  const void* data() const { return data_.get(); }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  friend TiledWeights tile_weights(TensorType, const void*, int64_t, int64_t);
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
};

// The tiled copy of a Q4_0, Q4_1 or Q8_0 matrix (cols a multiple of 32) when this CPU's kernels
// read tiles (AVX512-VNNI); empty otherwise, or for other types.
TiledWeights tile_weights(TensorType t, const void* w, int64_t rows, int64_t cols);
// matmul of one input x (n_tok x cols) by several matrices (a layer's q, k and v; gate and up):
// the activations are requantised once and all the matrices' rows are shared out in one
// parallel loop. Each y is what matmul would give.
void matmul_shared(std::span<const MatmulOut> outs, int64_t cols, const float* x, int64_t n_tok,
                   ThreadPool& pool, const RowFn* prologue = nullptr);

// Positions per block of keys in attend_f16's layout.
constexpr int64_t kKeyBlock = 16;

// Softmax attention of n_q queries q_k = q + k * n over rows >= 1 cached positions of one KV head,
// in f16 (IEEE half bits, as the KV cache holds them), as the query heads of a GQA group see them:
// probs[k * rows + j] = softmax_j(scale * dot(q_k, K_j)) and
// out[k * n, (k + 1) * n) = sum_j probs[k * rows + j] * V_j. The keys K are in blocks of kKeyBlock
// positions, dimension-major (store_key_f16 writes them); the values V_j = V + j * stride are rows.
// Each key block and value row is read once for all queries.
// The first n_masked rows (< rows) get probability 0: a sliding window that starts inside a key
// block passes K and V from the block's start and masks the positions before the window.
void attend_f16(const float* q, int64_t n_q, const uint16_t* K, const uint16_t* V, int64_t stride,
                int64_t rows, int64_t n, float scale, float* probs, float* out,
                int64_t n_masked = 0);

// Writes key k (n values) of position pos into K, a head's keys as attend_f16 reads them (element d
// at ((pos / kKeyBlock) * n + d) * kKeyBlock + pos % kKeyBlock), rounded to f16 (nearest even).
void store_key_f16(const float* k, int64_t n, int64_t pos, uint16_t* K);

// y[i] = x[i] as f16 (IEEE half bits), round to nearest even.
void convert_to_f16(const float* x, uint16_t* y, int64_t n);

// SwiGLU's elementwise step: gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x).
void silu_mul_f32(float* gate, const float* up, int64_t n);
// GeGLU's (Gemma's FFN): gate[i] = gelu(gate[i]) * up[i] with GELU's tanh form,
// gelu(x) = x / 2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).
void gelu_mul_f32(float* gate, const float* up, int64_t n);

// RMSNorm: out = x / sqrt(mean(x^2) + eps) * w over n entries (out may be x).
void rms_norm_f32(const float* x, const float* w, float* out, int64_t n, float eps);
// The residual add and the norm after it: x += d, then out = rms_norm(x) * w (out may be d).
void add_rms_norm_f32(float* x, const float* d, const float* w, float* out, int64_t n, float eps);

// out[i] = exp((z[i] - max z) * inv_t) / sum_j exp((z[j] - max z) * inv_t) for n >= 1 entries,
// at least one finite, summed in f64; entries equal to -inf get 0. out may be z itself.
void softmax_f32(const float* z, int64_t n, float inv_t, float* out);

// Name of the Highway target the kernels dispatch to on this CPU (e.g. "AVX2").
const char* dispatch_target_name();

// CPU extensions the kernels use beyond the Highway target, where the CPU has them: VNNI
// dot products (AVX-VNNI or AVX512-VNNI) for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K (the same
// integer sums in fewer instructions: bit-identical results for the 4-, 5- and 6-bit types, Q8_0
// within f32 rounding). On by default (HLM_CPU_EXTENSIONS=off in the environment starts with them
// off); tests and benchmarks switch them off to compare. Returns whether they are in use.
bool set_cpu_extensions(bool enabled);
// The kernels in use: the dispatch target plus the extensions, e.g. "AVX3+AVX-VNNI".
std::string kernels_name();

}  // namespace hlm::ops
