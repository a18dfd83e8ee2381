// Compiles the interleaved kernels twice more with vpdpbusd in place of maddubs, each under a
// target pragma (as Highway does for its own targets) so only the code in that region may use
// the extension: once in AVX-VNNI's VEX form (Intel Alder Lake and later, AMD Zen 5) and once in
// AVX512-VNNI's EVEX form (Intel Ice Lake and later Xeons, AMD Zen 4), which also runs prefill
// on 512-bit vectors. Both compute the same integer sums, so they give the same results; the
// AVX-512 form is preferred where both exist. kind() gates every call on what the CPU reports.
#include "ops/ops_vnni.h"

#include <algorithm>
#include <cassert>
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

#define HLM_IL_VNNI 1
#define HLM_IL_INLINE inline __attribute__((always_inline))

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avxvnni")
#endif
namespace vex {
#define HLM_IL_DPBUSD _mm256_dpbusd_avx_epi32
#define HLM_IL_ZMM 0
#include "ops/interleaved-inl.h"
#undef HLM_IL_DPBUSD
#undef HLM_IL_ZMM
}  // namespace vex
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(                                                      \
    __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif
namespace evex {
#define HLM_IL_DPBUSD _mm256_dpbusd_epi32
#define HLM_IL_ZMM 1
#include "ops/interleaved-inl.h"
#undef HLM_IL_DPBUSD
#undef HLM_IL_ZMM
}  // namespace evex
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#undef HLM_IL_VNNI
#undef HLM_IL_INLINE

namespace {

Kind detect() {
  // avx2 also means the OS saves the ymm state, and libgcc's avx512 checks include the OS
  // saving the AVX-512 state; F16C is CPUID.1:ECX[29], AVX-VNNI is CPUID.(7,1):EAX[4] (read
  // directly: older compilers do not know the feature names).
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return Kind::kNone;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29))) return Kind::kNone;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
    return Kind::kAvx512Vnni;
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)) != 0) return Kind::kAvxVnni;
  return Kind::kNone;
}

}  // namespace

Kind kind() {
  static const Kind k = detect();
  return k;
}

void matmul_rows(TensorType t, const void* w, size_t row_bytes, int64_t rows, int64_t cols,
                 size_t r0, size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok,
                 float* y) {
  if (kind() == Kind::kAvxVnni)
    return vex::matmul_rows(t, w, row_bytes, rows, cols, r0, r1, acts, blocks, n_tok, y);
  evex::matmul_rows(t, w, row_bytes, rows, cols, r0, r1, acts, blocks, n_tok, y);
}

bool wants_blocks(TensorType t, int64_t n_tok) {
  (void)t;  // every type handles() accepts reads them
  return kind() == Kind::kAvx512Vnni && n_tok >= evex::kDirectTokens;
}

size_t tile_block_bytes(TensorType t) {
  if (kind() != Kind::kAvx512Vnni) return 0;
  switch (t) {
    case TensorType::Q8_0:
      return evex::TiledQ8_0::kBytes;
    case TensorType::Q4_0:
      return evex::TiledQ4_0::kBytes;
    case TensorType::Q4_1:
      return evex::TiledQ4_1::kBytes;
    default:
      return 0;
  }
}

void matmul_tiles(TensorType t, const uint8_t* tiles, int64_t rows, int64_t cols, size_t r0,
                  size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok,
                  float* y) {
  evex::matmul_tiles(t, tiles, rows, cols, r0, r1, acts, blocks, n_tok, y);
}

#else

Kind kind() { return Kind::kNone; }

void matmul_rows(TensorType, const void*, size_t, int64_t, int64_t, size_t, size_t, const ActQ8*,
                 const ActQ8Blocks*, int64_t, float*) {
  std::abort();  // kind() is kNone
}

bool wants_blocks(TensorType, int64_t) { return false; }

size_t tile_block_bytes(TensorType) { return 0; }

void matmul_tiles(TensorType, const uint8_t*, int64_t, int64_t, size_t, size_t, const ActQ8*,
                  const ActQ8Blocks*, int64_t, float*) {
  std::abort();  // tile_block_bytes() is 0
}

#endif

bool supported() { return kind() != Kind::kNone; }

// Plain C++, shared by every build: the layouts TiledNibbles and TiledQ8_0 decode.
void pack_tiles(TensorType t, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols,
                uint8_t* out) {
  const size_t bb = tile_block_bytes(t);
  const int64_t nb = cols / 32, n_tiles = (rows + 15) / 16;
  std::fill(out, out + size_t(n_tiles * nb) * bb, uint8_t{0});
  const size_t gguf_block = row_bytes / size_t(nb);
  for (int64_t tile = 0; tile < n_tiles; ++tile) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* dst = out + size_t(tile * nb + b) * bb;
      for (int i = 0; i < 16 && tile * 16 + i < rows; ++i) {
        const uint8_t* blk = w + size_t(tile * 16 + i) * row_bytes + size_t(b) * gguf_block;
        if (t == TensorType::Q8_0) {
          for (int e = 0; e < 32; ++e) {  // step e / 4, row i's dword, byte e % 4
            dst[64 * (e / 4) + 4 * i + e % 4] = uint8_t(blk[fmt::kQ8_0_Qs + e] ^ 0x80);
          }
          std::memcpy(dst + 512 + 2 * i, blk + fmt::kQ8_0_D, 2);
        } else {
          const int qs = t == TensorType::Q4_1 ? fmt::kQ4_1_Qs : fmt::kQ4_0_Qs;
          for (int g = 0; g < 4; ++g) std::memcpy(dst + 64 * g + 4 * i, blk + qs + 4 * g, 4);
          std::memcpy(dst + 256 + 2 * i, blk + fmt::kQ4_1_D, 2);  // d leads both blocks
          if (t == TensorType::Q4_1) std::memcpy(dst + 288 + 2 * i, blk + fmt::kQ4_1_M, 2);
        }
      }
    }
  }
}

const char* name() {
  switch (kind()) {
    case Kind::kAvxVnni:
      return "AVX-VNNI";
    case Kind::kAvx512Vnni:
      return "AVX512-VNNI";
    default:
      return "";
  }
}

bool handles(TensorType t) {
  return t == TensorType::Q8_0 || t == TensorType::Q4_0 || t == TensorType::Q4_1 ||
         t == TensorType::Q5_0 || t == TensorType::Q5_1 || t == TensorType::Q4_K ||
         t == TensorType::Q6_K;
}

}  // namespace hlm::ops::vnni
