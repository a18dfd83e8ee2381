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

#if HWY_ONCE
namespace hlm::ops {

HWY_EXPORT(QuantizeAct);
HWY_EXPORT(MatmulRowsQ);
HWY_EXPORT(MatmulRowsF);
HWY_EXPORT(DotRowsF32);
HWY_EXPORT(AxpyRowsF32);
HWY_EXPORT(TargetName);

namespace {

bool is_float(TensorType t) {
  return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16;
}

// Per-thread scratch for requantised activations; grows, never shrinks.
struct ActScratch {
  std::vector<int8_t> q;
  std::vector<float> d, s;
  std::vector<ActQ8> acts;

  void quantize(const float* x, int64_t cols, int64_t n_tok) {
    const size_t n = static_cast<size_t>(cols * n_tok), nb = n / 32;
    if (q.size() < n) q.resize(n);
    if (d.size() < nb) {
      d.resize(nb);
      s.resize(nb);
    }
    acts.resize(static_cast<size_t>(n_tok));
    for (int64_t t = 0; t < n_tok; ++t) {
      const size_t off = static_cast<size_t>(t * cols);
      HWY_DYNAMIC_DISPATCH(QuantizeAct)
      (x + off, cols, q.data() + off, d.data() + off / 32, s.data() + off / 32);
      acts[static_cast<size_t>(t)] = {q.data() + off, d.data() + off / 32, s.data() + off / 32};
    }
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
void rows_q(TensorType t, const void* w, int64_t rows, int64_t cols, size_t r0, size_t r1,
            const ActQ8* acts, int64_t n_tok, float* y) {
  if (use_vnni(t)) {
    vnni::matmul_rows(t, w, row_bytes(t, cols), rows, cols, r0, r1, acts, n_tok, y);
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
  rows_q(t, row, 1, n, 0, 1, s.acts.data(), 1, &y);
  return y;
}

void matmul(TensorType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok,
            float* y, ThreadPool& pool) {
  check_supported(t);
  if (rows <= 0 || n_tok <= 0) return;
  // Enough rows per chunk that a chunk is worth a wake-up; the pool splits evenly anyway.
  const size_t grain = 16;
  if (is_float(t)) {
    pool.parallel_for(static_cast<size_t>(rows), grain, [&](size_t r0, size_t r1, int) {
      HWY_DYNAMIC_DISPATCH(MatmulRowsF)(t, w, rows, cols, r0, r1, x, n_tok, y);
    });
    return;
  }
  ActScratch& s = scratch();
  s.quantize(x, cols, n_tok);
  const ActQ8* acts = s.acts.data();
  pool.parallel_for(static_cast<size_t>(rows), grain, [&](size_t r0, size_t r1, int) {
    rows_q(t, w, rows, cols, r0, r1, acts, n_tok, y);
  });
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

void dot_rows_f32(const float* a, const float* b, int64_t stride, int64_t rows, int64_t n,
                  float* out) {
  HWY_DYNAMIC_DISPATCH(DotRowsF32)(a, b, stride, rows, n, out);
}

void axpy_rows_f32(const float* alpha, const float* x, int64_t stride, int64_t rows, float* y,
                   int64_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyRowsF32)(alpha, x, stride, rows, y, n);
}

}  // namespace hlm::ops
#endif  // HWY_ONCE
