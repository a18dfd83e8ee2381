// Per-target SIMD bodies of the ops kernels (compiled once per Highway target through
// foreach_target.h in ops.cc). Quantised weights are dotted with activations requantised to
// int8 blocks of 32, with int16 x int16 -> int32 pairwise products (and, on AVX2/AVX-512, the
// u8 x i8 -> i16 maddubs form, which gives the same integer sums; the 4-, 5- and 6-bit types
// there run row-interleaved, interleaved-inl.h).

// ---- Target-independent part ----
#ifndef HLM_OPS_OPS_INL_SHARED_H_
#define HLM_OPS_OPS_INL_SHARED_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "gguf/tensor_type.h"
#include "ops/act_q8.h"
#include "ops/ops.h"
#include "ops/quant_formats.h"

#endif  // HLM_OPS_OPS_INL_SHARED_H_

// ---- Per-target part ----
#if defined(HLM_OPS_OPS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef HLM_OPS_OPS_INL_H_
#undef HLM_OPS_OPS_INL_H_
#else
#define HLM_OPS_OPS_INL_H_
#endif

#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace hlm::ops::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Tag for weight chunks: at most 16 int16 lanes, so a chunk never straddles a 16-element
// scale group of Q6_K and 32-element blocks are a whole number of chunks.
using D16 = hn::CappedTag<int16_t, 16>;
using D32 = hn::Repartition<int32_t, D16>;
using DF = hn::Repartition<float, D32>;
using V16 = hn::Vec<D16>;

#undef HLM_OPS_X86_BYTES  // redefined for each target pass
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define HLM_OPS_X86_BYTES 1  // decoders may offer Bytes32(): a sub-block as 32 bytes in a __m256i
#else
#define HLM_OPS_X86_BYTES 0
#endif

HWY_INLINE float LoadF16(const uint8_t* p) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
#else
  return fmt::load_f16(p);
#endif
}

template <class D>
HWY_INLINE float ReduceSum(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::SumOfLanes(d, v));
}

// Low (c < 16) or high (c >= 16) nibbles of qs[c % 16 ..], widened to int16.
HWY_INLINE V16 Nibbles(const uint8_t* qs, size_t c) {
  const D16 d16;
  const hn::Rebind<uint8_t, D16> du8;
  const auto bytes = hn::LoadU(du8, qs + (c & 15));
  const auto nib = c < 16 ? hn::And(bytes, hn::Set(du8, 15)) : hn::ShiftRight<4>(bytes);
  return hn::BitCast(d16, hn::PromoteTo(hn::Rebind<uint16_t, D16>(), nib));
}

#if HLM_OPS_X86_BYTES
// The 32 nibbles of a 16-byte 4-bit block as bytes: low nibbles, then high nibbles.
HWY_INLINE __m256i NibbleBytes(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(15));
}
#endif

// 16 where bit (c + lane) of the 32-bit qh is set, else 0.
HWY_INLINE V16 HighBit32(uint32_t qh, size_t c) {
  alignas(64) static constexpr uint16_t kBits[16] = {
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  const D16 d16;
  const hn::RebindToUnsigned<D16> du16;
  const auto word = hn::Set(du16, static_cast<uint16_t>(qh >> (c & 16)));
  const auto bits = hn::LoadU(du16, kBits + (c & 15));
  return hn::BitCast(d16, hn::IfThenElseZero(hn::TestBit(word, bits), hn::Set(du16, 16)));
}

// ---- Block decoders: each turns a block into int16 chunks of 32-element sub-blocks plus a
// scale dw (multiplies sum(w_q * a_q) * a_d) and an offset mw (multiplies a_d * sum(a_q)).

struct DecQ8_0 {
  static constexpr int kElems = 32, kBytes = 34, kSubs = 1;
  const uint8_t* b;
  HWY_INLINE void Begin(const uint8_t* blk) { b = blk; }
  HWY_INLINE void Scales(int, float& dw, float& mw) const {
    dw = LoadF16(b + fmt::kQ8_0_D);
    mw = 0.0f;
  }
  HWY_INLINE V16 Chunk(int, size_t c) const {
    const hn::Rebind<int8_t, D16> di8;
    return hn::PromoteTo(D16(),
                         hn::LoadU(di8, reinterpret_cast<const int8_t*>(b + fmt::kQ8_0_Qs + c)));
  }
#if HLM_OPS_X86_BYTES
  static constexpr bool kSignedBytes = true;
  HWY_INLINE __m256i Bytes32(int) const {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + fmt::kQ8_0_Qs));
  }
#endif
};

struct DecQ4_0 {
  static constexpr int kElems = 32, kBytes = 18, kSubs = 1;
  const uint8_t* b;
  HWY_INLINE void Begin(const uint8_t* blk) { b = blk; }
  HWY_INLINE void Scales(int, float& dw, float& mw) const {
    dw = LoadF16(b + fmt::kQ4_0_D);
    mw = 0.0f;
  }
  HWY_INLINE V16 Chunk(int, size_t c) const {
    return hn::Sub(Nibbles(b + fmt::kQ4_0_Qs, c), hn::Set(D16(), 8));
  }
#if HLM_OPS_X86_BYTES
  static constexpr bool kSignedBytes = true;
  HWY_INLINE __m256i Bytes32(int) const {
    return _mm256_sub_epi8(NibbleBytes(b + fmt::kQ4_0_Qs), _mm256_set1_epi8(8));
  }
#endif
};

