// Row-interleaved quantised matmul for x86 (AVX2 and up) over the 4- and 5-bit block types:
// 8 weight rows x T tokens per pass. Textually included, inside the includer's namespace, once
// per Highway target by ops-inl.h (HLM_IL_VNNI 0: maddubs products) and twice by ops_vnni.cc
// (HLM_IL_VNNI 1: vpdpbusd, as HLM_IL_DPBUSD names it in AVX-VNNI's VEX or AVX512-VNNI's EVEX
// form; HLM_IL_ZMM 1 with the latter, for 16-row prefill tiles on 512-bit vectors). The includer
// provides <immintrin.h>, ActQ8 and HLM_IL_INLINE. No include guard: each inclusion is a separate
// instantiation.

// A 32-element block of 8 weight rows is decoded into 8 "step" vectors: step s holds elements
// 4s..4s+3 of every row as unsigned bytes, row i in dword i. The activation bytes 4s..4s+3 of
// a token are broadcast to all dwords, so one maddubs yields products for 8 rows at once and
// the per-row sums stay in separate lanes: no horizontal reductions, and the result of row i
// is lane i of the f32 accumulator. Every lane's arithmetic is the same whatever the number of
// valid rows or tokens in the pass, so matmul is bit-identical to dot() for every n_tok.
//
// Per block and token: the int32 lane sums isum of the 32 products, then
//   acc = fma(f32(isum), dw * da, acc);  acc = fma(mw, sa, acc)
// with dw/mw the rows' block scale and offset and da/sa the token's block scale and d*sum(q).
// Without VNNI, isum is built from int16 lane sums of maddubs pairs over kStepsPerMadd steps
// (exact: the pair bound times the steps stays below 2^15) and a madd to int32; with VNNI one
// vpdpbusd per step adds 4 products straight into int32. Both sums are exact, so the two
// variants give bit-identical results.
//
// Decode (n_tok < 4) runs blocks straight from registers; prefill first repacks a tile into a
// per-thread buffer and then streams kTokTile tokens at a time over it, so each weight block is
// decoded once per matmul rather than once per token. VNNI needs no int16 partial sums, which
// frees the registers for 6 tokens per pass instead of 4.

constexpr int kRows = 8;                       // rows per tile (dwords in a __m256i)
constexpr int kBlockBytes = 8 * 32;            // 8 step vectors
constexpr int kDirectTokens = 4;               // fewer tokens: no repacking (decode)
constexpr int kTokTile = HLM_IL_VNNI ? 6 : 4;  // tokens per pass over a repacked tile

HLM_IL_INLINE uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// 8 weight rows' 16-byte nibble arrays -> 8 step vectors (low nibbles: steps 0-3, high: 4-7).
HLM_IL_INLINE void TransposeNibbles(const uint8_t* const* p, int64_t off, __m256i* out) {
  auto ld = [&](int i) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[i] + off)); };
  const __m256i v0 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld(0)), ld(4), 1);
  const __m256i v1 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld(1)), ld(5), 1);
  const __m256i v2 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld(2)), ld(6), 1);
  const __m256i v3 = _mm256_inserti128_si256(_mm256_castsi128_si256(ld(3)), ld(7), 1);
  const __m256i t0 = _mm256_unpacklo_epi32(v0, v1), t1 = _mm256_unpackhi_epi32(v0, v1);
  const __m256i t2 = _mm256_unpacklo_epi32(v2, v3), t3 = _mm256_unpackhi_epi32(v2, v3);
  const __m256i s[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                        _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
  const __m256i m = _mm256_set1_epi8(15);
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    out[k] = _mm256_and_si256(s[k], m);
    out[k + 4] = _mm256_and_si256(_mm256_srli_epi16(s[k], 4), m);
  }
}

// The u32 at p[i] + off for 8 rows, row i in dword i.
HLM_IL_INLINE __m256i Gather32(const uint8_t* const* p, int64_t off) {
  return _mm256_setr_epi32(
      static_cast<int>(LoadU32(p[0] + off)), static_cast<int>(LoadU32(p[1] + off)),
      static_cast<int>(LoadU32(p[2] + off)), static_cast<int>(LoadU32(p[3] + off)),
      static_cast<int>(LoadU32(p[4] + off)), static_cast<int>(LoadU32(p[5] + off)),
      static_cast<int>(LoadU32(p[6] + off)), static_cast<int>(LoadU32(p[7] + off)));
}

