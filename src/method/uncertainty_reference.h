// For tests and benchmarks only: the uncertainty estimate as hlm computed it before the one-pass
// histogram (commit 0e8d890): a scalar max, a double-precision histogram of the gaps with a
// count and an offset sum per bucket of width 1/32, and the Jensen/chord bracket of every Z_k
// with the exact sum as fallback. Kept verbatim in its arithmetic so that the fast estimator can
// be checked to make the same K decisions for the same logits, draft and generator state.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "method/distribution.h"
#include "method/uncertainty.h"

namespace hlm::testing {

class ReferenceUncertainty {
 public:
  explicit ReferenceUncertainty(UncertaintyConfig cfg = {}) : cfg_(cfg) {}

  // u, with differ()[k-1] = 1 iff s_k ≠ d; draws exactly K uniforms.
  float operator()(std::span<const float> logits, int32_t d, dist::Rng& rng) {
    differ_.assign(cfg_.samples, 1);
    if (logits[d] == kNegInf) {
      for (int k = 0; k < cfg_.samples; ++k) dist::uniform01(rng);
      return 1.0f;
    }
    double m = kNegInf;
    for (float v : logits) m = v > m ? v : m;
    count_.assign(kBuckets + 1, 0);
    offset_.assign(kBuckets + 1, 0.0);
    int top = 0;
    uint64_t n_finite = 0;
    for (float v : logits) {
      if (v == kNegInf) continue;
      const double g = m - static_cast<double>(v);
      const double s = g * kInvWidth;
      const int b = s < kBuckets ? static_cast<int>(s) : kBuckets;
      ++count_[b];
      offset_[b] += g - b * kWidth;
      top = (b < kBuckets && b > top) ? b : top;
      ++n_finite;
    }
    const double g_d = m - static_cast<double>(logits[d]);
    int differ = 0;
    for (int k = 1; k <= cfg_.samples; ++k) {
      const double theta = static_cast<double>(cfg_.theta_max) * k / cfg_.samples;
      const double u = dist::uniform01(rng);
      const double inv = 1.0 / theta;
      const double e_d = std::exp(-g_d * inv);
      const double a = kWidth * inv;
      const double r = std::exp(-a);
      const double one_minus_r = -std::expm1(-a);
      double lb = 0.0, ub = 0.0, e_lo = 1.0;
      uint64_t seen = 0;
      bool cut = false;
      for (int b = 0; b <= top; ++b) {
        const uint32_t n = count_[b];
        if (n != 0) {
          const double x = offset_[b];
          lb += e_lo * n * exp_neg_lower(x / n * inv);
          ub += e_lo * (n - x * kInvWidth * one_minus_r);
          seen += n;
        }
        e_lo *= r;
        const uint64_t rest = n_finite - seen;
        if (rest == 0 || e_lo * static_cast<double>(rest) <= 1e-3 * kSlack * lb) {
          ub += e_lo * static_cast<double>(rest);
          cut = true;
          break;
        }
      }
      if (!cut) {
        const uint32_t n = count_[kBuckets];
        if (n != 0) {
          lb += n * std::exp(-(kOverflowStart + offset_[kBuckets] / n) * inv);
          ub += n * std::exp(-kOverflowStart * inv);
        }
      }
      lb *= 1.0 - kSlack;
      ub *= 1.0 + kSlack;
      bool differs;
      if (u * ub < e_d) {
        differs = false;
      } else if (u * lb >= e_d) {
        differs = true;
      } else {
        differs = !(u * partition(logits, m, theta) < e_d);
      }
      differ_[k - 1] = differs;
      differ += differs;
    }
    return static_cast<float>(differ) / cfg_.samples;
  }

  std::span<const uint8_t> differ() const { return differ_; }

 private:
  static constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  static constexpr double kOverflowStart = 64.0;
  static constexpr double kWidth = 1.0 / 32;
  static constexpr double kInvWidth = 32.0;
  static constexpr int kBuckets = 64 * 32;
  static constexpr double kSlack = 1e-9;

  static double exp_neg_lower(double y) {
    const double p = 1.0 - y + y * y * 0.5 - y * y * y * (1.0 / 6.0);
    return p > 0.0 ? p : 0.0;
  }
  static double partition(std::span<const float> z, double m, double theta) {
    const double inv = 1.0 / theta;
    double total = 0.0;
    for (float v : z) {
      if (v == kNegInf) continue;
      total += std::exp((static_cast<double>(v) - m) * inv);
    }
    return total;
  }

  UncertaintyConfig cfg_;
  std::vector<uint32_t> count_;
  std::vector<double> offset_;
  std::vector<uint8_t> differ_;
};

}  // namespace hlm::testing
