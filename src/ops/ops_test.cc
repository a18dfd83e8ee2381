// Unit tests for the ops kernels: hand-made blocks decode to known values, every SIMD target
// agrees with the scalar reference, and matmul agrees with row-by-row dot.
#include "ops/ops.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "hwy/targets.h"
#include "ops/quant_formats.h"

namespace hlm::ops {
namespace {

using fmt::f32_to_f16;

constexpr TensorType kAllTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                                    TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1,
                                    TensorType::Q5_0, TensorType::Q5_1, TensorType::Q4_K,
                                    TensorType::Q5_K, TensorType::Q6_K};

bool is_k(TensorType t) {
  return t == TensorType::Q4_K || t == TensorType::Q5_K || t == TensorType::Q6_K;
}
bool is_float(TensorType t) {
  return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16;
}

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Random row of type t with n elements: quantised Gaussian data, or for the K types random
// quant bytes with sane fp16 super-block scales.
std::vector<uint8_t> random_row(TensorType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(row_bytes(t, n));
  if (!is_k(t)) {
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = g(rng);
    quantize_row(t, x.data(), row.data(), n);
    return row;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  for (auto& b : row) b = static_cast<uint8_t>(byte(rng));
  const int bs = info(t).type_size;
  for (int64_t b = 0; b < n / 256; ++b) {
    uint8_t* blk = row.data() + b * bs;
    if (t == TensorType::Q6_K) {
      put16(blk + fmt::kQ6_K_D, f32_to_f16(scale(rng)));
    } else {
      put16(blk + fmt::kQ4_K_D, f32_to_f16(scale(rng)));
      put16(blk + fmt::kQ4_K_Dmin, f32_to_f16(scale(rng)));
    }
  }
  return row;
}

// rows random rows of type t (random_row), back to back.
std::vector<uint8_t> random_matrix(TensorType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> w;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = random_row(t, cols, rng);
    w.insert(w.end(), row.begin(), row.end());
  }
  return w;
}

// The rows x cols matrix w of type t in f32.
std::vector<float> dequantize_matrix(TensorType t, const std::vector<uint8_t>& w, int64_t rows,
                                     int64_t cols) {
  std::vector<float> wf(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(t, w.data() + r * row_bytes(t, cols), wf.data() + r * cols, cols);
  }
  return wf;
}

std::vector<float> random_vec(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = g(rng);
  return x;
}

// The activation requantisation dot() applies, in scalar: blocks of 32, d = amax / 127,
// q = round-half-even(x * 127 / amax).
std::vector<float> requantize(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float am = 0.0f;
    for (size_t i = 0; i < 32; ++i) am = std::max(am, std::fabs(x[32 * b + i]));
    const float d = am / 127.0f, id = am > 0.0f ? 127.0f / am : 0.0f;
    for (size_t i = 0; i < 32; ++i) out[32 * b + i] = d * std::nearbyint(x[32 * b + i] * id);
  }
  return out;
}

// Runs fn once per compiled target this CPU supports, with dispatch forced to that target and
// the CPU extensions beyond it off (they replace some targets' kernels; tested separately).
template <class Fn>
void for_each_target(Fn fn) {
  set_cpu_extensions(false);
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    ASSERT_STREQ(dispatch_target_name(), hwy::TargetName(target));
    fn();
  }
  hwy::SetSupportedTargetsForTest(0);
  set_cpu_extensions(true);
}

// ---- Hand-made blocks ----

TEST(Dequantize, FloatTypes) {
  const uint16_t h[4] = {0x3C00, 0xC000, 0x3800, 0x0001};  // 1, -2, 0.5, 2^-24
  float y[4];
  dequantize_row(TensorType::F16, h, y, 4);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[2], 0.5f);
  EXPECT_EQ(y[3], std::ldexp(1.0f, -24));
  const uint16_t b[3] = {0x3F80, 0xC040, 0x3E00};  // 1, -3, 0.125
  dequantize_row(TensorType::BF16, b, y, 3);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -3.0f);
  EXPECT_EQ(y[2], 0.125f);
}

TEST(Dequantize, Q8_0) {
  uint8_t blk[34];
  put16(blk, 0x3800);  // d = 0.5
  for (int i = 0; i < 32; ++i) blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(i - 16));
  float y[32];
  dequantize_row(TensorType::Q8_0, blk, y, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.5f * static_cast<float>(i - 16)) << i;
}

TEST(Dequantize, Q4_0AndQ4_1) {
  uint8_t b0[18], b1[20];
  put16(b0, 0x4000);      // d = 2
  put16(b1, 0x3800);      // d = 0.5
  put16(b1 + 2, 0xBC00);  // m = -1
  for (int i = 0; i < 16; ++i) {
    b0[2 + i] = b1[4 + i] = static_cast<uint8_t>(i | ((15 - i) << 4));
  }
  float y0[32], y1[32];
  dequantize_row(TensorType::Q4_0, b0, y0, 32);
  dequantize_row(TensorType::Q4_1, b1, y1, 32);
  EXPECT_EQ(y0[0], -16.0f);
  EXPECT_EQ(y0[15], 14.0f);
  EXPECT_EQ(y0[16], 14.0f);
  EXPECT_EQ(y1[0], -1.0f);
  EXPECT_EQ(y1[16], 6.5f);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(y0[i], 2.0f * (i - 8));
    EXPECT_EQ(y0[i + 16], 2.0f * (7 - i));
    EXPECT_EQ(y1[i], 0.5f * i - 1.0f);
    EXPECT_EQ(y1[i + 16], 0.5f * (15 - i) - 1.0f);
  }
}