// Two f16 at p[i] + off (lo) and p[i] + off + 2 (hi) for 8 rows, as f32.
HLM_IL_INLINE void GatherF16Pair(const uint8_t* const* p, int64_t off, __m256& lo, __m256& hi) {
  const __m256i v = Gather32(p, off);
  const __m256i sh = _mm256_shuffle_epi8(
      v, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9,
                          12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
  const __m256i q = _mm256_permute4x64_epi64(sh, 0xD8);  // lo0-3 lo4-7 hi0-3 hi4-7
  lo = _mm256_cvtph_ps(_mm256_castsi256_si128(q));
  hi = _mm256_cvtph_ps(_mm256_extracti128_si256(q, 1));
}

// The 32 bytes at p[i] + off of 8 rows as 8 step vectors: v[s] holds dword s (bytes 4s..4s+3)
// of every row, row i in dword i (an 8 x 8 dword transpose).
HLM_IL_INLINE void Transpose32(const uint8_t* const* p, int64_t off, __m256i* v) {
  auto ld = [&](int i) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[i] + off)); };
  __m256i t[8], u[8];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m256i a = ld(2 * k), b = ld(2 * k + 1);
    t[2 * k] = _mm256_unpacklo_epi32(a, b);
    t[2 * k + 1] = _mm256_unpackhi_epi32(a, b);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {  // rows 0-3, then 4-7
    const __m256i* th = t + 4 * h;
    u[4 * h + 0] = _mm256_unpacklo_epi64(th[0], th[2]);
    u[4 * h + 1] = _mm256_unpackhi_epi64(th[0], th[2]);
    u[4 * h + 2] = _mm256_unpacklo_epi64(th[1], th[3]);
    u[4 * h + 3] = _mm256_unpackhi_epi64(th[1], th[3]);
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x20);
    v[k + 4] = _mm256_permute2x128_si256(u[k], u[k + 4], 0x31);
  }
}

// The f16 at p[i] + off for 8 rows, as f32.
HLM_IL_INLINE __m256 GatherF16(const uint8_t* const* p, int64_t off) {
  alignas(16) uint16_t h[8];
  for (int i = 0; i < 8; ++i) std::memcpy(h + i, p[i] + off, 2);
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}

// Bit 4 of the 5-bit quants: for step s, byte j of dword i is 16 if bit e(s) + j of qh_i is set,
// where e(s) = 4s for s < 4 (low-nibble elements) and 16 + 4(s - 4) otherwise.
HLM_IL_INLINE void AddHighBits(__m256i qh, __m256i* v) {
#pragma GCC unroll 8
  for (int s = 0; s < 8; ++s) {
    const int e = s < 4 ? 4 * s : 16 + 4 * (s - 4);
    const char byte = static_cast<char>(e / 8), sh = static_cast<char>(e % 8);
    const __m256i rep = _mm256_shuffle_epi8(
        qh,
        _mm256_setr_epi8(byte, byte, byte, byte, byte + 4, byte + 4, byte + 4, byte + 4, byte + 8,
                         byte + 8, byte + 8, byte + 8, byte + 12, byte + 12, byte + 12, byte + 12,
                         byte, byte, byte, byte, byte + 4, byte + 4, byte + 4, byte + 4, byte + 8,
                         byte + 8, byte + 8, byte + 8, byte + 12, byte + 12, byte + 12, byte + 12));
    const __m256i bits = _mm256_set1_epi32(
        static_cast<int>((1u << sh) | (2u << (sh + 8)) | (4u << (sh + 16)) | (8u << (sh + 24))));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(rep, bits), bits);
    v[s] = _mm256_or_si256(v[s], _mm256_and_si256(set, _mm256_set1_epi8(16)));
  }
}

// Block decoders for the interleaved kernel: block at p[i] + off of row i -> 8 step vectors of
// unsigned quants, lane scale dw and offset mw (w = dw * q + mw).

// Symmetric types, w = d * (q - zero): the f16 scale at p[i] + off and mw = -zero * d (exact for
// the power-of-two zeros used).
HLM_IL_INLINE void SymmetricScale(const uint8_t* const* p, int64_t off, float zero, __m256& dw,
                                  __m256& mw) {
  __m256 unused;
  GatherF16Pair(p, off, dw, unused);
  mw = _mm256_mul_ps(dw, _mm256_set1_ps(-zero));
}

// The 4- and 5-bit types: nibbles at kQs, bit 4 in the u32 at kQh (5-bit only, else -1), the f16
// scale at kD, then either an f16 minimum after it (kZero = 0: w = d * q + m) or a fixed zero
// point (w = d * (q - kZero)). kStepsPerMadd keeps maddubs pair sums exact:
// 8 * 2 * 15 * 127 and 4 * 2 * 31 * 127 stay below 2^15.
template <int kBytes_, int kD, int kQs, int kQh, int kZero>
struct IlNibbles {
  static constexpr int kBytes = kBytes_, kStepsPerMadd = kQh < 0 ? 8 : 4, kBlocks = 1;
  static constexpr bool kHalves = false;
  static HLM_IL_INLINE void Decode(const uint8_t* const* p, int64_t off, __m256i* v, __m256& dw,
                                   __m256& mw) {
    TransposeNibbles(p, off + kQs, v);
    if constexpr (kQh >= 0) AddHighBits(Gather32(p, off + kQh), v);
    if constexpr (kZero != 0) {
      SymmetricScale(p, off + kD, float(kZero), dw, mw);
    } else {
      GatherF16Pair(p, off + kD, dw, mw);
    }
  }
};
using IlQ4_0 = IlNibbles<18, fmt::kQ4_0_D, fmt::kQ4_0_Qs, -1, 8>;
using IlQ4_1 = IlNibbles<20, fmt::kQ4_1_D, fmt::kQ4_1_Qs, -1, 0>;
using IlQ5_0 = IlNibbles<22, fmt::kQ5_0_D, fmt::kQ5_0_Qs, fmt::kQ5_0_Qh, 16>;
using IlQ5_1 = IlNibbles<24, fmt::kQ5_1_D, fmt::kQ5_1_Qs, fmt::kQ5_1_Qh, 0>;

