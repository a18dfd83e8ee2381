// Scalar reference decoding and round-to-nearest quantisation of the ggml block formats: the
// oracle the SIMD kernels are tested against, and the quantisers the model writers use.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "ops/ops.h"
#include "ops/quant_formats.h"

namespace hlm::ops {
namespace {

using namespace fmt;

void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ8_0_D);
  for (int i = 0; i < 32; ++i) y[i] = d * static_cast<float>(static_cast<int8_t>(b[kQ8_0_Qs + i]));
}

void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ4_0_D);
  for (int i = 0; i < 16; ++i) {
    const uint8_t q = b[kQ4_0_Qs + i];
    y[i] = d * static_cast<float>((q & 15) - 8);
    y[i + 16] = d * static_cast<float>((q >> 4) - 8);
  }
}

void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ4_1_D), m = load_f16(b + kQ4_1_M);
  for (int i = 0; i < 16; ++i) {
    const uint8_t q = b[kQ4_1_Qs + i];
    y[i] = d * static_cast<float>(q & 15) + m;
    y[i + 16] = d * static_cast<float>(q >> 4) + m;
  }
}

void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ5_0_D);
  const uint32_t qh = load_u32(b + kQ5_0_Qh);
  for (int i = 0; i < 16; ++i) {
    const uint8_t q = b[kQ5_0_Qs + i];
    const int lo = (q & 15) | (((qh >> i) & 1) << 4);
    const int hi = (q >> 4) | (((qh >> (i + 16)) & 1) << 4);
    y[i] = d * static_cast<float>(lo - 16);
    y[i + 16] = d * static_cast<float>(hi - 16);
  }
}

void dequant_q5_1(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ5_1_D), m = load_f16(b + kQ5_1_M);
  const uint32_t qh = load_u32(b + kQ5_1_Qh);
  for (int i = 0; i < 16; ++i) {
    const uint8_t q = b[kQ5_1_Qs + i];
    const int lo = (q & 15) | (((qh >> i) & 1) << 4);
    const int hi = (q >> 4) | (((qh >> (i + 16)) & 1) << 4);
    y[i] = d * static_cast<float>(lo) + m;
    y[i + 16] = d * static_cast<float>(hi) + m;
  }
}

void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ4_K_D), dmin = load_f16(b + kQ4_K_Dmin);
  const uint8_t* qs = b + kQ4_K_Qs;
  for (int g = 0; g < 4; ++g) {
    int sc0, m0, sc1, m1;
    k4_scale_min(2 * g, b + kQ4_K_Scales, &sc0, &m0);
    k4_scale_min(2 * g + 1, b + kQ4_K_Scales, &sc1, &m1);
    for (int l = 0; l < 32; ++l) {
      const uint8_t q = qs[32 * g + l];
      y[64 * g + l] =
          d * static_cast<float>(sc0) * static_cast<float>(q & 15) - dmin * static_cast<float>(m0);
      y[64 * g + 32 + l] =
          d * static_cast<float>(sc1) * static_cast<float>(q >> 4) - dmin * static_cast<float>(m1);
    }
  }
}

void dequant_q5_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ5_K_D), dmin = load_f16(b + kQ5_K_Dmin);
  const uint8_t* qs = b + kQ5_K_Qs;
  const uint8_t* qh = b + kQ5_K_Qh;
  for (int g = 0; g < 4; ++g) {
    int sc0, m0, sc1, m1;
    k4_scale_min(2 * g, b + kQ5_K_Scales, &sc0, &m0);
    k4_scale_min(2 * g + 1, b + kQ5_K_Scales, &sc1, &m1);
    for (int l = 0; l < 32; ++l) {
      const uint8_t q = qs[32 * g + l];
      const int lo = (q & 15) | (((qh[l] >> (2 * g)) & 1) << 4);
      const int hi = (q >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4);
      y[64 * g + l] =
          d * static_cast<float>(sc0) * static_cast<float>(lo) - dmin * static_cast<float>(m0);
      y[64 * g + 32 + l] =
          d * static_cast<float>(sc1) * static_cast<float>(hi) - dmin * static_cast<float>(m1);
    }
  }
}