TEST(Dequantize, Q5_0AndQ5_1) {
  uint8_t b0[22], b1[24];
  put16(b0, 0x3C00);                // d = 1
  put16(b1, 0x3C00);                // d = 1
  put16(b1 + 2, 0x4000);            // m = 2
  const uint32_t qh = 0x0000FFFFu;  // elements 0..15 get bit 4, 16..31 do not
  std::memcpy(b0 + 2, &qh, 4);
  std::memcpy(b1 + 4, &qh, 4);
  for (int i = 0; i < 16; ++i) b0[6 + i] = b1[8 + i] = static_cast<uint8_t>(i | (3 << 4));
  float y0[32], y1[32];
  dequantize_row(TensorType::Q5_0, b0, y0, 32);
  dequantize_row(TensorType::Q5_1, b1, y1, 32);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(y0[i], static_cast<float>(i));           // (16 + i) - 16
    EXPECT_EQ(y0[i + 16], -13.0f);                     // 3 - 16
    EXPECT_EQ(y1[i], static_cast<float>(16 + i + 2));  // (16 + i) + 2
    EXPECT_EQ(y1[i + 16], 5.0f);
  }
}

// Packs 6-bit scales and mins into the 12-byte K layout.
void pack_k4_scales(const int* sc, const int* m, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

TEST(Dequantize, Q4_KAndQ5_K) {
  const int sc[8] = {1, 2, 3, 63, 17, 33, 48, 5};
  const int m[8] = {0, 7, 63, 1, 20, 40, 2, 60};
  uint8_t b4[144] = {}, b5[176] = {};
  put16(b4, 0x3800);      // d = 0.5
  put16(b4 + 2, 0x3400);  // dmin = 0.25
  std::memcpy(b5, b4, 4);
  pack_k4_scales(sc, m, b4 + 4);
  pack_k4_scales(sc, m, b5 + 4);
  // q(e) = e % 16 for the 4-bit part; Q5_K adds 16 on odd elements.
  for (int e = 0; e < 256; ++e) {
    const int g = e / 64, l = e % 32, hi = (e % 64) >= 32;
    b4[16 + 32 * g + l] |= static_cast<uint8_t>((e % 16) << (4 * hi));
    b5[48 + 32 * g + l] |= static_cast<uint8_t>((e % 16) << (4 * hi));
    if (e % 2) b5[16 + l] |= static_cast<uint8_t>(1 << (e / 32));
  }
  float y4[256], y5[256];
  dequantize_row(TensorType::Q4_K, b4, y4, 256);
  dequantize_row(TensorType::Q5_K, b5, y5, 256);
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32;
    EXPECT_EQ(y4[e], 0.5f * sc[j] * (e % 16) - 0.25f * m[j]) << e;
    EXPECT_EQ(y5[e], 0.5f * sc[j] * (e % 16 + 16 * (e % 2)) - 0.25f * m[j]) << e;
  }
  EXPECT_EQ(y4[3 * 32 + 5], 0.5f * 63 * 5 - 0.25f * 1);
}

TEST(Dequantize, Q6_K) {
  uint8_t b[210] = {};
  put16(b + 208, 0x3800);  // d = 0.5
  for (int i = 0; i < 16; ++i) b[192 + i] = static_cast<uint8_t>(static_cast<int8_t>(i - 8));
  // Element e holds 6-bit value q(e) = (e * 7) % 64, i.e. e*7%64 - 32 after the offset.
  for (int e = 0; e < 256; ++e) {
    const int q = (e * 7) % 64, h = e / 128, k = (e % 128) / 32, l = e % 32;
    b[64 * h + 32 * (k & 1) + l] |= static_cast<uint8_t>((q & 15) << (4 * (k >> 1)));
    b[128 + 32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * k));
  }
  float y[256];
  dequantize_row(TensorType::Q6_K, b, y, 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y[e], 0.5f * static_cast<float>(e / 16 - 8) * static_cast<float>((e * 7) % 64 - 32))
        << e;
  }
}