struct DecQ4_1 {
  static constexpr int kElems = 32, kBytes = 20, kSubs = 1;
  const uint8_t* b;
  HWY_INLINE void Begin(const uint8_t* blk) { b = blk; }
  HWY_INLINE void Scales(int, float& dw, float& mw) const {
    dw = LoadF16(b + fmt::kQ4_1_D);
    mw = LoadF16(b + fmt::kQ4_1_M);
  }
  HWY_INLINE V16 Chunk(int, size_t c) const { return Nibbles(b + fmt::kQ4_1_Qs, c); }
#if HLM_OPS_X86_BYTES
  static constexpr bool kSignedBytes = false;
  HWY_INLINE __m256i Bytes32(int) const { return NibbleBytes(b + fmt::kQ4_1_Qs); }
#endif
};

struct DecQ5_0 {
  static constexpr int kElems = 32, kBytes = 22, kSubs = 1;
  const uint8_t* b;
  uint32_t qh;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    qh = fmt::load_u32(b + fmt::kQ5_0_Qh);
  }
  HWY_INLINE void Scales(int, float& dw, float& mw) const {
    dw = LoadF16(b + fmt::kQ5_0_D);
    mw = 0.0f;
  }
  HWY_INLINE V16 Chunk(int, size_t c) const {
    const auto q = hn::Or(Nibbles(b + fmt::kQ5_0_Qs, c), HighBit32(qh, c));
    return hn::Sub(q, hn::Set(D16(), 16));
  }
};

struct DecQ5_1 {
  static constexpr int kElems = 32, kBytes = 24, kSubs = 1;
  const uint8_t* b;
  uint32_t qh;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    qh = fmt::load_u32(b + fmt::kQ5_1_Qh);
  }
  HWY_INLINE void Scales(int, float& dw, float& mw) const {
    dw = LoadF16(b + fmt::kQ5_1_D);
    mw = LoadF16(b + fmt::kQ5_1_M);
  }
  HWY_INLINE V16 Chunk(int, size_t c) const {
    return hn::Or(Nibbles(b + fmt::kQ5_1_Qs, c), HighBit32(qh, c));
  }
};

// Q4_K / Q5_K: sub-block j = 2g + h holds the low (h = 0) or high (h = 1) nibbles of qs[32g..].
template <bool kFive>
struct DecQK45 {
  static constexpr int kElems = 256, kBytes = kFive ? 176 : 144, kSubs = 8;
  static constexpr int kQs = kFive ? fmt::kQ5_K_Qs : fmt::kQ4_K_Qs;
  const uint8_t* b;
  alignas(32) float dws[8];
  alignas(32) float mws[8];
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    const float d = LoadF16(b + fmt::kQ4_K_D), dmin = LoadF16(b + fmt::kQ4_K_Dmin);
    // The 8 six-bit scales and mins (fmt::k4_scale_min), four bytes at a time: sub-blocks 0-3
    // are the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); 4-7 take their low 4 bits from
    // the nibbles of bytes 8-11 and their top 2 from the top bits of bytes 0-3 and 4-7.
    const uint8_t* s = b + fmt::kQ4_K_Scales;
    const uint32_t u0 = fmt::load_u32(s), u1 = fmt::load_u32(s + 4), u2 = fmt::load_u32(s + 8);
    const uint32_t sc[2] = {u0 & 0x3f3f3f3fu,
                            (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4)};
    const uint32_t m[2] = {u1 & 0x3f3f3f3fu,
                           ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4)};
    alignas(8) uint8_t scb[8], mb[8];
    std::memcpy(scb, sc, 8);
    std::memcpy(mb, m, 8);
    const hn::CappedTag<float, 8> df8;
    const hn::Rebind<int32_t, decltype(df8)> di;
    const hn::Rebind<uint8_t, decltype(df8)> du8;
    for (size_t i = 0; i < 8; i += hn::Lanes(df8)) {
      const auto vs = hn::ConvertTo(df8, hn::PromoteTo(di, hn::LoadU(du8, scb + i)));
      const auto vm = hn::ConvertTo(df8, hn::PromoteTo(di, hn::LoadU(du8, mb + i)));
      hn::StoreU(hn::Mul(vs, hn::Set(df8, d)), df8, dws + i);
      hn::StoreU(hn::Mul(vm, hn::Set(df8, -dmin)), df8, mws + i);
    }
  }
  HWY_INLINE void Scales(int sub, float& dw, float& mw) const {
    dw = dws[sub];
    mw = mws[sub];
  }
  HWY_INLINE V16 Chunk(int sub, size_t c) const {
    const D16 d16;
    const uint8_t* qs = b + kQs + 32 * (sub >> 1);
    const hn::Rebind<uint8_t, D16> du8;
    const auto bytes = hn::LoadU(du8, qs + c);
    const auto nib = (sub & 1) ? hn::ShiftRight<4>(bytes) : hn::And(bytes, hn::Set(du8, 15));
    auto q = hn::BitCast(d16, hn::PromoteTo(hn::Rebind<uint16_t, D16>(), nib));
    if constexpr (kFive) {
      const hn::Rebind<uint16_t, D16> du16;
      const auto h = hn::PromoteTo(du16, hn::LoadU(du8, b + fmt::kQ5_K_Qh + c));
      const auto bit = hn::And(hn::ShiftRightSame(h, sub), hn::Set(du16, 1));
      q = hn::Or(q, hn::BitCast(d16, hn::ShiftLeft<4>(bit)));
    }
    return q;
  }