void dequant_q6_k(const uint8_t* b, float* y) {
  const float d = load_f16(b + kQ6_K_D);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b + kQ6_K_Ql + 64 * h;
    const uint8_t* qh = b + kQ6_K_Qh + 32 * h;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + kQ6_K_Scales + 8 * h);
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) {
        const int lo = (ql[32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
        const int q = (lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
        y[128 * h + 32 * k + l] =
            d * static_cast<float>(sc[2 * k + l / 16]) * static_cast<float>(q);
      }
    }
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_decoder(TensorType t) {
  switch (t) {
    case TensorType::Q8_0:
      return dequant_q8_0;
    case TensorType::Q4_0:
      return dequant_q4_0;
    case TensorType::Q4_1:
      return dequant_q4_1;
    case TensorType::Q5_0:
      return dequant_q5_0;
    case TensorType::Q5_1:
      return dequant_q5_1;
    case TensorType::Q4_K:
      return dequant_q4_k;
    case TensorType::Q5_K:
      return dequant_q5_k;
    case TensorType::Q6_K:
      return dequant_q6_k;
    default:
      return nullptr;
  }
}

// ---- Quantisers (round to nearest, ggml's reference rules) ----

void quant_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t dh = f32_to_f16(d);
  std::memcpy(b + kQ8_0_D, &dh, 2);
  for (int i = 0; i < 32; ++i) {
    b[kQ8_0_Qs + i] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[i] * id)));
  }
}

// Returns the element of largest magnitude, with its sign.
float signed_absmax(const float* x) {
  float amax = 0.0f, mx = 0.0f;
  for (int i = 0; i < 32; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      mx = x[i];
    }
  }
  return mx;
}

void min_max(const float* x, float* mn, float* mx) {
  *mn = x[0];
  *mx = x[0];
  for (int i = 1; i < 32; ++i) {
    *mn = std::min(*mn, x[i]);
    *mx = std::max(*mx, x[i]);
  }
}

// Symmetric 4/5-bit: d = max / -(2^(bits-1)), q = clamp(round(x / d) + offset).
void quant_sym(const float* x, int bits, uint8_t* dptr, uint8_t* qs, uint8_t* qh) {
  const int offset = 1 << (bits - 1), qmax = (1 << bits) - 1;
  const float d = signed_absmax(x) / static_cast<float>(-offset);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t dh = f32_to_f16(d);
  std::memcpy(dptr, &dh, 2);
  uint32_t h = 0;
  for (int i = 0; i < 16; ++i) {
    const int q0 = std::clamp(static_cast<int>(std::floor(x[i] * id + offset + 0.5f)), 0, qmax);
    const int q1 =
        std::clamp(static_cast<int>(std::floor(x[i + 16] * id + offset + 0.5f)), 0, qmax);
    qs[i] = static_cast<uint8_t>((q0 & 15) | ((q1 & 15) << 4));
    h |= static_cast<uint32_t>((q0 >> 4) & 1) << i;
    h |= static_cast<uint32_t>((q1 >> 4) & 1) << (i + 16);
  }
  if (qh) std::memcpy(qh, &h, 4);
}

// Asymmetric 4/5-bit: m = min, d = (max - min) / (2^bits - 1), q = round((x - m) / d).
void quant_asym(const float* x, int bits, uint8_t* dptr, uint8_t* mptr, uint8_t* qs, uint8_t* qh) {
  const int qmax = (1 << bits) - 1;
  float mn, mx;
  min_max(x, &mn, &mx);
  const float d = (mx - mn) / static_cast<float>(qmax);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const uint16_t dh = f32_to_f16(d), mh = f32_to_f16(mn);
  std::memcpy(dptr, &dh, 2);
  std::memcpy(mptr, &mh, 2);
  uint32_t h = 0;
  for (int i = 0; i < 16; ++i) {
    const int q0 = std::clamp(static_cast<int>(std::floor((x[i] - mn) * id + 0.5f)), 0, qmax);
    const int q1 = std::clamp(static_cast<int>(std::floor((x[i + 16] - mn) * id + 0.5f)), 0, qmax);
    qs[i] = static_cast<uint8_t>((q0 & 15) | ((q1 & 15) << 4));
    h |= static_cast<uint32_t>((q0 >> 4) & 1) << i;
    h |= static_cast<uint32_t>((q1 >> 4) & 1) << (i + 16);
  }
  if (qh) std::memcpy(qh, &h, 4);
}

