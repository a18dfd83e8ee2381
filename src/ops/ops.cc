// Entry points of the ops kernels: compiles ops-inl.h once per Highway target and dispatches
// to the best one the CPU supports. Activation requantisation and threading live here.
#include "ops/ops.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string_view>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "ops/ops.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "ops/ops-inl.h"
#include "ops/ops_vnni.h"
#include "ops/quant_formats.h"

#if HWY_ONCE
namespace hlm::ops {

HWY_EXPORT(QuantizeAct);
HWY_EXPORT(MatmulRowsQ);
HWY_EXPORT(MatmulRowsF);
HWY_EXPORT(AttendF16);
HWY_EXPORT(ConvertToF16);
HWY_EXPORT(GeluMulF32);
HWY_EXPORT(SiluMulF32);
HWY_EXPORT(SoftmaxF32);
HWY_EXPORT(RmsNormF32);
HWY_EXPORT(TargetName);

namespace {

bool is_float(TensorType t) {
  return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16;
}

// Per-thread scratch for requantised activations; grows, never shrinks.
struct ActScratch {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<int32_t> h;
  std::vector<ActQ8> acts;
  ActQ8BlockBuffer blocks;  // the same block-major, when the VNNI prefill tiles will read them

  // Tokens in parallel on `pool` when there are enough of them to be worth a wake-up; with
  // with_blocks also block-major, once for every row range of the matmul.
  void quantize(const float* x, int64_t cols, int64_t n_tok, ThreadPool* pool = nullptr,
                bool with_blocks = false, const RowFn* prologue = nullptr) {
    const size_t n = static_cast<size_t>(cols * n_tok), nb = n / 32;
    if (q.size() < n) q.resize(n);
    if (d.size() < nb) {
      d.resize(nb);
      s.resize(nb);
      h.resize(2 * nb);
    }
    acts.resize(static_cast<size_t>(n_tok));
    if (with_blocks) blocks.reserve(n_tok, cols / 32);
    const auto one = [&](size_t t) {
      if (prologue != nullptr) (*prologue)(int64_t(t));
      const size_t off = t * static_cast<size_t>(cols);
      HWY_DYNAMIC_DISPATCH(QuantizeAct)
      (x + off, cols, q.data() + off, d.data() + off / 32, s.data() + off / 32,
       h.data() + off / 16);
      acts[t] = {q.data() + off, d.data() + off / 32, s.data() + off / 32, h.data() + off / 16};
      if (with_blocks) blocks.store(int64_t(t), acts[t]);
    };
    if (pool == nullptr || n_tok < 8) {
      for (size_t t = 0; t < static_cast<size_t>(n_tok); ++t) one(t);
      return;
    }
    pool->parallel_for(static_cast<size_t>(n_tok), 1, [&](size_t t0, size_t t1, int) {
      for (size_t t = t0; t < t1; ++t) one(t);
    });
  }
};

ActScratch& scratch() {
  thread_local ActScratch s;
  return s;
}

void check_supported(TensorType t) {
  switch (t) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q8_0:
    case TensorType::Q4_0:
    case TensorType::Q4_1:
    case TensorType::Q5_0:
    case TensorType::Q5_1:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      return;
    default:
      std::abort();  // the loader rejects other types before they reach the kernels
  }
}

// HLM_CPU_EXTENSIONS=off starts with them off (to compare whole runs with and without).
std::atomic<bool> g_extensions{[] {
  const char* v = std::getenv("HLM_CPU_EXTENSIONS");
  return v == nullptr || std::string_view(v) != "off";
}()};

bool use_vnni(TensorType t) {
  return vnni::handles(t) && vnni::supported() && g_extensions.load(std::memory_order_relaxed);
}

// Rows [r0, r1) of a quantised matmul on the best kernel for t on this CPU.
void rows_q(TensorType t, const void* w, const void* tiles, int64_t rows, int64_t cols, size_t r0,
            size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok, float* y) {
  if (use_vnni(t)) {
    if (tiles != nullptr) {
      vnni::matmul_tiles(t, static_cast<const uint8_t*>(tiles), rows, cols, r0, r1, acts, blocks,
                         n_tok, y);
    } else {
      vnni::matmul_rows(t, w, row_bytes(t, cols), rows, cols, r0, r1, acts, blocks, n_tok, y);
    }
  } else {
    HWY_DYNAMIC_DISPATCH(MatmulRowsQ)(t, w, rows, cols, r0, r1, acts, n_tok, y);
  }
}

}  // namespace

float dot(TensorType t, const void* row, const float* x, int64_t n) {
  check_supported(t);
  float y = 0.0f;
  if (is_float(t)) {
    HWY_DYNAMIC_DISPATCH(MatmulRowsF)(t, row, 1, n, 0, 1, x, 1, &y);
    return y;
  }
  ActScratch& s = scratch();
  s.quantize(x, n, 1);
  rows_q(t, row, nullptr, 1, n, 0, 1, s.acts.data(), nullptr, 1, &y);
  return y;
}

void matmul(TensorType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok,
            float* y, ThreadPool& pool, const RowFn* prologue) {
  const MatmulOut out{t, w, rows, y};
  matmul_shared(std::span<const MatmulOut>(&out, 1), cols, x, n_tok, pool, prologue);
}