#if HLM_IL_VNNI
// Q8_0, with VNNI only: products of its signed quants overflow maddubs' int16 pairs, while
// vpdpbusd sums into int32. The quants are made unsigned by +128 (xor 0x80), and the offset's
// share, 128 * dw * da * sum(a_q) = 128 * dw * sa, is taken back through mw = -128 * dw: Q8_0
// read as a symmetric type with zero 128. The f32
// rounding differs from the generic Q8_0 kernel, so results match it closely, not bit for bit.
struct IlQ8_0 {
  static constexpr int kBytes = 34, kStepsPerMadd = 8, kBlocks = 1;
  static constexpr bool kHalves = false;
  static HLM_IL_INLINE void Decode(const uint8_t* const* p, int64_t off, __m256i* v, __m256& dw,
                                   __m256& mw) {
    Transpose32(p, off + fmt::kQ8_0_Qs, v);
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) v[s] = _mm256_xor_si256(v[s], flip);
    SymmetricScale(p, off + fmt::kQ8_0_D, 128.0f, dw, mw);
  }
};
#endif

// Adds one decoded block (step vectors w, activation block b) to T token accumulators. With
// kHalves (Q6_K), elements 0-15 (steps 0-3) and 16-31 (steps 4-7) have scales of their own: dw
// and mw are then the two halves' scales, the quants are unsigned with zero point 32, and
// 32 * sum(a_q) over each half is taken off its integer sum (exactly) before the scaling.
template <int T, int kStepsPerMadd, bool kHalves = false, class WLoad>
HLM_IL_INLINE void BlockTokens(WLoad w, __m256 dw, __m256 mw, const ActQ8* a, int64_t b,
                               __m256* acc) {
  static_assert(!kHalves || 4 % kStepsPerMadd == 0);
  const int8_t* aq[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) aq[t] = a[t].q + b * 32;
  auto act4 = [&](int t, int s) {  // activation bytes 4s..4s+3 of token t in every dword
    int32_t a4;
    std::memcpy(&a4, aq[t] + 4 * s, 4);
    return _mm256_set1_epi32(a4);
  };
  __m256i isum[T], ihi[T];  // ihi: the second half's sums (kHalves)
#if HLM_IL_VNNI
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) isum[t] = HLM_IL_DPBUSD(_mm256_setzero_si256(), w(0), act4(t, 0));
#pragma GCC unroll 8
  for (int s = 1; s < 8; ++s) {
    const __m256i wv = w(s);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if (kHalves && s >= 4) {
        ihi[t] = HLM_IL_DPBUSD(s == 4 ? _mm256_setzero_si256() : ihi[t], wv, act4(t, s));
      } else {
        isum[t] = HLM_IL_DPBUSD(isum[t], wv, act4(t, s));
      }
    }
  }
#else
  const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
  for (int g = 0; g < 8; g += kStepsPerMadd) {
    __m256i s16[T];
#pragma GCC unroll 8
    for (int k = 0; k < kStepsPerMadd; ++k) {
      const __m256i wv = w(g + k);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i p = _mm256_maddubs_epi16(wv, act4(t, g + k));
        // Saturating add (never saturates here): keeps GCC from re-associating the sums into
        // a tree that needs more registers than AVX2 has.
        s16[t] = k == 0 ? p : _mm256_adds_epi16(s16[t], p);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256i s32 = _mm256_madd_epi16(s16[t], ones);
      if (kHalves && g >= 4) {
        ihi[t] = g == 4 ? s32 : _mm256_add_epi32(ihi[t], s32);
      } else {
        isum[t] = g == 0 ? s32 : _mm256_add_epi32(isum[t], s32);
      }
    }
  }
#endif
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    const __m256 da = _mm256_broadcast_ss(a[t].d + b);
    if constexpr (kHalves) {
      const __m256i lo = _mm256_sub_epi32(isum[t], _mm256_set1_epi32(32 * a[t].h[2 * b]));
      const __m256i hi = _mm256_sub_epi32(ihi[t], _mm256_set1_epi32(32 * a[t].h[2 * b + 1]));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(dw, da), acc[t]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(mw, da), acc[t]);
    } else {
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, da), acc[t]);
      acc[t] = _mm256_fmadd_ps(mw, _mm256_broadcast_ss(a[t].s + b), acc[t]);
    }
  }
}

// Per-thread repack buffer (64-byte aligned): blocks of 8 step vectors, then dw and mw.
struct RepackScratch {
  uint8_t* wq = nullptr;
  float* dw = nullptr;
  float* mw = nullptr;
  size_t cap = 0;  // blocks
  void* mem = nullptr;
  void Reserve(int64_t nb) {
    if (static_cast<size_t>(nb) <= cap) return;
    std::free(mem);
    cap = static_cast<size_t>(nb);
    mem = std::aligned_alloc(64, cap * (kBlockBytes + 64));
    wq = static_cast<uint8_t*>(mem);
    dw = reinterpret_cast<float*>(wq + cap * kBlockBytes);
    mw = dw + 8 * cap;
  }
  ~RepackScratch() { std::free(mem); }
};

HLM_IL_INLINE void StoreTile(float* dst, size_t nr, __m256 v) {
  if (nr == kRows) {
    _mm256_storeu_ps(dst, v);
    return;
  }
  alignas(32) float tmp[8];
  _mm256_store_ps(tmp, v);
  for (size_t i = 0; i < nr; ++i) dst[i] = tmp[i];
}