// Q4_K, one 256-element super-block: each 32-element sub-block j gets the affine map
// x ~ step_j * q - off_j over q in 0..15 spanning [min(x, 0), max(x)] (the format only subtracts
// an offset, so a sub-block above zero starts at zero); steps and offsets are stored as 6-bit
// multiples of the super-block's d and dmin, rounded up so that the stored grid still covers the
// sub-block, and q is chosen against the stored values.
void quant_q4_k(const float* x, uint8_t* b) {
  // f16 rounds to within 2^-11: stored super-scales are raised by 2^-10 so that 63 multiples
  // still reach the largest sub-block.
  constexpr float kUp = 1.0f + 1.0f / 1024.0f;
  float lo[8], hi[8], max_off = 0.0f;
  for (int j = 0; j < 8; ++j) {
    lo[j] = 0.0f;
    hi[j] = x[32 * j];
    for (int i = 0; i < 32; ++i) {
      lo[j] = std::min(lo[j], x[32 * j + i]);
      hi[j] = std::max(hi[j], x[32 * j + i]);
    }
    max_off = std::max(max_off, -lo[j]);
  }
  const uint16_t mh = f32_to_f16(max_off / 63.0f * kUp);
  const float dmin = f16_to_f32(mh);
  int sc[8], m[8];
  float top[8], max_top = 0.0f;
  for (int j = 0; j < 8; ++j) {
    m[j] = dmin > 0.0f ? std::clamp(static_cast<int>(std::ceil(-lo[j] / dmin)), 0, 63) : 0;
    top[j] = hi[j] + dmin * static_cast<float>(m[j]);  // the sub-block's span above its offset
    max_top = std::max(max_top, top[j]);
  }
  const uint16_t dh = f32_to_f16(max_top / (15.0f * 63.0f) * kUp);
  const float d = f16_to_f32(dh);
  std::memcpy(b + kQ4_K_D, &dh, 2);
  std::memcpy(b + kQ4_K_Dmin, &mh, 2);
  for (int j = 0; j < 8; ++j) {
    sc[j] = d > 0.0f ? std::clamp(static_cast<int>(std::ceil(top[j] / (15.0f * d))), 0, 63) : 0;
  }
  uint8_t* s = b + kQ4_K_Scales;
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
  uint8_t* qs = b + kQ4_K_Qs;
  for (int j = 0; j < 8; ++j) {
    const float step = d * static_cast<float>(sc[j]), off = dmin * static_cast<float>(m[j]);
    const float inv = step > 0.0f ? 1.0f / step : 0.0f;
    for (int l = 0; l < 32; ++l) {
      // x + off >= 0 on the grid, so truncating after adding 0.5 rounds (and needs no libm call).
      const int q = std::clamp(static_cast<int>((x[32 * j + l] + off) * inv + 0.5f), 0, 15);
      uint8_t& byte = qs[32 * (j / 2) + l];
      byte = static_cast<uint8_t>(j % 2 ? (byte & 0x0f) | (q << 4) : q);
    }
  }
}