TEST(Quantize, RoundTripWithinHalfStep) {
  std::mt19937 rng(1);
  for (TensorType t : kAllTypes) {
    if (!can_quantize(t) || is_float(t) || is_k(t)) continue;  // K types: KTypesStayOnTheirGrid
    SCOPED_TRACE(std::string(info(t).name));
    const auto x = random_vec(256, rng);
    std::vector<uint8_t> row(row_bytes(t, 256));
    quantize_row(t, x.data(), row.data(), 256);
    std::vector<float> y(256);
    dequantize_row(t, row.data(), y.data(), 256);
    const int levels = t == TensorType::Q8_0                              ? 254
                       : (t == TensorType::Q4_0 || t == TensorType::Q4_1) ? 15
                                                                          : 31;
    for (int b = 0; b < 8; ++b) {
      float mn = x[32 * b], mx = x[32 * b];
      for (int i = 0; i < 32; ++i) {
        mn = std::min(mn, x[32 * b + i]);
        mx = std::max(mx, x[32 * b + i]);
      }
      // Half a quantisation step, plus slack for the fp16-rounded scale and offset.
      const float step = (mx - mn) / static_cast<float>(levels) *
                         (t == TensorType::Q4_0 || t == TensorType::Q5_0 ? 2.0f : 1.0f);
      for (int i = 0; i < 32; ++i) {
        EXPECT_NEAR(y[32 * b + i], x[32 * b + i],
                    0.5f * step * 1.02f + 2e-3f * std::fabs(x[32 * b + i]) + 1e-3f);
      }
    }
  }
}

// The K-type quantisers: every element decodes to within half a step of the sub-block's stored
// grid (Q6_K: one step, as the element opposite the largest clamps at +31 as Q4_0's does at +7),
// and the stored step is no coarser than the sub-block's range needs (plus one unit of the
// super-block scale, which steps are multiples of). Rows mix Gaussian sub-blocks with
// all-positive, all-negative, constant and zero ones.
TEST(Quantize, KTypesStayOnTheirGrid) {
  std::mt19937 rng(7);
  for (TensorType t : {TensorType::Q4_K, TensorType::Q6_K}) {
    SCOPED_TRACE(std::string(info(t).name));
    ASSERT_TRUE(can_quantize(t));
    const bool q4 = t == TensorType::Q4_K;
    const int sub = q4 ? 32 : 16, levels = q4 ? 15 : 32;
    for (int trial = 0; trial < 20; ++trial) {
      auto x = random_vec(256, rng);
      const int kind = trial % 5;  // 0: Gaussian, 1: shifted up, 2: down, 3: constant, 4: zero
      for (int i = 0; i < 64; ++i) {
        x[i] = kind == 1   ? x[i] + 5.0f
               : kind == 2 ? x[i] - 5.0f
               : kind == 3 ? 0.7f
               : kind == 4 ? 0
                           : x[i];
      }
      std::vector<uint8_t> row(row_bytes(t, 256));
      quantize_row(t, x.data(), row.data(), 256);
      std::vector<float> y(256);
      dequantize_row(t, row.data(), y.data(), 256);
      const float d = fmt::load_f16(row.data() + (q4 ? fmt::kQ4_K_D : fmt::kQ6_K_D));
      for (int j = 0; j < 256 / sub; ++j) {
        float step;
        if (q4) {
          int sc, m;
          fmt::k4_scale_min(j, row.data() + fmt::kQ4_K_Scales, &sc, &m);
          step = d * static_cast<float>(sc);
        } else {
          step = d * std::fabs(static_cast<float>(static_cast<int8_t>(row[fmt::kQ6_K_Scales + j])));
        }
        float lo = 0, hi = 0, amax = 0;
        for (int i = 0; i < sub; ++i) {
          lo = std::min(lo, x[sub * j + i]);
          hi = std::max(hi, x[sub * j + i]);
          amax = std::max(amax, std::fabs(x[sub * j + i]));
        }
        // Q4_K's offset is a multiple of dmin rounded up, which can widen the span by one dmin.
        const float need =
            q4 ? (hi - lo + fmt::load_f16(row.data() + fmt::kQ4_K_Dmin)) / levels : amax / levels;
        EXPECT_LE(step, need * 1.01f + d * 1.01f) << "sub-block " << j;
        for (int i = 0; i < sub; ++i) {
          EXPECT_NEAR(y[sub * j + i], x[sub * j + i], (q4 ? 0.5f : 1.0f) * step * 1.001f + 1e-6f)
              << "element " << sub * j + i;
        }
      }
    }
  }
}

// ---- dot vs references, on every target ----

// Tolerance of dot() against dot_reference(): activation requantisation moves each x_i by at
// most d_a/2 = amax_block/254, so |error| <= sum_i |w_i| * amax_block(i) / 254; on top of that
// f32 accumulation contributes ~n * 2^-24 relative to sum |w_i x_i| (bounded by 1e-4 here).
double requant_bound(TensorType t, const std::vector<float>& w, const std::vector<float>& x) {
  double err = 0.0, mag = 0.0;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float am = 0.0f;
    for (size_t i = 0; i < 32; ++i) am = std::max(am, std::fabs(x[32 * b + i]));
    for (size_t i = 0; i < 32; ++i) {
      if (!is_float(t)) err += std::fabs(w[32 * b + i]) * am / 254.0;
      mag += std::fabs(w[32 * b + i] * x[32 * b + i]);
    }
  }
  return err * 1.001 + 1e-4 * mag + 1e-6;
}