// A tile reads 8 rows as 8 interleaved streams, which some hardware prefetchers (AMD Zen 4's) do
// not follow from DRAM (a 3x slowdown on a matrix that does not fit in cache). So while a tile
// is decoded, the next one, which is contiguous, is prefetched by hand: block b's share of it.
template <class Il, int kTileRows = kRows>
HLM_IL_INLINE void PrefetchNextTile(const uint8_t* const* rp, size_t row_bytes, int64_t b) {
  const char* next = reinterpret_cast<const char*>(rp[0] + kTileRows * row_bytes);
  for (int64_t o = b * kTileRows * Il::kBytes; o < (b + 1) * kTileRows * Il::kBytes; o += 64) {
    _mm_prefetch(next + o, _MM_HINT_T0);
  }
}

// Il::Decode of unit u (one block of 32 for the 32-block types, kBlocks = 1; one super-block of
// 8 blocks for the K types) of the 8 rows p, block by block to sink(j, w, dw, mw), w(s) giving
// step s of block j of the unit. The 32-block types decode into registers and pass them on.
template <class Il, class Sink>
HLM_IL_INLINE void DecodeUnit(const uint8_t* const* p, int64_t u, Sink&& sink) {
  if constexpr (Il::kBlocks == 1) {
    __m256i v[8];
    __m256 dw, mw;
    Il::Decode(p, u * Il::kBytes, v, dw, mw);
    sink(
        0, [&](int s) { return v[s]; }, dw, mw);
  } else {
    Il::Decode(p, u * Il::kBytes, sink);
  }
}

// T tokens straight from the weights (decode), one unit (DecodeUnit) at a time.
template <class Il, int T>
HLM_IL_INLINE void TileDirect(const uint8_t* const* rp, size_t row_bytes, int64_t nu,
                              const ActQ8* a, float* y, int64_t rows, size_t r, size_t nr) {
  __m256 acc[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t u = 0; u < nu; ++u) {
    PrefetchNextTile<Il>(rp, row_bytes, u);
    DecodeUnit<Il>(rp, u, [&](int j, auto w, __m256 dw, __m256 mw) {
      BlockTokens<T, Il::kStepsPerMadd, Il::kHalves>(w, dw, mw, a, Il::kBlocks * u + j, acc);
    });
  }
  for (int t = 0; t < T; ++t) StoreTile(y + t * rows + static_cast<int64_t>(r), nr, acc[t]);
}

// T tokens over a repacked tile (prefill).
template <int T, int kStepsPerMadd, bool kHalves = false>
HLM_IL_INLINE void TileRepacked(const RepackScratch& scr, int64_t nb, const ActQ8* a, float* y,
                                int64_t rows, size_t r, size_t nr) {
  __m256 acc[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i* w = reinterpret_cast<const __m256i*>(scr.wq + b * kBlockBytes);
    BlockTokens<T, kStepsPerMadd, kHalves>([&](int s) { return _mm256_load_si256(w + s); },
                                           _mm256_load_ps(scr.dw + 8 * b),
                                           _mm256_load_ps(scr.mw + 8 * b), a, b, acc);
  }
  for (int t = 0; t < T; ++t) StoreTile(y + t * rows + static_cast<int64_t>(r), nr, acc[t]);
}

// The last m < kTokTile tokens of a repacked tile (K: the largest m this instance handles).
template <int K, int kStepsPerMadd, bool kHalves = false>
HLM_IL_INLINE void TileRest(int m, const RepackScratch& scr, int64_t nb, const ActQ8* a, float* y,
                            int64_t rows, size_t r, size_t nr) {
  if constexpr (K > 0) {
    if (m == K) return TileRepacked<K, kStepsPerMadd, kHalves>(scr, nb, a, y, rows, r, nr);
    TileRest<K - 1, kStepsPerMadd, kHalves>(m, scr, nb, a, y, rows, r, nr);
  }
}

#if HLM_IL_ZMM
// With AVX-512, prefill runs on 16-row tiles: two 8-row tiles side by side in zmm vectors, so
// each activation broadcast and each scale step serves twice the rows. Every lane's arithmetic
// is the 8-row kernel's, so the results are the same bit for bit.
constexpr int kTokTile16 = 8;

// T tokens (from token t0 of the packed activations) over a repacked 16-row tile.
// Results go to rows r + i of y for the lanes i set in `keep`. With `next`, block b's share
// (next_block bytes) of the next weights to decode is fetched into L2 meanwhile, so that decode
// does not wait on memory: a batched matmul is otherwise as slow as its compute plus its reads.
// kHalves: as BlockTokens' (Q6_K).
template <int T, bool kHalves = false>
HLM_IL_INLINE void TileRepacked16(const RepackScratch& scr, int64_t nb, const ActQ8Blocks& pa,
                                  int64_t n_tok, int64_t t0, float* y, int64_t rows, size_t r,
                                  __mmask16 keep, const char* next = nullptr,
                                  int64_t next_block = 0) {
  __m512 acc[T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if (next != nullptr) {
      for (int64_t o = b * next_block; o < (b + 1) * next_block; o += 64) {
        _mm_prefetch(next + o, _MM_HINT_T1);
      }
    }
    const __m512i* w = reinterpret_cast<const __m512i*>(scr.wq + b * 2 * kBlockBytes);
    const int8_t* aq = pa.q + (b * n_tok + t0) * 32;
    auto act4 = [&](int t, int s) {
      int32_t a4;
      std::memcpy(&a4, aq + t * 32 + 4 * s, 4);
      return _mm512_set1_epi32(a4);
    };
    __m512i isum[T], ihi[T];  // ihi: the second half's sums (kHalves)
    const __m512i w0 = _mm512_load_si512(w);
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      isum[t] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, act4(t, 0));
    }