// Q6_K, one 256-element super-block: each 16-element sub-block gets a symmetric scale that maps
// its largest-magnitude element to -32 (as Q4_0 does with -8), stored as an int8 multiple of the
// super-block's d; q is chosen against the stored scale.
void quant_q6_k(const float* x, uint8_t* b) {
  float scale[16], max_abs = 0.0f;
  for (int j = 0; j < 16; ++j) {
    float amax = 0.0f, mx = 0.0f;
    for (int i = 0; i < 16; ++i) {
      if (std::fabs(x[16 * j + i]) > amax) {
        amax = std::fabs(x[16 * j + i]);
        mx = x[16 * j + i];
      }
    }
    scale[j] = mx / -32.0f;
    max_abs = std::max(max_abs, std::fabs(scale[j]));
  }
  const uint16_t dh = f32_to_f16(max_abs / 127.0f);
  std::memcpy(b + kQ6_K_D, &dh, 2);
  const float d = f16_to_f32(dh);
  std::memset(b, 0, kQ6_K_Scales);
  for (int j = 0; j < 16; ++j) {
    const int sc =
        d > 0.0f ? std::clamp(static_cast<int>(std::lround(scale[j] / d)), -128, 127) : 0;
    b[kQ6_K_Scales + j] = static_cast<uint8_t>(static_cast<int8_t>(sc));
    const float step = d * static_cast<float>(sc);
    const float inv = step != 0.0f ? 1.0f / step : 0.0f;
    for (int i = 0; i < 16; ++i) {
      const int e = 16 * j + i, h = e / 128, k = (e % 128) / 32, l = e % 32;
      const int q = std::clamp(static_cast<int>(x[e] * inv + 32.5f), 0, 63);  // as Q4_K's
      b[kQ6_K_Ql + 64 * h + 32 * (k & 1) + l] |= static_cast<uint8_t>((q & 15) << (4 * (k >> 1)));
      b[kQ6_K_Qh + 32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * k));
    }
  }
}

}  // namespace

void dequantize_row(TensorType t, const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  switch (t) {
    case TensorType::F32:
      std::memcpy(dst, p, static_cast<size_t>(n) * 4);
      return;
    case TensorType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(p + 2 * i));
      return;
    case TensorType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(p + 2 * i));
      return;
    default:
      break;
  }
  const BlockFn fn = block_decoder(t);
  if (!fn) std::abort();  // unsupported type: callers check info(t).supported first
  const auto& ti = info(t);
  assert(n % ti.block_size == 0);
  for (int64_t b = 0; b < n / ti.block_size; ++b) {
    fn(p + b * ti.type_size, dst + b * ti.block_size);
  }
}

double dot_reference(TensorType t, const void* row, const float* x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize_row(t, row, w.data(), n);
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(w[i]) * static_cast<double>(x[i]);
  return acc;
}

void quantize_row(TensorType t, const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  switch (t) {
    case TensorType::F32:
      std::memcpy(p, src, static_cast<size_t>(n) * 4);
      return;
    case TensorType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_f16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    case TensorType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    default:
      break;
  }
  const auto& ti = info(t);
  if (t == TensorType::Q4_K || t == TensorType::Q6_K) {
    assert(n % kQK == 0);
    for (int64_t b = 0; b < n / kQK; ++b) {
      (t == TensorType::Q4_K ? quant_q4_k : quant_q6_k)(src + kQK * b, p + b * ti.type_size);
    }
    return;
  }
  assert(n % 32 == 0);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* x = src + 32 * b;
    uint8_t* o = p + b * ti.type_size;
    switch (t) {
      case TensorType::Q8_0:
        quant_q8_0(x, o);
        break;
      case TensorType::Q4_0:
        quant_sym(x, 4, o + kQ4_0_D, o + kQ4_0_Qs, nullptr);
        break;
      case TensorType::Q5_0:
        quant_sym(x, 5, o + kQ5_0_D, o + kQ5_0_Qs, o + kQ5_0_Qh);
        break;
      case TensorType::Q4_1:
        quant_asym(x, 4, o + kQ4_1_D, o + kQ4_1_M, o + kQ4_1_Qs, nullptr);
        break;
      case TensorType::Q5_1:
        quant_asym(x, 5, o + kQ5_1_D, o + kQ5_1_M, o + kQ5_1_Qs, o + kQ5_1_Qh);
        break;
      default:
        std::abort();  // check can_quantize first
    }
  }
}

bool can_quantize(TensorType t) {
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
    case TensorType::Q6_K:
      return true;
    default:
      return false;
  }
}

}  // namespace hlm::ops