#if HLM_OPS_X86_BYTES
  static constexpr bool kSignedBytes = false;
  HWY_INLINE __m256i Bytes32(int sub) const {
    const __m256i v =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kQs + 32 * (sub >> 1)));
    __m256i q = _mm256_and_si256((sub & 1) ? _mm256_srli_epi16(v, 4) : v, _mm256_set1_epi8(15));
    if constexpr (kFive) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + fmt::kQ5_K_Qh));
      // 16 where bit `sub` of the element's qh byte is set.
      const __m256i bit = _mm256_and_si256(h, _mm256_set1_epi8(static_cast<char>(1 << sub)));
      const __m256i unset = _mm256_cmpeq_epi8(bit, _mm256_setzero_si256());
      q = _mm256_or_si256(q, _mm256_andnot_si256(unset, _mm256_set1_epi8(16)));
    }
    return q;
  }
#endif
};

// Q6_K: 6-bit values pre-multiplied by their int8 16-element scale (|q * sc| <= 4096).
struct DecQ6_K {
  static constexpr int kElems = 256, kBytes = 210, kSubs = 8;
  const uint8_t* b;
  float d;
  HWY_INLINE void Begin(const uint8_t* blk) {
    b = blk;
    d = LoadF16(b + fmt::kQ6_K_D);
  }
  HWY_INLINE void Scales(int, float& dw, float& mw) const {
    dw = d;
    mw = 0.0f;
  }
  HWY_INLINE V16 Chunk(int sub, size_t c) const {
    const D16 d16;
    const hn::Rebind<uint16_t, D16> du16;
    const hn::Rebind<uint8_t, D16> du8;
    const int h = sub >> 2, k = sub & 3;
    const auto bytes = hn::LoadU(du8, b + fmt::kQ6_K_Ql + 64 * h + 32 * (k & 1) + c);
    const auto nib = (k >> 1) ? hn::ShiftRight<4>(bytes) : hn::And(bytes, hn::Set(du8, 15));
    const auto hb = hn::PromoteTo(du16, hn::LoadU(du8, b + fmt::kQ6_K_Qh + 32 * h + c));
    const auto hi = hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(hb, 2 * k), hn::Set(du16, 3)));
    const auto q = hn::BitCast(d16, hn::Or(hn::PromoteTo(du16, nib), hi));
    const int sc = static_cast<int8_t>(b[fmt::kQ6_K_Scales + 2 * sub + (c >> 4)]);
    return hn::Mul(hn::Sub(q, hn::Set(d16, 32)), hn::Set(d16, static_cast<int16_t>(sc)));
  }
};

#if HLM_OPS_X86_BYTES
template <class Dec>
constexpr auto HasBytes32(int) -> decltype(Dec::kSignedBytes, bool()) {
  return true;
}
template <class Dec>
constexpr bool HasBytes32(...) {
  return false;
}
#endif

// Adds sub-block `sub` of the current block (activation block blk) to NT token accumulators.
template <class Dec, int NT>
HWY_INLINE void BlockDot(const Dec& dec, int sub, int64_t blk, const ActQ8* a, hn::Vec<DF>* acc,
                         float* sacc) {
  const D16 d16;
  const D32 d32;
  const DF df;
  const size_t N = hn::Lanes(d16);
  using VI = hn::Vec<D32>;
  float dw, mw;
  dec.Scales(sub, dw, mw);
#if HLM_OPS_X86_BYTES
  if constexpr (HasBytes32<Dec>(0)) {
    // Same integer sums as below, via u8 x i8 maddubs (pairs stay below 2 * 128 * 127).
    const __m256i wb = dec.Bytes32(sub);
    const __m256i aw = Dec::kSignedBytes ? _mm256_sign_epi8(wb, wb) : wb;
    const __m256 vdw = _mm256_set1_ps(dw);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int t = 0; t < NT; ++t) {
      __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[t].q + blk * 32));
      if (Dec::kSignedBytes) y = _mm256_sign_epi8(y, wb);
      const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, y), ones);
      const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(p), vdw);
      acc[t] = hn::Vec<DF>{_mm256_fmadd_ps(f, _mm256_set1_ps(a[t].d[blk]), acc[t].raw)};
      sacc[t] += mw * a[t].s[blk];
    }
    return;
  }
#endif
  VI s0[NT], s1[NT];
  for (int t = 0; t < NT; ++t) s0[t] = s1[t] = hn::Zero(d32);
  for (size_t c = 0; c < 32; c += N) {
    const V16 w = dec.Chunk(sub, c);
    for (int t = 0; t < NT; ++t) {
      const V16 x = hn::PromoteTo(d16, hn::LoadU(hn::Rebind<int8_t, D16>(), a[t].q + blk * 32 + c));
      s0[t] = hn::ReorderWidenMulAccumulate(d32, w, x, s0[t], s1[t]);
    }
  }
  const auto vdw = hn::Set(df, dw);
  for (int t = 0; t < NT; ++t) {
    const VI s = hn::RearrangeToOddPlusEven(s0[t], s1[t]);
    acc[t] = hn::MulAdd(hn::Mul(hn::ConvertTo(df, s), vdw), hn::Set(df, a[t].d[blk]), acc[t]);
    sacc[t] += mw * a[t].s[blk];
  }
}

