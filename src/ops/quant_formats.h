// Byte layouts of the ggml block formats hlm reads, and the scalar half-float helpers they use.
// Blocks are addressed as raw bytes (offsets below) and read with memcpy, because weight rows
// in a mapped file need not be aligned for the field types.
#pragma once

#include <cstdint>
#include <cstring>

namespace hlm::ops::fmt {

// ---- Scalar half / bfloat conversions (round to nearest even) ----

inline float f16_to_f32(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}
inline uint16_t f32_to_f16(float f) {
  const _Float16 v = static_cast<_Float16>(f);
  uint16_t h;
  std::memcpy(&h, &v, 2);
  return h;
}
inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

// ---- Block layouts (byte offsets within one block) ----
// Element i of a 32-block with 4-bit quants: i < 16 is the low nibble of qs[i], i >= 16 the
// high nibble of qs[i - 16]. For the 5-bit types bit 4 of element i is bit i of the u32 qh.

// Q8_0: { f16 d; int8 qs[32]; }                      x = d * q
constexpr int kQ8_0_D = 0, kQ8_0_Qs = 2;
// Q4_0: { f16 d; u8 qs[16]; }                        x = d * (q - 8)
constexpr int kQ4_0_D = 0, kQ4_0_Qs = 2;
// Q4_1: { f16 d; f16 m; u8 qs[16]; }                 x = d * q + m
constexpr int kQ4_1_D = 0, kQ4_1_M = 2, kQ4_1_Qs = 4;
// Q5_0: { f16 d; u8 qh[4]; u8 qs[16]; }              x = d * (q - 16)
constexpr int kQ5_0_D = 0, kQ5_0_Qh = 2, kQ5_0_Qs = 6;
// Q5_1: { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }       x = d * q + m
constexpr int kQ5_1_D = 0, kQ5_1_M = 2, kQ5_1_Qh = 4, kQ5_1_Qs = 8;

// K types: 256-element super-blocks of 8 (Q4_K, Q5_K) or 16 (Q6_K) sub-blocks.
constexpr int kQK = 256;
// Q4_K: { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }
//   sub-block j (32 elements) has 6-bit scale sc_j and min m_j (see k4_scale_min);
//   x = d * sc_j * q - dmin * m_j; elements 64g + l (l < 32) are the low nibbles of qs[32g + l],
//   elements 64g + 32 + l the high nibbles.
constexpr int kQ4_K_D = 0, kQ4_K_Dmin = 2, kQ4_K_Scales = 4, kQ4_K_Qs = 16;
// Q5_K: { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }
//   as Q4_K, plus bit 4 of element 32j + l is bit j of qh[l].
constexpr int kQ5_K_D = 0, kQ5_K_Dmin = 2, kQ5_K_Scales = 4, kQ5_K_Qh = 16, kQ5_K_Qs = 48;
// Q6_K: { u8 ql[128]; u8 qh[64]; int8 scales[16]; f16 d; }
//   two halves of 128; in half h, for l < 32 and k < 4, element 128h + 32k + l is
//   ((ql[64h + 32(k&1) + l] >> 4(k>>1)) & 15 | ((qh[32h + l] >> 2k) & 3) << 4) - 32,
//   scaled by d * scales[8h + 2k + l/16].
constexpr int kQ6_K_Ql = 0, kQ6_K_Qh = 128, kQ6_K_Scales = 192, kQ6_K_D = 208;

// Unpacks the 6-bit scale and min of sub-block j (0..7) from the 12-byte Q4_K/Q5_K array.
inline void k4_scale_min(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

}  // namespace hlm::ops::fmt
