// Compiles the interleaved kernels a second time with vpdpbusd in place of maddubs, under a
// target pragma (as Highway does for its own targets), so only the code in that region may use
// AVX-VNNI; supported() gates every call on what the CPU reports.
#include "ops/ops_vnni.h"

#include <cstdlib>
#include <cstring>

#include "ops/quant_formats.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HLM_HAVE_VNNI_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define HLM_HAVE_VNNI_KERNELS 0
#endif

namespace hlm::ops::vnni {

#if HLM_HAVE_VNNI_KERNELS

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif

namespace {
#define HLM_IL_VNNI 1
#define HLM_IL_INLINE inline __attribute__((always_inline))
#include "ops/interleaved-inl.h"
#undef HLM_IL_VNNI
#undef HLM_IL_INLINE
}  // namespace

void matmul_rows(TensorType t, const void* w, size_t row_bytes, int64_t rows, int64_t cols,
                 size_t r0, size_t r1, const ActQ8* acts, int64_t n_tok, float* y) {
  const auto* p = static_cast<const uint8_t*>(w);
  switch (t) {
    case TensorType::Q8_0:
      return RowsInterleaved<IlQ8_0>(p, row_bytes, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q4_0:
      return RowsInterleaved<IlQ4_0>(p, row_bytes, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q4_1:
      return RowsInterleaved<IlQ4_1>(p, row_bytes, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q5_0:
      return RowsInterleaved<IlQ5_0>(p, row_bytes, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q5_1:
      return RowsInterleaved<IlQ5_1>(p, row_bytes, cols, r0, r1, acts, n_tok, y, rows);
    default:
      std::abort();  // callers check handles() first
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

bool supported() {
  static const bool yes = [] {
    // avx2 also means the OS saves the ymm state; F16C is CPUID.1:ECX[29], AVX-VNNI is
    // CPUID.(7,1):EAX[4] (read directly: older compilers do not know the feature names).
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29))) return false;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    return (a & (1u << 4)) != 0;
  }();
  return yes;
}

#else

void matmul_rows(TensorType, const void*, size_t, int64_t, int64_t, size_t, size_t, const ActQ8*,
                 int64_t, float*) {
  std::abort();  // supported() is false
}

bool supported() { return false; }

#endif

bool handles(TensorType t) {
  return t == TensorType::Q8_0 || t == TensorType::Q4_0 || t == TensorType::Q4_1 ||
         t == TensorType::Q5_0 || t == TensorType::Q5_1;
}

}  // namespace hlm::ops::vnni