// out[t] = dot(row, token t) for NT tokens, reading the weight row once. Sub-blocks alternate
// between two accumulator sets (shorter FMA dependency chains); the summation order does not
// depend on NT, so every tile size gives bit-identical results.
template <class Dec, int NT>
HWY_INLINE void DotTileQ(const uint8_t* HWY_RESTRICT row, int64_t n, const ActQ8* a, float* out) {
  const DF df;
  constexpr int K = 2;
  hn::Vec<DF> acc[K][NT];
  float sacc[K][NT];
  for (int k = 0; k < K; ++k) {
    for (int t = 0; t < NT; ++t) {
      acc[k][t] = hn::Zero(df);
      sacc[k][t] = 0.0f;
    }
  }
  Dec dec;
  const int64_t nblk = n / 32;
  if constexpr (Dec::kSubs == 1) {
    int64_t blk = 0;
    for (; blk + K <= nblk; blk += K) {
      for (int k = 0; k < K; ++k) {
        dec.Begin(row + (blk + k) * Dec::kBytes);
        BlockDot<Dec, NT>(dec, 0, blk + k, a, acc[k], sacc[k]);
      }
    }
    for (; blk < nblk; ++blk) {
      dec.Begin(row + blk * Dec::kBytes);
      BlockDot<Dec, NT>(dec, 0, blk, a, acc[0], sacc[0]);
    }
  } else {
    static_assert(Dec::kSubs % K == 0);
    for (int64_t sb = 0; sb < nblk / Dec::kSubs; ++sb) {
      dec.Begin(row + sb * Dec::kBytes);
      for (int sub = 0; sub < Dec::kSubs; sub += K) {
        for (int k = 0; k < K; ++k) {
          BlockDot<Dec, NT>(dec, sub + k, sb * Dec::kSubs + sub + k, a, acc[k], sacc[k]);
        }
      }
    }
  }
  for (int t = 0; t < NT; ++t) {
    out[t] = ReduceSum(df, hn::Add(acc[0][t], acc[1][t])) + (sacc[0][t] + sacc[1][t]);
  }
}

#if HLM_OPS_X86_BYTES
#define HLM_IL_VNNI 0
#define HLM_IL_ZMM 0
#define HLM_IL_INLINE HWY_INLINE
#include "ops/interleaved-inl.h"
#undef HLM_IL_VNNI
#undef HLM_IL_ZMM
#undef HLM_IL_INLINE
#endif  // HLM_OPS_X86_BYTES

// ---- Float weights (F32, F16, BF16): f32 FMA against unquantised activations ----

template <TensorType T, class D>
HWY_INLINE hn::Vec<D> LoadW(D df, const uint8_t* p, int64_t i) {
  if constexpr (T == TensorType::F32) {
    return hn::LoadU(df, reinterpret_cast<const float*>(p) + i);
  } else if constexpr (T == TensorType::F16) {
    const hn::Rebind<hwy::float16_t, D> dh;
    return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p) + i));
  } else {
    const hn::Rebind<hwy::bfloat16_t, D> db;
    return hn::PromoteTo(df, hn::LoadU(db, reinterpret_cast<const hwy::bfloat16_t*>(p) + i));
  }
}

template <TensorType T>
HWY_INLINE float LoadScalarW(const uint8_t* p, int64_t i) {
  if constexpr (T == TensorType::F32) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  } else if constexpr (T == TensorType::F16) {
    return fmt::load_f16(p + 2 * i);
  } else {
    return fmt::bf16_to_f32(fmt::load_u16(p + 2 * i));
  }
}

template <TensorType T, int NT>
HWY_INLINE void DotTileF(const uint8_t* HWY_RESTRICT row, int64_t n, const float* const* x,
                         float* out) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  hn::Vec<decltype(df)> acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = hn::Zero(df);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto w = LoadW<T>(df, row, i);
    for (int t = 0; t < NT; ++t) acc[t] = hn::MulAdd(w, hn::LoadU(df, x[t] + i), acc[t]);
  }
  for (int t = 0; t < NT; ++t) {
    float s = ReduceSum(df, acc[t]);
    for (int64_t j = i; j < n; ++j) s += LoadScalarW<T>(row, j) * x[t][j];
    out[t] = s;
  }
}

// ---- Activation requantisation ----

// Quantises n floats (n % 32 == 0) to int8 blocks of 32 (round to nearest, d = amax / 127), with
// the sums of q per 16 in h.
HWY_NOINLINE void QuantizeAct(const float* HWY_RESTRICT x, int64_t n, int8_t* HWY_RESTRICT q,
                              float* HWY_RESTRICT d, float* HWY_RESTRICT s,
                              int32_t* HWY_RESTRICT h) {
  const hn::CappedTag<float, 8> df;
  const hn::Rebind<int32_t, decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const size_t N = hn::Lanes(df);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + 32 * b;
    auto amax = hn::Zero(df);
    for (size_t c = 0; c < 32; c += N) amax = hn::Max(amax, hn::Abs(hn::LoadU(df, xb + c)));
    const float am = hn::GetLane(hn::MaxOfLanes(df, amax));
    const float db = am / 127.0f;
    const auto id = hn::Set(df, am > 0.0f ? 127.0f / am : 0.0f);
    auto isum = hn::Zero(di);
    for (size_t c = 0; c < 32; c += N) {
      const auto qi = hn::NearestInt(hn::Mul(hn::LoadU(df, xb + c), id));
      isum = hn::Add(isum, qi);
      hn::StoreU(hn::DemoteTo(d8, qi), d8, q + 32 * b + c);
    }
    d[b] = db;
    s[b] = db * static_cast<float>(hn::GetLane(hn::SumOfLanes(di, isum)));
    for (int64_t half = 0; half < 2; ++half) {
      int32_t sum = 0;
      for (int64_t i = 0; i < 16; ++i) sum += q[32 * b + 16 * half + i];
      h[2 * b + half] = sum;
    }
  }
}