TEST(Dot, MatchesReferenceOnEveryTarget) {
  for_each_target([] {
    std::mt19937 rng(42);
    for (TensorType t : kAllTypes) {
      SCOPED_TRACE(std::string(info(t).name));
      for (int64_t n : {96, 256, 768, 1536}) {
        if (is_k(t) && n % 256 != 0) continue;  // odd block counts exercise the tail path
        for (int rep = 0; rep < 4; ++rep) {
          const auto row = random_row(t, n, rng);
          const auto x = random_vec(n, rng);
          std::vector<float> w(static_cast<size_t>(n));
          dequantize_row(t, row.data(), w.data(), n);
          const double got = dot(t, row.data(), x.data(), n);
          // Loose: against the exact dot with the bound above.
          EXPECT_NEAR(got, dot_reference(t, row.data(), x.data(), n), requant_bound(t, w, x));
          // Tight: against the scalar reference fed the same requantised activations; only
          // f32 accumulation order differs.
          const auto xq = is_float(t) ? x : requantize(x);
          double mag = 0.0;
          for (int64_t i = 0; i < n; ++i) mag += std::fabs(w[i] * xq[i]);
          EXPECT_NEAR(got, dot_reference(t, row.data(), xq.data(), n), 2e-6 * mag + 1e-6);
        }
      }
    }
  });
}

TEST(Dot, FloatTypesOddLength) {
  for_each_target([] {
    std::mt19937 rng(7);
    for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
      const int64_t n = 37;
      const auto row = random_row(t, n, rng);
      const auto x = random_vec(n, rng);
      EXPECT_NEAR(dot(t, row.data(), x.data(), n), dot_reference(t, row.data(), x.data(), n), 1e-4);
    }
  });
}

// ---- matmul vs row-by-row dot ----

TEST(Matmul, MatchesRowDot) {
  for_each_target([] {
    std::mt19937 rng(3);
    const int64_t rows = 37, cols = 512;
    for (TensorType t : kAllTypes) {
      SCOPED_TRACE(std::string(info(t).name));
      const std::vector<uint8_t> w = random_matrix(t, rows, cols, rng);
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        for (int64_t n_tok : {1, 3, 17}) {
          const auto x = random_vec(cols * n_tok, rng);
          std::vector<float> y(static_cast<size_t>(rows * n_tok), -1.0f);
          matmul(t, w.data(), rows, cols, x.data(), n_tok, y.data(), pool);
          for (int64_t i = 0; i < n_tok; ++i) {
            for (int64_t r = 0; r < rows; ++r) {
              const float want =
                  dot(t, w.data() + r * row_bytes(t, cols), x.data() + i * cols, cols);
              EXPECT_EQ(y[i * rows + r], want)
                  << "threads " << threads << " n_tok " << n_tok << " tok " << i << " row " << r;
            }
          }
        }
      }
    }
  });
}

// A prologue that writes each token's input row just before it is read gives what a matmul of the
// finished input gives, bit for bit: for quantised and float weights, with the tokens requantised
// inline (few) and in parallel (many), and it runs exactly once per token.
TEST(Matmul, PrologueProducesTheInputRowByRow) {
  std::mt19937 rng(11);
  const int64_t rows = 40, cols = 256;
  for (TensorType t : {TensorType::Q4_1, TensorType::Q8_0, TensorType::F16}) {
    SCOPED_TRACE(std::string(info(t).name));
    const std::vector<uint8_t> w = random_matrix(t, rows, cols, rng);
    ThreadPool pool(2);
    for (int64_t n_tok : {3, 20}) {
      const auto x = random_vec(cols * n_tok, rng);
      std::vector<float> want(static_cast<size_t>(rows * n_tok)), got(want.size());
      matmul(t, w.data(), rows, cols, x.data(), n_tok, want.data(), pool);
      std::vector<float> in(x.size(), std::nanf(""));
      std::vector<std::atomic<int>> calls(static_cast<size_t>(n_tok));
      const RowFn fill = [&](int64_t i) {
        calls[static_cast<size_t>(i)]++;
        std::copy_n(x.begin() + i * cols, cols, in.begin() + i * cols);
      };
      matmul(t, w.data(), rows, cols, in.data(), n_tok, got.data(), pool, &fill);
      EXPECT_EQ(got, want) << "n_tok " << n_tok;
      for (const auto& c : calls) EXPECT_EQ(c.load(), 1);
    }
  }
}