#pragma GCC unroll 8
    for (int s = 1; s < 8; ++s) {
      const __m512i wv = _mm512_load_si512(w + s);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        if (kHalves && s >= 4) {
          ihi[t] = _mm512_dpbusd_epi32(s == 4 ? _mm512_setzero_si512() : ihi[t], wv, act4(t, s));
        } else {
          isum[t] = _mm512_dpbusd_epi32(isum[t], wv, act4(t, s));
        }
      }
    }
    const __m512 dw = _mm512_load_ps(scr.dw + 16 * b), mw = _mm512_load_ps(scr.mw + 16 * b);
    const float* ad = pa.d + b * n_tok + t0;
    const float* as = pa.s + b * n_tok + t0;
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(ad[t]));
      // The zero-masked form: GCC 12 warns that the plain one's undefined pass-through may be
      // used uninitialised. The conversion is the same.
      if constexpr (kHalves) {
        const int32_t* ah = pa.h + (b * n_tok + t0 + t) * 2;
        const __m512i lo = _mm512_sub_epi32(isum[t], _mm512_set1_epi32(32 * ah[0]));
        const __m512i hi = _mm512_sub_epi32(ihi[t], _mm512_set1_epi32(32 * ah[1]));
        acc[t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, lo), sc, acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, hi),
                                 _mm512_mul_ps(mw, _mm512_set1_ps(ad[t])), acc[t]);
      } else {
        acc[t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, isum[t]), sc, acc[t]);
        acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(as[t]), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * rows + int64_t(r), keep, acc[t]);
}

template <int K, bool kHalves = false>
HLM_IL_INLINE void TileRest16(int m, const RepackScratch& scr, int64_t nb, const ActQ8Blocks& pa,
                              int64_t n_tok, int64_t t0, float* y, int64_t rows, size_t r,
                              __mmask16 keep, const char* next, int64_t next_block) {
  if constexpr (K > 0) {
    if (m == K) {
      return TileRepacked16<K, kHalves>(scr, nb, pa, n_tok, t0, y, rows, r, keep, next, next_block);
    }
    TileRest16<K - 1, kHalves>(m, scr, nb, pa, n_tok, t0, y, rows, r, keep, next, next_block);
  }
}

// Every pass over the tokens for one 16-row tile in scr (lanes `keep` stored at rows r + i); the
// first one fetches `next` (see TileRepacked16).
template <bool kHalves = false>
HLM_IL_INLINE void TilePasses16(const RepackScratch& scr, int64_t nb, const ActQ8Blocks& pa,
                                int64_t n_tok, float* y, int64_t rows, size_t r, __mmask16 keep,
                                const char* next = nullptr, int64_t next_block = 0) {
  int64_t t = 0;
  for (; t + kTokTile16 <= n_tok; t += kTokTile16, next = nullptr) {
    TileRepacked16<kTokTile16, kHalves>(scr, nb, pa, n_tok, t, y, rows, r, keep, next, next_block);
  }
  TileRest16<kTokTile16 - 1, kHalves>(int(n_tok - t), scr, nb, pa, n_tok, t, y, rows, r, keep, next,
                                      next_block);
}

// Prefill on 16-row tiles: each unit (DecodeUnit) of rows 0-7 and of rows 8-15 decoded and its
// blocks laid side by side.
template <class Il>
HLM_IL_INLINE void RowsRepacked16(const uint8_t* w, size_t row_bytes, int64_t nu, size_t r0,
                                  size_t r1, const ActQ8Blocks& pa, int64_t n_tok, float* y,
                                  int64_t rows) {
  const int64_t nb = Il::kBlocks * nu;
  static thread_local RepackScratch scr;
  scr.Reserve(2 * nb);
  for (size_t r = r0; r < r1; r += 2 * kRows) {
    const size_t nr = r1 - r < 2 * kRows ? r1 - r : 2 * kRows;
    const uint8_t* rp[16];  // rows past the end repeat the first row; their lanes are dropped
    for (size_t i = 0; i < 16; ++i) rp[i] = w + (r + (i < nr ? i : 0)) * row_bytes;
    for (int64_t u = 0; u < nu; ++u) {
      PrefetchNextTile<Il, 2 * kRows>(rp, row_bytes, u);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {  // rows 0-7 to the low halves, 8-15 to the high halves
        DecodeUnit<Il>(rp + 8 * h, u, [&](int j, auto wv, __m256 dw, __m256 mw) {
          const int64_t b = Il::kBlocks * u + j;
          uint8_t* dst = scr.wq + b * 2 * kBlockBytes;
#pragma GCC unroll 8
          for (int s = 0; s < 8; ++s) {
            _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 64 * s + 32 * h), wv(s));
          }
          _mm256_store_ps(scr.dw + 16 * b + 8 * h, dw);
          _mm256_store_ps(scr.mw + 16 * b + 8 * h, mw);
        });
      }
    }
    TilePasses16<Il::kHalves>(scr, nb, pa, n_tok, y, rows, r, __mmask16((1u << nr) - 1));
  }
}