// ---- Row-range drivers ----

constexpr int kTile = 4;  // tokens per weight-row pass

template <class Dec>
HWY_INLINE void RowsQ(const uint8_t* w, size_t row_bytes, int64_t cols, size_t r0, size_t r1,
                      const ActQ8* acts, int64_t n_tok, float* y, int64_t rows) {
  float out[kTile];
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + r * row_bytes;
    int64_t t = 0;
    for (; t + kTile <= n_tok; t += kTile) {
      DotTileQ<Dec, kTile>(row, cols, acts + t, out);
      for (int k = 0; k < kTile; ++k) y[(t + k) * rows + static_cast<int64_t>(r)] = out[k];
    }
    const int64_t rem = n_tok - t;
    if (rem == 3) DotTileQ<Dec, 3>(row, cols, acts + t, out);
    if (rem == 2) DotTileQ<Dec, 2>(row, cols, acts + t, out);
    if (rem == 1) DotTileQ<Dec, 1>(row, cols, acts + t, out);
    for (int64_t k = 0; k < rem; ++k) y[(t + k) * rows + static_cast<int64_t>(r)] = out[k];
  }
}

template <TensorType T>
HWY_INLINE void RowsF(const uint8_t* w, size_t row_bytes, int64_t cols, size_t r0, size_t r1,
                      const float* x, int64_t n_tok, float* y, int64_t rows) {
  float out[kTile];
  const float* xs[kTile];
  for (size_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + r * row_bytes;
    int64_t t = 0;
    for (; t < n_tok; t += kTile) {
      const int64_t m = n_tok - t < kTile ? n_tok - t : kTile;
      for (int64_t k = 0; k < m; ++k) xs[k] = x + (t + k) * cols;
      if (m == 4) DotTileF<T, 4>(row, cols, xs, out);
      if (m == 3) DotTileF<T, 3>(row, cols, xs, out);
      if (m == 2) DotTileF<T, 2>(row, cols, xs, out);
      if (m == 1) DotTileF<T, 1>(row, cols, xs, out);
      for (int64_t k = 0; k < m; ++k) y[(t + k) * rows + static_cast<int64_t>(r)] = out[k];
    }
  }
}

// Rows [r0, r1) of a matmul with pre-quantised activations (quantised types only).
HWY_NOINLINE void MatmulRowsQ(TensorType t, const void* w, int64_t rows, int64_t cols, size_t r0,
                              size_t r1, const ActQ8* acts, int64_t n_tok, float* y) {
  const auto* p = static_cast<const uint8_t*>(w);
  const size_t rb = row_bytes(t, cols);
  switch (t) {
    case TensorType::Q8_0:
      return RowsQ<DecQ8_0>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
#if HLM_OPS_X86_BYTES
    case TensorType::Q4_0:
      return RowsInterleaved<IlQ4_0>(p, rb, cols, r0, r1, acts, nullptr, n_tok, y, rows);
    case TensorType::Q4_1:
      return RowsInterleaved<IlQ4_1>(p, rb, cols, r0, r1, acts, nullptr, n_tok, y, rows);
    case TensorType::Q5_0:
      return RowsInterleaved<IlQ5_0>(p, rb, cols, r0, r1, acts, nullptr, n_tok, y, rows);
    case TensorType::Q5_1:
      return RowsInterleaved<IlQ5_1>(p, rb, cols, r0, r1, acts, nullptr, n_tok, y, rows);
    case TensorType::Q4_K:
      return RowsInterleaved<IlQ4_K>(p, rb, cols, r0, r1, acts, nullptr, n_tok, y, rows);
    case TensorType::Q6_K:
      return RowsInterleaved<IlQ6_K>(p, rb, cols, r0, r1, acts, nullptr, n_tok, y, rows);
#else
    case TensorType::Q4_0:
      return RowsQ<DecQ4_0>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q4_1:
      return RowsQ<DecQ4_1>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q5_0:
      return RowsQ<DecQ5_0>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q5_1:
      return RowsQ<DecQ5_1>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q4_K:
      return RowsQ<DecQK45<false>>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
    case TensorType::Q6_K:
      return RowsQ<DecQ6_K>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
#endif
    case TensorType::Q5_K:
      return RowsQ<DecQK45<true>>(p, rb, cols, r0, r1, acts, n_tok, y, rows);
    default:
      break;
  }
}

// Rows [r0, r1) of a matmul with float weights and f32 activations.
HWY_NOINLINE void MatmulRowsF(TensorType t, const void* w, int64_t rows, int64_t cols, size_t r0,
                              size_t r1, const float* x, int64_t n_tok, float* y) {
  const auto* p = static_cast<const uint8_t*>(w);
  const size_t rb = row_bytes(t, cols);
  switch (t) {
    case TensorType::F32:
      return RowsF<TensorType::F32>(p, rb, cols, r0, r1, x, n_tok, y, rows);
    case TensorType::F16:
      return RowsF<TensorType::F16>(p, rb, cols, r0, r1, x, n_tok, y, rows);
    case TensorType::BF16:
      return RowsF<TensorType::BF16>(p, rb, cols, r0, r1, x, n_tok, y, rows);
    default:
      break;
  }
}

HWY_NOINLINE const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

// ---- Attention over an f16 KV cache ----

using F16 = hwy::float16_t;