// matmul_shared gives each matrix what matmul gives it, bit for bit, whatever the mix of types
// (quantised and float) and row counts that do not fall on chunk or tile boundaries, and with
// enough tokens that the activations are requantised in parallel.
TEST(Matmul, SharedInputMatchesSeparateMatmuls) {
  std::mt19937 rng(4);
  const int64_t cols = 256;
  const TensorType types[] = {TensorType::Q4_1, TensorType::F16, TensorType::Q8_0,
                              TensorType::Q6_K};
  const int64_t rows[] = {37, 8, 50, 21};
  std::vector<std::vector<uint8_t>> w(4);
  for (size_t m = 0; m < 4; ++m) {
    for (int64_t r = 0; r < rows[m]; ++r) {
      const auto row = random_row(types[m], cols, rng);
      w[m].insert(w[m].end(), row.begin(), row.end());
    }
  }
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (int64_t n_tok : {1, 3, 9}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + " n_tok " + std::to_string(n_tok));
      const auto x = random_vec(cols * n_tok, rng);
      std::vector<std::vector<float>> shared(4), alone(4);
      std::vector<MatmulOut> outs;
      for (size_t m = 0; m < 4; ++m) {
        shared[m].assign(size_t(rows[m] * n_tok), -1.0f);
        alone[m].assign(size_t(rows[m] * n_tok), -2.0f);
        outs.push_back({types[m], w[m].data(), rows[m], shared[m].data()});
        matmul(types[m], w[m].data(), rows[m], cols, x.data(), n_tok, alone[m].data(), pool);
      }
      matmul_shared(outs, cols, x.data(), n_tok, pool);
      for (size_t m = 0; m < 4; ++m) EXPECT_EQ(shared[m], alone[m]) << info(types[m]).name;
    }
  }
}

// The VNNI kernels sum the same integer products as the kernels they replace: every output
// of the 4-, 5- and 6-bit types (Q4_K and Q6_K too) must match bit for bit, Q8_0's within f32
// rounding, on every tile size (decode and repacked prefill) and with rows that do not fill the
// last 8-row tile. dot() takes the same path, so it agrees with matmul bit for bit. Tiled weights
// give every matmul exactly what the GGUF rows give it: the types that tile, row counts that leave
// a partial last tile, one to many tokens (the decode and prefill kernels), and in matmul_shared
// beside untiled matrices whose rows put the tiled one's range off a tile edge.
TEST(Matmul, TiledWeightsMatchTheRowsTheyCameFrom) {
  // The kernels read tiles only with the extensions on (HLM_CPU_EXTENSIONS=off starts them off).
  if (!set_cpu_extensions(true)) GTEST_SKIP() << "this CPU has no extension hlm uses";
  if (!tile_weights(TensorType::Q4_1, std::vector<uint8_t>(20 * 16).data(), 16, 32)) {
    GTEST_SKIP() << "this CPU's kernels read no tiles (they need AVX512-VNNI)";
  }
  std::mt19937 rng(13);
  ThreadPool pool(2);
  for (TensorType t : {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1}) {
    for (int64_t rows : {16, 45, 96}) {
      for (int64_t cols : {32, 576}) {
        SCOPED_TRACE(std::string(info(t).name) + " " + std::to_string(rows) + "x" +
                     std::to_string(cols));
        const std::vector<uint8_t> w = random_matrix(t, rows, cols, rng);
        const TiledWeights tiles = tile_weights(t, w.data(), rows, cols);
        ASSERT_TRUE(tiles);
        const std::vector<uint8_t> zeros(w.size(), 0);
        const TiledWeights zero_tiles = tile_weights(t, zeros.data(), rows, cols);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(tiles.data()) % 64, 0u);
        // An untiled matrix of 7 rows first, so the tiled one's rows start off a tile edge.
        const auto other = random_row(TensorType::Q4_1, cols * 7, rng);
        for (int64_t n_tok : {1, 2, 3, 4, 9, 33}) {
          const auto x = random_vec(cols * n_tok, rng);
          std::vector<float> want(static_cast<size_t>(rows * n_tok)), got(want.size(), -1.0f);
          std::vector<float> o1(static_cast<size_t>(7 * n_tok)), o2(o1.size());
          const MatmulOut plain[] = {{TensorType::Q4_1, other.data(), 7, o1.data()},
                                     {t, w.data(), rows, want.data()}};
          const MatmulOut tiled[] = {{TensorType::Q4_1, other.data(), 7, o2.data()},
                                     {t, w.data(), rows, got.data(), tiles.data()}};
          matmul_shared(plain, cols, x.data(), n_tok, pool);
          matmul_shared(tiled, cols, x.data(), n_tok, pool);
          EXPECT_EQ(got, want) << "n_tok " << n_tok;
          EXPECT_EQ(o2, o1) << "n_tok " << n_tok;
          // The tiles are what is read: another matrix's tiles give other results.
          const MatmulOut wrong[] = {{t, w.data(), rows, got.data(), zero_tiles.data()}};
          matmul_shared(wrong, cols, x.data(), n_tok, pool);
          EXPECT_NE(got, want);
        }
      }
    }
  }
  // Other types, and shapes the layout does not cover, are not tiled.
  const auto q5 = random_row(TensorType::Q5_1, 32 * 16, rng);
  EXPECT_FALSE(tile_weights(TensorType::Q5_1, q5.data(), 16, 32));
  EXPECT_FALSE(tile_weights(TensorType::Q4_1, q5.data(), 16, 48));
}