// ---- Tiled weights (TiledWeights; laid out by ops_vnni.cc's pack_tiles) ----
// Per 16-row tile and 32-column block, kBytes bytes (a multiple of 64, so every load is one
// cache line): step groups of 16 dwords (row i in dword i), the rows' f16 scales, for Q4_1 their
// f16 minima. Decoding is shifts and masks; the lanes' arithmetic is the GGUF kernels', so the
// results are the same bit for bit.

// Q4_0 and Q4_1: 4 groups (dword i: qs[4g, 4g + 4) of row i) whose low nibbles are step g and
// high nibbles step g + 4; the scales at 256, the minima at 288 (Q4_0: zero point 8).
template <bool kMin>
struct TiledNibbles {
  static constexpr int kBytes = 320;
  static HLM_IL_INLINE void Decode(const uint8_t* p, __m512i* v, __m512& dw, __m512& mw) {
    const __m512i m = _mm512_set1_epi8(15);
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512i x = _mm512_load_si512(p + 64 * g);
      v[g] = _mm512_and_si512(x, m);
      v[g + 4] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m);
    }
    dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + 256)));
    mw = kMin ? _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + 288)))
              : _mm512_mul_ps(dw, _mm512_set1_ps(-8.0f));
  }
};
using TiledQ4_0 = TiledNibbles<false>;
using TiledQ4_1 = TiledNibbles<true>;

// Q8_0: 8 steps of quants + 128 (unsigned, as IlQ8_0 makes them), the scales at 512.
struct TiledQ8_0 {
  static constexpr int kBytes = 576;
  static HLM_IL_INLINE void Decode(const uint8_t* p, __m512i* v, __m512& dw, __m512& mw) {
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) v[s] = _mm512_load_si512(p + 64 * s);
    dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + 512)));
    mw = _mm512_mul_ps(dw, _mm512_set1_ps(-128.0f));
  }
};

// Lanes [lo, hi) of a 16-row tile.
HLM_IL_INLINE __mmask16 LaneMask(size_t lo, size_t hi) {
  return __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// T < kDirectTokens tokens straight from the tiles (decode).
template <class Tl, int T>
HLM_IL_INLINE void TileDirect16(const uint8_t* tile, int64_t nb, const ActQ8* a, float* y,
                                int64_t rows, size_t r, __mmask16 keep) {
  __m512 acc[T];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i v[8];
    __m512 dw, mw;
    Tl::Decode(tile + b * Tl::kBytes, v, dw, mw);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const int8_t* aq = a[t].q + b * 32;
      auto act4 = [&](int s) {
        int32_t a4;
        std::memcpy(&a4, aq + 4 * s, 4);
        return _mm512_set1_epi32(a4);
      };
      __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[0], act4(0));
#pragma GCC unroll 8
      for (int s = 1; s < 8; ++s) isum = _mm512_dpbusd_epi32(isum, v[s], act4(s));
      const __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps(a[t].d[b]));
      acc[t] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, isum), sc, acc[t]);
      acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a[t].s[b]), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(y + t * rows + int64_t(r), keep, acc[t]);
}

template <class Tl>
HLM_IL_INLINE void RowsTiled16(const uint8_t* tiles, int64_t nb, size_t r0, size_t r1,
                               const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok,
                               float* y, int64_t rows) {
  static thread_local RepackScratch scr;
  if (n_tok >= kDirectTokens) scr.Reserve(2 * nb);
  for (size_t r = r0 / 16 * 16; r < r1; r += 16) {
    const __mmask16 keep = LaneMask(std::max(r0, r) - r, std::min(r1, r + 16) - r);
    const uint8_t* tile = tiles + (r / 16) * size_t(nb) * Tl::kBytes;
    if (n_tok < kDirectTokens) {
      if (n_tok == 1) TileDirect16<Tl, 1>(tile, nb, acts, y, rows, r, keep);
      if (n_tok == 2) TileDirect16<Tl, 2>(tile, nb, acts, y, rows, r, keep);
      if (n_tok == 3) TileDirect16<Tl, 3>(tile, nb, acts, y, rows, r, keep);
      continue;
    }
    assert(blocks != nullptr);  // wants_blocks(): the matmul lays them out once
    for (int64_t b = 0; b < nb; ++b) {
      __m512i v[8];
      __m512 dw, mw;
      Tl::Decode(tile + b * Tl::kBytes, v, dw, mw);
      auto* dst = reinterpret_cast<__m512i*>(scr.wq + b * 2 * kBlockBytes);
#pragma GCC unroll 8
      for (int s = 0; s < 8; ++s) _mm512_store_si512(dst + s, v[s]);
      _mm512_store_ps(scr.dw + 16 * b, dw);
      _mm512_store_ps(scr.mw + 16 * b, mw);
    }
    const char* next =
        r + 16 < r1 ? reinterpret_cast<const char*>(tile + nb * Tl::kBytes) : nullptr;
    TilePasses16(scr, nb, *blocks, n_tok, y, rows, r, keep, next, Tl::kBytes);
  }
}