// Keys in blocks of kKeyBlock positions, dimension-major (ops.h): one vector per dimension holds
// 16 positions, so scores come out in lanes with no horizontal sums, and the blocks are one linear
// stream.

// p_k[j] = scale * dot(q_k, K_j) for kQ queries q_k = q + k * n and j < rows (p_k = p + k * rows).
// Each query's sum is split over kChains dimension classes so the multiply-adds do not all wait on
// each other. The split is the same for every kQ: a query's scores must not depend on how many
// others share its call, or decoding (one head per call) and prefill (a GQA group per call) would
// part by more than rounding once the next layer requantises their outputs.
template <int kQ>
HWY_INLINE void KeyScores(const float* HWY_RESTRICT q, const F16* HWY_RESTRICT K, int64_t rows,
                          int64_t n, float scale, float* HWY_RESTRICT p, int64_t p_rows) {
  constexpr int kChains = 2;
  const hn::ScalableTag<float> df;
  const hn::Rebind<F16, decltype(df)> dh;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  HWY_ALIGN float part[kKeyBlock];
  const auto vscale = hn::Set(df, scale);
  for (int64_t j0 = 0; j0 < rows; j0 += kKeyBlock) {
    const F16* blk = K + (j0 / kKeyBlock) * n * kKeyBlock;
    const int64_t valid = std::min(kKeyBlock, rows - j0);
    for (int64_t c = 0; c < valid; c += N) {
      hn::Vec<decltype(df)> acc[kQ][kChains];
      for (int k = 0; k < kQ; ++k) {
        for (int h = 0; h < kChains; ++h) acc[k][h] = hn::Zero(df);
      }
      const auto key = [&](int64_t d) {
        return hn::PromoteTo(df, hn::LoadU(dh, blk + d * kKeyBlock + c));
      };
      int64_t d = 0;
      for (; d + kChains <= n; d += kChains) {
        for (int h = 0; h < kChains; ++h) {
          const auto kd = key(d + h);
          for (int k = 0; k < kQ; ++k) {
            acc[k][h] = hn::MulAdd(hn::Set(df, q[k * n + d + h]), kd, acc[k][h]);
          }
        }
      }
      for (; d < n; ++d) {
        const auto kd = key(d);
        for (int k = 0; k < kQ; ++k)
          acc[k][0] = hn::MulAdd(hn::Set(df, q[k * n + d]), kd, acc[k][0]);
      }
      for (int k = 0; k < kQ; ++k) {
        auto sum = acc[k][0];
        for (int h = 1; h < kChains; ++h) sum = hn::Add(sum, acc[k][h]);
        const auto sv = hn::Mul(sum, vscale);
        float* dst = p + k * p_rows + j0 + c;
        if (c + N <= valid) {
          hn::StoreU(sv, df, dst);
        } else {  // the last, partial block: its other lanes are stale cache rows
          hn::Store(sv, df, part);
          std::copy_n(part, valid - c, dst);
        }
      }
    }
  }
}

// The hardware prefetchers follow the cached rows poorly (attention stalled on its loads), so
// rows this far ahead are prefetched by hand.
constexpr int64_t kRowsAhead = 8;
HWY_INLINE void PrefetchRow(const F16* row, int64_t n) {
  for (int64_t i = 0; i < n; i += 32) hwy::Prefetch(row + i);
  hwy::Prefetch(row + n - 1);  // the row need not start on a cache line
}

// out_k = sum_j p_k[j] * (V + j * stride)[0, kV * N) for kQ queries (p_k = p + k * rows, out_k =
// out + k * n): each row of V is loaded once for all of them, the outputs stay in registers, in
// two sets (even and odd rows) so FMA latency does not bound the loop.
template <int kQ, int kV, class D>
HWY_INLINE void WeightedRows(D df, const float* HWY_RESTRICT p, int64_t rows,
                             const F16* HWY_RESTRICT V, int64_t stride, float* HWY_RESTRICT out,
                             int64_t n) {
  const hn::Rebind<F16, D> dh;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto load = [&](int64_t j, int c) {
    return hn::PromoteTo(df, hn::LoadU(dh, V + j * stride + c * N));
  };
  hn::Vec<D> acc[kQ][kV], acc1[kQ][kV];
  for (int k = 0; k < kQ; ++k) {
    for (int c = 0; c < kV; ++c) acc[k][c] = acc1[k][c] = hn::Zero(df);
  }
  int64_t j = 0;
  for (; j + 2 <= rows; j += 2) {
    if (j + 1 + kRowsAhead < rows) {
      PrefetchRow(V + (j + kRowsAhead) * stride, kV * N);
      PrefetchRow(V + (j + 1 + kRowsAhead) * stride, kV * N);
    }
    hn::Vec<D> v[kV], w[kV];
    for (int c = 0; c < kV; ++c) v[c] = load(j, c);
    for (int c = 0; c < kV; ++c) w[c] = load(j + 1, c);
    for (int k = 0; k < kQ; ++k) {
      const auto pk = hn::Set(df, p[k * rows + j]), pk1 = hn::Set(df, p[k * rows + j + 1]);
      for (int c = 0; c < kV; ++c) acc[k][c] = hn::MulAdd(pk, v[c], acc[k][c]);
      for (int c = 0; c < kV; ++c) acc1[k][c] = hn::MulAdd(pk1, w[c], acc1[k][c]);
    }
  }
  if (j < rows) {
    hn::Vec<D> v[kV];
    for (int c = 0; c < kV; ++c) v[c] = load(j, c);
    for (int k = 0; k < kQ; ++k) {
      const auto pk = hn::Set(df, p[k * rows + j]);
      for (int c = 0; c < kV; ++c) acc[k][c] = hn::MulAdd(pk, v[c], acc[k][c]);
    }
  }
  for (int k = 0; k < kQ; ++k) {
    for (int c = 0; c < kV; ++c) {
      hn::StoreU(hn::Add(acc[k][c], acc1[k][c]), df, out + k * n + c * N);
    }
  }
}