// The K-type kernels (8-row tiles of super-blocks, decode straight from the weights and prefill
// over repacked tiles) against the scalar reference fed the same requantised activations, on every
// compiled target and then with the CPU extensions (VNNI) on: only f32 rounding may differ, so
// |matmul - reference| <= 2e-6 * sum |w_i x_i| + 1e-6; against the exact dot, requant_bound.
// Rows leave a partial last tile; token counts cover decode (1-3) and prefill (4 and up, with a
// partial last pass).
TEST(Matmul, KTypesMatchTheReferenceOnEveryKernel) {
  const int64_t rows = 21, cols = 768;
  auto check = [&](TensorType t, std::mt19937& rng) {
    SCOPED_TRACE(std::string(info(t).name));
    const std::vector<uint8_t> w = random_matrix(t, rows, cols, rng);
    const std::vector<float> wf = dequantize_matrix(t, w, rows, cols);
    ThreadPool pool(2);
    for (int64_t n_tok : {1, 2, 3, 4, 7, 13}) {
      const auto x = random_vec(cols * n_tok, rng);
      std::vector<float> y(static_cast<size_t>(rows * n_tok), std::nanf(""));
      matmul(t, w.data(), rows, cols, x.data(), n_tok, y.data(), pool);
      for (int64_t i = 0; i < n_tok; ++i) {
        const std::vector<float> xi(x.begin() + i * cols, x.begin() + (i + 1) * cols);
        const auto xq = requantize(xi);
        for (int64_t r = 0; r < rows; ++r) {
          const uint8_t* row = w.data() + r * row_bytes(t, cols);
          const std::vector<float> wr(wf.begin() + r * cols, wf.begin() + (r + 1) * cols);
          double mag = 0.0;
          for (int64_t c = 0; c < cols; ++c) mag += std::fabs(wr[c] * xq[c]);
          const float got = y[static_cast<size_t>(i * rows + r)];
          ASSERT_NEAR(got, dot_reference(t, row, xq.data(), cols), 2e-6 * mag + 1e-6)
              << "n_tok " << n_tok << " tok " << i << " row " << r;
          ASSERT_NEAR(got, dot_reference(t, row, xi.data(), cols), requant_bound(t, wr, xi))
              << "n_tok " << n_tok << " tok " << i << " row " << r;
        }
      }
    }
  };
  for_each_target([&] {
    std::mt19937 rng(21);
    for (TensorType t : {TensorType::Q4_K, TensorType::Q6_K}) check(t, rng);
  });
  if (set_cpu_extensions(true)) {
    SCOPED_TRACE(kernels_name());
    std::mt19937 rng(21);
    for (TensorType t : {TensorType::Q4_K, TensorType::Q6_K}) check(t, rng);
  }
}

TEST(Matmul, CpuExtensionsMatchTheKernelsTheyReplace) {
  if (!set_cpu_extensions(true)) GTEST_SKIP() << "this CPU has no extension hlm uses";
  std::mt19937 rng(11);
  const int64_t rows = 45;
  for (TensorType t : {TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0,
                       TensorType::Q5_1, TensorType::Q4_K, TensorType::Q6_K}) {
    SCOPED_TRACE(std::string(info(t).name));
    const int64_t cols = is_k(t) ? 768 : 576;  // K types: whole 256-element super-blocks
    const std::vector<uint8_t> w = random_matrix(t, rows, cols, rng);
    const std::vector<float> wf = dequantize_matrix(t, w, rows, cols);
    ThreadPool pool(2);
    for (int64_t n_tok : {1, 2, 3, 4, 7, 33}) {
      const auto x = random_vec(cols * n_tok, rng);
      std::vector<float> with(static_cast<size_t>(rows * n_tok)), without(with.size());
      ASSERT_TRUE(set_cpu_extensions(true));
      matmul(t, w.data(), rows, cols, x.data(), n_tok, with.data(), pool);
      set_cpu_extensions(false);
      matmul(t, w.data(), rows, cols, x.data(), n_tok, without.data(), pool);
      set_cpu_extensions(true);
      for (int64_t i = 0; i < n_tok; ++i) {
        for (int64_t r = 0; r < rows; ++r) {
          const size_t k = static_cast<size_t>(i * rows + r);
          // Tile size never changes a result: the row dot agrees with every matmul.
          ASSERT_EQ(with[k], dot(t, w.data() + r * row_bytes(t, cols), x.data() + i * cols, cols));
          if (t != TensorType::Q8_0) {
            ASSERT_EQ(with[k], without[k]) << "n_tok " << n_tok << " tok " << i << " row " << r;
            continue;
          }
          double mag = 0.0;  // f32 rounding of a sum is bounded relative to sum |terms|
          for (int64_t c = 0; c < cols; ++c) mag += std::fabs(wf[r * cols + c] * x[i * cols + c]);
          ASSERT_NEAR(with[k], without[k], 2e-6 * mag + 1e-6)
              << "n_tok " << n_tok << " tok " << i << " row " << r;
        }
      }
    }
  }
}

// convert_to_f16 rounds as the scalar reference does (to nearest even), on every target.
TEST(Vector, ConvertToF16MatchesScalarRounding) {
  for_each_target([] {
    std::mt19937 rng(7);
    for (int64_t n : {1, 7, 64, 100}) {
      auto x = random_vec(n, rng);
      if (n > 3) x[0] = 70000.0f, x[1] = -1e-8f, x[2] = 0.0f;  // overflow, subnormal, zero
      std::vector<uint16_t> got(static_cast<size_t>(n));
      convert_to_f16(x.data(), got.data(), n);
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(got[i], f32_to_f16(x[i])) << "x " << x[i];
    }
  });
}