void matmul_shared(std::span<const MatmulOut> outs, int64_t cols, const float* x, int64_t n_tok,
                   ThreadPool& pool, const RowFn* prologue) {
  if (n_tok <= 0) return;
  // The matrices' rows form one index space, shared out in one parallel loop.
  thread_local std::vector<size_t> first;
  first.assign(1, 0);
  bool any_quantised = false, with_blocks = false;
  for (const MatmulOut& o : outs) {
    check_supported(o.type);
    any_quantised |= !is_float(o.type);
    with_blocks |= use_vnni(o.type) && vnni::wants_blocks(o.type, n_tok);
    first.push_back(first.back() + static_cast<size_t>(std::max<int64_t>(o.rows, 0)));
  }
  if (first.back() == 0) return;
  const ActQ8* acts = nullptr;
  ActQ8Blocks blocks_view;
  const ActQ8Blocks* blocks = nullptr;
  if (any_quantised) {
    ActScratch& s = scratch();
    s.quantize(x, cols, n_tok, &pool, with_blocks, prologue);
    acts = s.acts.data();
    if (with_blocks) {
      blocks_view = s.blocks.view();
      blocks = &blocks_view;
    }
  } else if (prologue != nullptr) {  // float weights read x as it is
    pool.parallel_for(size_t(n_tok), n_tok < 8 ? size_t(n_tok) : 1, [&](size_t t0, size_t t1, int) {
      for (size_t t = t0; t < t1; ++t) (*prologue)(int64_t(t));
    });
  }
  const size_t* starts = first.data();
  // Enough rows per chunk that a chunk is worth a wake-up; the pool splits evenly anyway.
  const size_t grain = 16;
  pool.parallel_for(first.back(), grain, [&](size_t g0, size_t g1, int) {
    for (size_t m = 0; m < outs.size(); ++m) {
      const size_t lo = std::max(g0, starts[m]), hi = std::min(g1, starts[m + 1]);
      if (lo >= hi) continue;
      const MatmulOut& o = outs[m];
      const size_t r0 = lo - starts[m], r1 = hi - starts[m];
      if (is_float(o.type)) {
        HWY_DYNAMIC_DISPATCH(MatmulRowsF)(o.type, o.w, o.rows, cols, r0, r1, x, n_tok, o.y);
      } else {
        rows_q(o.type, o.w, o.tiles, o.rows, cols, r0, r1, acts, blocks, n_tok, o.y);
      }
    }
  });
}

TiledWeights tile_weights(TensorType t, const void* w, int64_t rows, int64_t cols) {
  TiledWeights out;
  const size_t bb = vnni::tile_block_bytes(t);
  if (bb == 0 || rows <= 0 || cols <= 0 || cols % 32 != 0) return out;
  const size_t bytes = bb * size_t((rows + 15) / 16) * size_t(cols / 32);
  out.data_.reset(std::aligned_alloc(64, bytes));  // a multiple of 64: bb is
  if (out) {
    vnni::pack_tiles(t, static_cast<const uint8_t*>(w), row_bytes(t, cols), rows, cols,
                     static_cast<uint8_t*>(out.data_.get()));
  }
  return out;
}

const char* dispatch_target_name() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }

bool set_cpu_extensions(bool enabled) {
  g_extensions.store(enabled);
  return enabled && vnni::supported();
}

std::string kernels_name() {
  std::string name = dispatch_target_name();
  if (vnni::supported() && g_extensions.load()) name += std::string("+") + vnni::name();
  return name;
}

void attend_f16(const float* q, int64_t n_q, const uint16_t* K, const uint16_t* V, int64_t stride,
                int64_t rows, int64_t n, float scale, float* probs, float* out, int64_t n_masked) {
  HWY_DYNAMIC_DISPATCH(AttendF16)(q, n_q, K, V, stride, rows, n, scale, probs, out, n_masked);
}

void store_key_f16(const float* k, int64_t n, int64_t pos, uint16_t* K) {
  // Converted as a row (vectorised), then spread to its lane of the block.
  thread_local std::vector<uint16_t> row;
  row.resize(static_cast<size_t>(n));
  convert_to_f16(k, row.data(), n);
  uint16_t* at = K + (pos / kKeyBlock) * n * kKeyBlock + pos % kKeyBlock;
  for (int64_t d = 0; d < n; ++d) at[d * kKeyBlock] = row[static_cast<size_t>(d)];
}

void convert_to_f16(const float* x, uint16_t* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ConvertToF16)(x, y, n);
}

void silu_mul_f32(float* gate, const float* up, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SiluMulF32)(gate, up, n);
}

void gelu_mul_f32(float* gate, const float* up, int64_t n) {
  HWY_DYNAMIC_DISPATCH(GeluMulF32)(gate, up, n);
}

void rms_norm_f32(const float* x, const float* w, float* out, int64_t n, float eps) {
  HWY_DYNAMIC_DISPATCH(RmsNormF32)(const_cast<float*>(x), nullptr, w, out, n, eps);
}

void add_rms_norm_f32(float* x, const float* d, const float* w, float* out, int64_t n, float eps) {
  HWY_DYNAMIC_DISPATCH(RmsNormF32)(x, d, w, out, n, eps);
}

void softmax_f32(const float* z, int64_t n, float inv_t, float* out) {
  HWY_DYNAMIC_DISPATCH(SoftmaxF32)(z, n, inv_t, out);
}

}  // namespace hlm::ops
#endif  // HWY_ONCE