template <int kQ, class D>
HWY_INLINE void WeightedRowsAllColumns(D df, const float* HWY_RESTRICT p, int64_t rows,
                                       const F16* HWY_RESTRICT V, int64_t stride,
                                       float* HWY_RESTRICT out, int64_t n) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t c = 0;
  for (; c + 4 * N <= n; c += 4 * N) WeightedRows<kQ, 4>(df, p, rows, V + c, stride, out + c, n);
  for (; c + N <= n; c += N) WeightedRows<kQ, 1>(df, p, rows, V + c, stride, out + c, n);
  for (; c < n; ++c) {
    for (int k = 0; k < kQ; ++k) {
      float s = 0.0f;
      for (int64_t j = 0; j < rows; ++j)
        s += p[k * rows + j] * fmt::f16_to_f32(V[j * stride + c].bits);
      out[k * n + c] = s;
    }
  }
}

// p[0, rows) = softmax(p[0, rows)) in place.
template <class D>
HWY_INLINE void SoftmaxInPlace(D df, float* HWY_RESTRICT p, int64_t rows) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto vmax = hn::Set(df, -HUGE_VALF);
  int64_t j = 0;
  for (; j + N <= rows; j += N) vmax = hn::Max(vmax, hn::LoadU(df, p + j));
  float mx = hn::GetLane(hn::MaxOfLanes(df, vmax));
  for (int64_t t = j; t < rows; ++t) mx = std::max(mx, p[t]);

  const auto vmx = hn::Set(df, mx);
  auto vsum = hn::Zero(df);
  for (j = 0; j + N <= rows; j += N) {
    const auto e = hn::Exp(df, hn::Sub(hn::LoadU(df, p + j), vmx));
    hn::StoreU(e, df, p + j);
    vsum = hn::Add(vsum, e);
  }
  float sum = ReduceSum(df, vsum);
  for (int64_t t = j; t < rows; ++t) sum += (p[t] = std::exp(p[t] - mx));

  const float inv = 1.0f / sum;
  const auto vinv = hn::Set(df, inv);
  for (j = 0; j + N <= rows; j += N) hn::StoreU(hn::Mul(hn::LoadU(df, p + j), vinv), df, p + j);
  for (int64_t t = j; t < rows; ++t) p[t] *= inv;
}

// Softmax attention of n_q queries that share one key/value head (a GQA group) over the same
// cached f16 positions: each key block and value row is read once for all of them.
HWY_NOINLINE void AttendF16(const float* HWY_RESTRICT q, int64_t n_q,
                            const uint16_t* HWY_RESTRICT Kbits, const uint16_t* HWY_RESTRICT Vbits,
                            int64_t stride, int64_t rows, int64_t n, float scale,
                            float* HWY_RESTRICT p, float* HWY_RESTRICT out, int64_t n_masked) {
  const hn::ScalableTag<float> df;
  const F16* K = reinterpret_cast<const F16*>(Kbits);
  const F16* V = reinterpret_cast<const F16*>(Vbits);
  int64_t k = 0;
  for (; k + 4 <= n_q; k += 4) KeyScores<4>(q + k * n, K, rows, n, scale, p + k * rows, rows);
  switch (n_q - k) {
    case 3:
      KeyScores<3>(q + k * n, K, rows, n, scale, p + k * rows, rows);
      break;
    case 2:
      KeyScores<2>(q + k * n, K, rows, n, scale, p + k * rows, rows);
      break;
    case 1:
      KeyScores<1>(q + k * n, K, rows, n, scale, p + k * rows, rows);
      break;
    default:
      break;
  }
  for (k = 0; k < n_q; ++k) {
    std::fill_n(p + k * rows, n_masked, -HUGE_VALF);  // exp(-inf) = 0 in the softmax
    SoftmaxInPlace(df, p + k * rows, rows);
  }
  k = 0;
  for (; k + 4 <= n_q; k += 4) {
    WeightedRowsAllColumns<4>(df, p + k * rows, rows, V, stride, out + k * n, n);
  }
  const float* pk = p + k * rows;
  float* ok = out + k * n;
  switch (n_q - k) {
    case 3:
      return WeightedRowsAllColumns<3>(df, pk, rows, V, stride, ok, n);
    case 2:
      return WeightedRowsAllColumns<2>(df, pk, rows, V, stride, ok, n);
    case 1:
      return WeightedRowsAllColumns<1>(df, pk, rows, V, stride, ok, n);
    default:
      return;
  }
}