// attend_f16 against a double-precision softmax attention over the same f16 keys and values, for
// 1 to 5 queries (the register blocks of 4 and their remainders), head sizes with and without a
// vector tail, odd and even dimension counts, row counts within a key block, on its edge and past
// it (the last block partial, its spare lanes holding other values), scores far apart
// (probabilities that underflow), and the first rows masked (a sliding window inside a block).
TEST(Vector, AttendMatchesSoftmaxAttention) {
  for_each_target([] {
    std::mt19937 rng(5);
    for (int64_t n : {1, 7, 64, 100}) {
      for (int64_t rows : {1, 2, 5, 16, 33, 130}) {
        for (int64_t n_q : {1, 3, 5}) {
          SCOPED_TRACE("n " + std::to_string(n) + " rows " + std::to_string(rows) + " n_q " +
                       std::to_string(n_q));
          const int64_t stride = n + 3;
          const auto q = random_vec(n_q * n, rng);
          const int64_t blocks = (rows + kKeyBlock - 1) / kKeyBlock;
          std::vector<uint16_t> Kh(static_cast<size_t>(blocks * kKeyBlock * n), f32_to_f16(9.0f));
          std::vector<uint16_t> Vh(static_cast<size_t>(rows * stride));
          std::vector<float> K(static_cast<size_t>(rows * n)), V(Vh.size());  // as f32
          for (int64_t j = 0; j < rows; ++j) {
            const auto key = random_vec(n, rng);
            store_key_f16(key.data(), n, j, Kh.data());
            for (int64_t i = 0; i < n; ++i) K[j * n + i] = fmt::f16_to_f32(f32_to_f16(key[i]));
          }
          for (size_t i = 0; i < Vh.size(); ++i) {
            Vh[i] = f32_to_f16(std::uniform_real_distribution<float>(-1, 1)(rng));
            V[i] = fmt::f16_to_f32(Vh[i]);
          }
          for (auto [scale, masked] : {std::pair{0.125f, int64_t{0}}, std::pair{40.0f, int64_t{0}},
                                       std::pair{0.125f, std::min<int64_t>(rows - 1, 11)}}) {
            std::vector<float> p(static_cast<size_t>(n_q * rows)),
                out(static_cast<size_t>(n_q * n));
            attend_f16(q.data(), n_q, Kh.data(), Vh.data(), stride, rows, n, scale, p.data(),
                       out.data(), masked);
            for (int64_t k = 0; k < n_q; ++k) {
              std::vector<double> want_p(static_cast<size_t>(rows));
              double mx = -HUGE_VAL, sum = 0.0;
              for (int64_t j = 0; j < rows; ++j) {
                double d = 0.0;
                for (int64_t i = 0; i < n; ++i) d += double(q[k * n + i]) * K[j * n + i];
                want_p[j] = j < masked ? -HUGE_VAL : d * scale;
                mx = std::max(mx, want_p[j]);
              }
              for (double& w : want_p) sum += (w = std::exp(w - mx));
              double total = 0.0;
              for (int64_t j = 0; j < rows; ++j) {
                EXPECT_NEAR(p[k * rows + j], want_p[j] / sum, 2e-5 * scale + 1e-6)
                    << "query " << k << " row " << j;
                total += p[k * rows + j];
              }
              EXPECT_NEAR(total, 1.0, 1e-5) << "query " << k;
              for (int64_t i = 0; i < n; ++i) {
                double want = 0.0;
                for (int64_t j = 0; j < rows; ++j)
                  want += double(p[k * rows + j]) * V[j * stride + i];
                EXPECT_NEAR(out[k * n + i], want, 1e-5) << "query " << k << " element " << i;
              }
            }
          }
        }
      }
    }
  });
}

// rms_norm_f32 and add_rms_norm_f32 against the definition in double, for lengths with and
// without a vector tail, and the residual's result written over the residual itself.
TEST(Vector, RmsNormMatchesDefinition) {
  for_each_target([] {
    std::mt19937 rng(12);
    for (int64_t n : {1, 15, 64, 576, 1000}) {
      const auto x = random_vec(n, rng), d = random_vec(n, rng), w = random_vec(n, rng);
      for (bool residual : {false, true}) {
        std::vector<double> sum(static_cast<size_t>(n));
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) {
          sum[i] = double(x[i]) + (residual ? double(d[i]) : 0.0);
          ss += sum[i] * sum[i];
        }
        const double scale = 1.0 / std::sqrt(ss / double(n) + 1e-5);
        auto xx = x;
        auto out = d;  // with the residual, the result overwrites it
        if (residual) {
          add_rms_norm_f32(xx.data(), out.data(), w.data(), out.data(), n, 1e-5f);
        } else {
          rms_norm_f32(xx.data(), w.data(), out.data(), n, 1e-5f);
        }
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_NEAR(xx[i], sum[i], 1e-6 * (1 + std::fabs(sum[i]))) << "n " << n << " i " << i;
          const double want = sum[i] * scale * w[i];
          EXPECT_NEAR(out[i], want, 2e-6 * (1 + std::fabs(want))) << "n " << n << " i " << i;
        }
      }
    }
  });
}