// vnni::matmul_tiles (ops_vnni.h) for this instantiation.
void matmul_tiles(TensorType t, const uint8_t* tiles, int64_t rows, int64_t cols, size_t r0,
                  size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok,
                  float* y) {
  const int64_t nb = cols / 32;
  switch (t) {
    case TensorType::Q8_0:
      return RowsTiled16<TiledQ8_0>(tiles, nb, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q4_0:
      return RowsTiled16<TiledQ4_0>(tiles, nb, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q4_1:
      return RowsTiled16<TiledQ4_1>(tiles, nb, r0, r1, acts, blocks, n_tok, y, rows);
    default:
      std::abort();  // callers check tile_block_bytes() first
  }
}
#endif

// Rows [r0, r1) of an interleaved-kernel matmul (cols a multiple of 32 * Il::kBlocks).
template <class Il>
HLM_IL_INLINE void RowsInterleaved(const uint8_t* w, size_t row_bytes, int64_t cols, size_t r0,
                                   size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks,
                                   int64_t n_tok, float* y, int64_t rows) {
  const int64_t nb = cols / 32, nu = nb / Il::kBlocks;
#if HLM_IL_ZMM
  if (n_tok >= kDirectTokens) {
    assert(blocks != nullptr);  // wants_blocks(): the matmul lays them out once
    return RowsRepacked16<Il>(w, row_bytes, nu, r0, r1, *blocks, n_tok, y, rows);
  }
#else
  (void)blocks;
#endif
  for (size_t r = r0; r < r1; r += kRows) {
    const size_t nr = r1 - r < kRows ? r1 - r : kRows;
    const uint8_t* rp[8];  // rows past the end repeat the first row; their lanes are dropped
    for (size_t i = 0; i < 8; ++i) rp[i] = w + (r + (i < nr ? i : 0)) * row_bytes;
    if (n_tok < kDirectTokens) {
      if (n_tok == 1) TileDirect<Il, 1>(rp, row_bytes, nu, acts, y, rows, r, nr);
      if (n_tok == 2) TileDirect<Il, 2>(rp, row_bytes, nu, acts, y, rows, r, nr);
      if (n_tok == 3) TileDirect<Il, 3>(rp, row_bytes, nu, acts, y, rows, r, nr);
      continue;
    }
    static thread_local RepackScratch scr;
    scr.Reserve(nb);
    for (int64_t u = 0; u < nu; ++u) {
      PrefetchNextTile<Il>(rp, row_bytes, u);
      DecodeUnit<Il>(rp, u, [&](int j, auto wv, __m256 dw, __m256 mw) {
        const int64_t b = Il::kBlocks * u + j;
        auto* dst = reinterpret_cast<__m256i*>(scr.wq + b * kBlockBytes);
#pragma GCC unroll 8
        for (int s = 0; s < 8; ++s) _mm256_store_si256(dst + s, wv(s));
        _mm256_store_ps(scr.dw + 8 * b, dw);
        _mm256_store_ps(scr.mw + 8 * b, mw);
      });
    }
    int64_t t = 0;
    for (; t + kTokTile <= n_tok; t += kTokTile) {
      TileRepacked<kTokTile, Il::kStepsPerMadd, Il::kHalves>(scr, nb, acts + t, y + t * rows, rows,
                                                             r, nr);
    }
    TileRest<kTokTile - 1, Il::kStepsPerMadd, Il::kHalves>(int(n_tok - t), scr, nb, acts + t,
                                                           y + t * rows, rows, r, nr);
  }
}

// ---- K types (Q4_K, Q6_K): 256-element super-blocks ----
// A super-block of 8 rows decodes into 8 blocks of 32 in the interleaved form (8 step vectors
// each) with per-row dw and mw per block, so the block kernels above serve them unchanged: Q4_K
// as w = dw * q + mw per 32 (its 6-bit scale and min), Q6_K with kHalves, dw and mw being the
// scales of the two 16-element halves (d * sc) and the zero point 32 taken off in integers.
// Decoders hand each block to a sink(j, w, dw, mw), w(s) giving step s: decode feeds the dot
// products straight from registers, prefill stores the blocks once and streams kTokTile tokens
// at a time over them.

struct IlQ4_K {
  static constexpr int kBytes = 144, kStepsPerMadd = 8, kBlocks = 8;
  static constexpr bool kHalves = false;
  // The super-block at p[i] + off of row i, block by block to sink.
  template <class Sink>
  static HLM_IL_INLINE void Decode(const uint8_t* const* p, int64_t off, Sink&& sink) {
    __m256 d, dmin;
    GatherF16Pair(p, off + fmt::kQ4_K_D, d, dmin);
    // The six-bit scales and mins of 8 rows at once, as fmt::k4_scale_min: blocks 0-3 in the
    // bytes of sc[0] / mn[0], blocks 4-7 in those of sc[1] / mn[1].
    const __m256i u0 = Gather32(p, off + fmt::kQ4_K_Scales);
    const __m256i u1 = Gather32(p, off + fmt::kQ4_K_Scales + 4);
    const __m256i u2 = Gather32(p, off + fmt::kQ4_K_Scales + 8);
    const __m256i m6 = _mm256_set1_epi8(0x3f), m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(3);
    const __m256i sc[2] = {
        _mm256_and_si256(u0, m6),
        _mm256_or_si256(_mm256_and_si256(u2, m4),
                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u0, 6), m2), 4))};
    const __m256i mn[2] = {
        _mm256_and_si256(u1, m6),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), m4),
                        _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u1, 6), m2), 4))};
    const __m256 neg_dmin = _mm256_sub_ps(_mm256_setzero_ps(), dmin);
    auto scaled = [&](const __m256i* v, int j, __m256 by) {  // byte j % 4 of v[j / 4], times by
      const __m256i x =
          _mm256_and_si256(_mm256_srli_epi32(v[j >> 2], 8 * (j & 3)), _mm256_set1_epi32(0xff));
      return _mm256_mul_ps(_mm256_cvtepi32_ps(x), by);
    };
    // Blocks 2g and 2g + 1 are the low and high nibbles of qs[32g, 32g + 32).
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      __m256i raw[8];
      Transpose32(p, off + fmt::kQ4_K_Qs + 32 * g, raw);
      sink(
          2 * g, [&](int s) { return _mm256_and_si256(raw[s], m4); }, scaled(sc, 2 * g, d),
          scaled(mn, 2 * g, neg_dmin));
      sink(
          2 * g + 1, [&](int s) { return _mm256_and_si256(_mm256_srli_epi16(raw[s], 4), m4); },
          scaled(sc, 2 * g + 1, d), scaled(mn, 2 * g + 1, neg_dmin));
    }
  }
};