// out = softmax((z - max z) * inv_t) over a vocabulary-sized row. The exponentials are summed in
// f32 lanes over chunks of kChunk entries and the chunk sums in f64: tens of thousands of terms
// in f32 lanes alone would lose digits of the normaliser.
HWY_NOINLINE void SoftmaxF32(const float* z, int64_t n, float inv_t, float* out) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr int64_t kChunk = 1024;
  auto vmax = hn::Set(df, -HUGE_VALF);
  int64_t i = 0;
  for (; i + N <= n; i += N) vmax = hn::Max(vmax, hn::LoadU(df, z + i));
  float mx = hn::GetLane(hn::MaxOfLanes(df, vmax));
  for (int64_t t = i; t < n; ++t) mx = std::max(mx, z[t]);
  const auto vmx = hn::Set(df, mx), vt = hn::Set(df, inv_t);
  double sum = 0.0;
  for (i = 0; i + N <= n;) {
    auto vsum = hn::Zero(df);
    for (const int64_t end = std::min(n, i + kChunk); i + N <= end; i += N) {
      const auto e = hn::Exp(df, hn::Mul(hn::Sub(hn::LoadU(df, z + i), vmx), vt));
      hn::StoreU(e, df, out + i);
      vsum = hn::Add(vsum, e);
    }
    sum += static_cast<double>(ReduceSum(df, vsum));
  }
  for (int64_t t = i; t < n; ++t) sum += (out[t] = std::exp((z[t] - mx) * inv_t));
  const float inv = static_cast<float>(1.0 / sum);
  const auto vinv = hn::Set(df, inv);
  for (i = 0; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, out + i), vinv), df, out + i);
  for (int64_t t = i; t < n; ++t) out[t] *= inv;
}

// out = x / sqrt(mean(x^2) + eps) * w, the sum of squares over two f32 lane accumulators. With
// d, x += d first (the residual add that precedes every norm in a llama block).
// out may be d (the residual read before any result is written).
HWY_NOINLINE void RmsNormF32(float* x, const float* d, const float* w, float* out, int64_t n,
                             float eps) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  auto ss0 = hn::Zero(df), ss1 = hn::Zero(df);
  int64_t i = 0;
  const auto load = [&](int64_t at) {
    auto v = hn::LoadU(df, x + at);
    if (d != nullptr) {
      v = hn::Add(v, hn::LoadU(df, d + at));
      hn::StoreU(v, df, x + at);
    }
    return v;
  };
  for (; i + 2 * N <= n; i += 2 * N) {
    const auto a = load(i), b = load(i + N);
    ss0 = hn::MulAdd(a, a, ss0);
    ss1 = hn::MulAdd(b, b, ss1);
  }
  for (; i + N <= n; i += N) {
    const auto a = load(i);
    ss0 = hn::MulAdd(a, a, ss0);
  }
  float ss = ReduceSum(df, hn::Add(ss0, ss1));
  for (; i < n; ++i) {
    if (d != nullptr) x[i] += d[i];
    ss += x[i] * x[i];
  }
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const auto vs = hn::Set(df, scale);
  for (i = 0; i + N <= n; i += N) {
    hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + i), vs), hn::LoadU(df, w + i)), df, out + i);
  }
  for (; i < n; ++i) out[i] = x[i] * scale * w[i];
}

// y = f16(x), round to nearest even. Vectorised where the CPU converts (F16C: AVX2 and up);
// Highway's emulation on other targets truncates, so those take the scalar conversion.
HWY_NOINLINE void ConvertToF16(const float* HWY_RESTRICT x, uint16_t* HWY_RESTRICT ybits,
                               int64_t n) {
  int64_t i = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  const hn::ScalableTag<float> df;
  const hn::Rebind<F16, decltype(df)> dh;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  F16* y = reinterpret_cast<F16*>(ybits);
  for (; i + N <= n; i += N) hn::StoreU(hn::DemoteTo(dh, hn::LoadU(df, x + i)), dh, y + i);
#endif
  for (; i < n; ++i) ybits[i] = fmt::f32_to_f16(x[i]);
}

// gate = silu(gate) * up, silu(x) = x / (1 + e^-x) (e^-x capped at e^88, where x / (1 + e^-x) is
// already below 1e-36 in magnitude).
HWY_NOINLINE void SiluMulF32(float* HWY_RESTRICT gate, const float* HWY_RESTRICT up, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto one = hn::Set(df, 1.0f), cap = hn::Set(df, 88.0f);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto g = hn::LoadU(df, gate + i);
    const auto e = hn::Exp(df, hn::Min(hn::Neg(g), cap));
    hn::StoreU(hn::Mul(hn::Div(g, hn::Add(one, e)), hn::LoadU(df, up + i)), df, gate + i);
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(std::min(-gate[i], 88.0f))) * up[i];
}

// gate = gelu(gate) * up with GELU's tanh form (as ggml's gelu and Gemma's gelu_pytorch_tanh).
HWY_NOINLINE void GeluMulF32(float* HWY_RESTRICT gate, const float* HWY_RESTRICT up, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  constexpr float kSqrt2OverPi = 0.7978845608028654f, kCubic = 0.044715f;
  const auto half = hn::Set(df, 0.5f), one = hn::Set(df, 1.0f), a = hn::Set(df, kSqrt2OverPi),
             b = hn::Set(df, kCubic * kSqrt2OverPi);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto g = hn::LoadU(df, gate + i);
    const auto inner = hn::Mul(g, hn::MulAdd(b, hn::Mul(g, g), a));
    const auto t = hn::Tanh(df, inner);
    hn::StoreU(hn::Mul(hn::Mul(hn::Mul(half, g), hn::Add(one, t)), hn::LoadU(df, up + i)), df,
               gate + i);
  }
  for (; i < n; ++i) {
    const float g = gate[i];
    gate[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * g * (1.0f + kCubic * g * g))) * up[i];
  }
}

}  // namespace hlm::ops::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // HLM_OPS_OPS_INL_H_ toggle