// A query's probabilities and output are the same bit for bit whether it is attended alone or in
// a group of any size (the engine decodes one head per call and prefills a GQA group per call).
TEST(Vector, AttendGivesAQueryTheSameResultInAnyGroup) {
  for_each_target([] {
    std::mt19937 rng(10);
    const int64_t n = 64, rows = 37, n_q = 5;
    std::vector<uint16_t> K(static_cast<size_t>(48 * n)), V(static_cast<size_t>(rows * n));
    for (int64_t j = 0; j < rows; ++j) store_key_f16(random_vec(n, rng).data(), n, j, K.data());
    for (auto& v : V) v = f32_to_f16(std::uniform_real_distribution<float>(-1, 1)(rng));
    const auto q = random_vec(n_q * n, rng);
    std::vector<float> p(static_cast<size_t>(n_q * rows)), out(static_cast<size_t>(n_q * n));
    attend_f16(q.data(), n_q, K.data(), V.data(), n, rows, n, 0.125f, p.data(), out.data());
    for (int64_t k = 0; k < n_q; ++k) {
      std::vector<float> p1(static_cast<size_t>(rows)), out1(static_cast<size_t>(n));
      attend_f16(q.data() + k * n, 1, K.data(), V.data(), n, rows, n, 0.125f, p1.data(),
                 out1.data());
      EXPECT_TRUE(std::equal(p1.begin(), p1.end(), p.begin() + k * rows)) << "query " << k;
      EXPECT_TRUE(std::equal(out1.begin(), out1.end(), out.begin() + k * n)) << "query " << k;
    }
  });
}

// silu_mul_f32 against x / (1 + e^-x) * up in double, including inputs where e^-x overflows.
TEST(Vector, SiluMulMatchesDefinition) {
  for_each_target([] {
    std::mt19937 rng(6);
    for (int64_t n : {1, 15, 64, 100}) {
      auto gate = random_vec(n, rng);
      const auto up = random_vec(n, rng);
      for (int64_t i = 0; i < n; ++i) gate[i] *= 30.0f;
      if (n > 2) gate[0] = -200.0f, gate[1] = 200.0f;
      auto got = gate;
      silu_mul_f32(got.data(), up.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double x = gate[i], want = x / (1.0 + std::exp(-x)) * up[i];
        EXPECT_NEAR(got[i], want, 2e-6 * std::fabs(want) + 1e-30) << "x " << x;
      }
    }
  });
}

// gelu_mul_f32 against GELU's tanh form times up in double, over the range where tanh bends and
// far beyond it (where gelu(x) is x or 0).
TEST(Vector, GeluMulMatchesDefinition) {
  for_each_target([] {
    std::mt19937 rng(7);
    for (int64_t n : {1, 15, 64, 100}) {
      auto gate = random_vec(n, rng);
      const auto up = random_vec(n, rng);
      for (int64_t i = 0; i < n; ++i) gate[i] *= 6.0f;
      if (n > 2) gate[0] = -200.0f, gate[1] = 200.0f;
      auto got = gate;
      gelu_mul_f32(got.data(), up.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double x = gate[i];
        const double want =
            0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))) * up[i];
        EXPECT_NEAR(got[i], want, 1e-5 * std::fabs(x * up[i]) + 1e-6) << "x " << x;
      }
    }
  });
}

// softmax_f32 against the definition in double: vocabulary-sized rows (several f64 chunks), odd
// tails, a temperature, -inf entries (probability 0) and in place.
TEST(Vector, SoftmaxMatchesDefinition) {
  for_each_target([] {
    std::mt19937 rng(8);
    for (int64_t n : {1, 7, 100, 49152 + 5}) {
      for (float t : {1.0f, 0.7f}) {
        auto z = random_vec(n, rng);
        for (float& v : z) v *= 8.0f;
        if (n > 2) z[1] = -HUGE_VALF;
        std::vector<float> got(z.size());
        softmax_f32(z.data(), n, 1.0f / t, got.data());
        const double mx = *std::max_element(z.begin(), z.end());
        double total = 0;
        for (float v : z) total += std::exp((double(v) - mx) / t);
        double sum = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double want = std::exp((double(z[i]) - mx) / t) / total;
          EXPECT_NEAR(got[i], want, 1e-5 * want + 1e-30) << "n " << n << " i " << i;
          sum += got[i];
        }
        EXPECT_NEAR(sum, 1.0, 1e-5);
        if (n > 2) EXPECT_EQ(got[1], 0.0f);
        auto in_place = z;
        softmax_f32(in_place.data(), n, 1.0f / t, in_place.data());
        EXPECT_EQ(in_place, got);
      }
    }
  });
}

}  // namespace
}  // namespace hlm::ops