struct IlQ6_K {
  // 6-bit quants: maddubs pairs reach 2 * 63 * 127, so two steps per int16 sum.
  static constexpr int kBytes = 210, kStepsPerMadd = 2, kBlocks = 8;
  static constexpr bool kHalves = true;
  // As IlQ4_K::Decode, with dw / mw the scales of the blocks' first and second 16 elements.
  template <class Sink>
  static HLM_IL_INLINE void Decode(const uint8_t* const* p, int64_t off, Sink&& sink) {
    const __m256 d = GatherF16(p, off + fmt::kQ6_K_D);
    __m256i sc[4];  // int8 scale 4k + c of every row in byte c of sc[k]
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) sc[k] = Gather32(p, off + fmt::kQ6_K_Scales + 4 * k);
    auto scale = [&](int i) {  // d * scales[i], sign-extended
      const __m256i x = _mm256_srai_epi32(_mm256_slli_epi32(sc[i >> 2], 24 - 8 * (i & 3)), 24);
      return _mm256_mul_ps(_mm256_cvtepi32_ps(x), d);
    };
    // Half h: block 4h + k takes its low 4 bits from nibble k >> 1 of ql[64h + 32(k & 1) + l]
    // and its top 2 from bits 2k of qh[32h + l].
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      // Blocks in order (the sums' order must not depend on the kernel), so both ql halves live.
      __m256i qh[8], ql[2][8];
      Transpose32(p, off + fmt::kQ6_K_Qh + 32 * h, qh);
      Transpose32(p, off + fmt::kQ6_K_Ql + 64 * h, ql[0]);
      Transpose32(p, off + fmt::kQ6_K_Ql + 64 * h + 32, ql[1]);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        sink(
            4 * h + k,
            [&](int s) {
              const __m256i l = ql[k & 1][s];
              const __m256i nib = _mm256_and_si256(k >> 1 ? _mm256_srli_epi16(l, 4) : l, m4);
              const __m256i top =
                  k == 3 ? _mm256_srli_epi16(qh[s], 2) : _mm256_slli_epi16(qh[s], 4 - 2 * k);
              return _mm256_or_si256(nib, _mm256_and_si256(top, m30));
            },
            scale(8 * h + 2 * k), scale(8 * h + 2 * k + 1));
      }
    }
  }
};

#if HLM_IL_VNNI
// vnni::matmul_rows (ops_vnni.h) for this instantiation, which ops_vnni.cc dispatches to.
void matmul_rows(TensorType t, const void* w, size_t row_bytes, int64_t rows, int64_t cols,
                 size_t r0, size_t r1, const ActQ8* acts, const ActQ8Blocks* blocks, int64_t n_tok,
                 float* y) {
  const auto* p = static_cast<const uint8_t*>(w);
  switch (t) {
    case TensorType::Q8_0:
      return RowsInterleaved<IlQ8_0>(p, row_bytes, cols, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q4_0:
      return RowsInterleaved<IlQ4_0>(p, row_bytes, cols, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q4_1:
      return RowsInterleaved<IlQ4_1>(p, row_bytes, cols, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q5_0:
      return RowsInterleaved<IlQ5_0>(p, row_bytes, cols, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q5_1:
      return RowsInterleaved<IlQ5_1>(p, row_bytes, cols, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q4_K:
      return RowsInterleaved<IlQ4_K>(p, row_bytes, cols, r0, r1, acts, blocks, n_tok, y, rows);
    case TensorType::Q6_K:
      return RowsInterleaved<IlQ6_K>(p, row_bytes, cols, r0, r1, acts, blocks, n_tok, y, rows);
    default:
      std::abort();  // callers check handles() first
  }
}
#endif
