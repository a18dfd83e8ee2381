// Uncertainty by temperature perturbation: bounded (histogram) decisions, with exact and
// Monte-Carlo references.
#include "method/uncertainty.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

namespace hlm {
namespace {

constexpr double kOverflowStart = 64.0;  // e^{-64/θ} <= e^{-32} at θ <= 2
// Relative widening of the bracket: covers rounding in the bucket sums and running products
// (about 1e-13 relative) with a wide margin, so the bracket provably contains the Z the exact
// path computes.
constexpr double kSlack = 1e-9;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

float max_logit(std::span<const float> z) {
  float m = kNegInf;
  for (float v : z) {
    assert(!std::isnan(v));
    m = v > m ? v : m;
  }
  return m;
}

// Σ_i exp(−(m − z_i)/θ) in double, in index order (the "exact" partition function).
double partition(std::span<const float> z, double m, double theta) {
  const double inv = 1.0 / theta;
  double total = 0.0;
  for (float v : z) {
    if (v == kNegInf) continue;
    total += std::exp((static_cast<double>(v) - m) * inv);
  }
  return total;
}

double theta_k(const UncertaintyConfig& cfg, int k) {
  return static_cast<double>(cfg.theta_max) * k / cfg.samples;
}

// A lower bound of exp(−y) for y >= 0 (Taylor with a non-negative remainder y⁴/24·e^{−ξ}).
double exp_neg_lower(double y) {
  const double p = 1.0 - y + y * y * 0.5 - y * y * y * (1.0 / 6.0);
  return p > 0.0 ? p : 0.0;
}

}  // namespace

UncertaintyEstimator::UncertaintyEstimator(UncertaintyConfig cfg, UncertaintyAlgo algo,
                                           int bucket_log2)
    : cfg_(cfg),
      algo_(algo),
      width_(std::ldexp(1.0, std::clamp(bucket_log2, -12, 6))),
      n_buckets_(static_cast<int>(kOverflowStart / width_)) {
  assert(cfg_.samples >= 1 && cfg_.theta_max > 0.0f);
}

float UncertaintyEstimator::operator()(std::span<const float> logits, int32_t d, dist::Rng& rng) {
  assert(d >= 0 && static_cast<size_t>(d) < logits.size());
  if (logits[d] == kNegInf) {
    for (int k = 0; k < cfg_.samples; ++k) dist::uniform01(rng);  // keep the stream aligned
    return 1.0f;
  }
  switch (algo_) {
    case UncertaintyAlgo::kBounded:
      return bounded(logits, d, rng);
    case UncertaintyAlgo::kExactZ:
      return exact_z(logits, d, rng);
    case UncertaintyAlgo::kSampled:
      return sampled(logits, d, rng);
  }
  return 1.0f;
}

float UncertaintyEstimator::bounded(std::span<const float> logits, int32_t d, dist::Rng& rng) {
  const double m = max_logit(logits);
  const int n_buckets = n_buckets_;
  const double inv_width = 1.0 / width_;
  count_.assign(n_buckets + 1, 0);
  offset_.assign(n_buckets + 1, 0.0);
  int top = 0;  // highest non-empty regular bucket
  uint64_t n_finite = 0;
  for (float v : logits) {
    if (v == kNegInf) continue;
    const double g = m - static_cast<double>(v);
    const double s = g * inv_width;
    const int b = s < n_buckets ? static_cast<int>(s) : n_buckets;
    ++count_[b];
    offset_[b] += g - b * width_;  // b·width_ is exact: width_ is a power of two
    top = (b < n_buckets && b > top) ? b : top;
    ++n_finite;
  }
  const double g_d = m - static_cast<double>(logits[d]);
  int differ = 0;
  for (int k = 1; k <= cfg_.samples; ++k) {
    const double theta = theta_k(cfg_, k);
    const double u = dist::uniform01(rng);
    const double inv = 1.0 / theta;
    const double e_d = std::exp(-g_d * inv);
    const double a = width_ * inv;
    const double r = std::exp(-a);
    const double one_minus_r = -std::expm1(-a);
    double lb = 0.0, ub = 0.0;
    double e_lo = 1.0;  // exp(−start(b)/θ)
    uint64_t seen = 0;
    bool cut = false;
    for (int b = 0; b <= top; ++b) {
      const uint32_t n = count_[b];
      if (n != 0) {
        const double x = offset_[b];
        lb += e_lo * n * exp_neg_lower(x / n * inv);     // Jensen: n·e^{−mean/θ}
        ub += e_lo * (n - x * inv_width * one_minus_r);  // chord over the bucket
        seen += n;
      }
      e_lo *= r;
      const uint64_t rest = n_finite - seen;
      if (rest == 0 || e_lo * static_cast<double>(rest) <= 1e-3 * kSlack * lb) {
        ub += e_lo * static_cast<double>(rest);  // every later term is at most e_lo
        cut = true;
        break;
      }
    }
    if (!cut) {
      const uint32_t n = count_[n_buckets];
      if (n != 0) {
        lb += n * std::exp(-(kOverflowStart + offset_[n_buckets] / n) * inv);
        ub += n * std::exp(-kOverflowStart * inv);
      }
    }
    lb *= 1.0 - kSlack;
    ub *= 1.0 + kSlack;
    ++decisions_;
    if (u * ub < e_d) continue;  // certainly s_k = d
    if (u * lb >= e_d) {         // certainly s_k ≠ d
      ++differ;
      continue;
    }
    ++fallbacks_;
    if (!(u * partition(logits, m, theta) < e_d)) ++differ;
  }
  return static_cast<float>(differ) / cfg_.samples;
}

float UncertaintyEstimator::exact_z(std::span<const float> logits, int32_t d, dist::Rng& rng) {
  const double m = max_logit(logits);
  const double g_d = m - static_cast<double>(logits[d]);
  int differ = 0;
  for (int k = 1; k <= cfg_.samples; ++k) {
    const double theta = theta_k(cfg_, k);
    const double u = dist::uniform01(rng);
    const double e_d = std::exp(-g_d / theta);
    ++decisions_;
    if (!(u * partition(logits, m, theta) < e_d)) ++differ;
  }
  return static_cast<float>(differ) / cfg_.samples;
}

float UncertaintyEstimator::sampled(std::span<const float> logits, int32_t d, dist::Rng& rng) {
  int differ = 0;
  for (int k = 1; k <= cfg_.samples; ++k) {
    const std::vector<float> p = dist::softmax(logits, static_cast<float>(theta_k(cfg_, k)));
    ++decisions_;
    if (dist::sample_weights(p, dist::uniform01(rng)) != d) ++differ;
  }
  return static_cast<float>(differ) / cfg_.samples;
}

float uncertainty(std::span<const float> logits, int32_t d, const UncertaintyConfig& cfg,
                  dist::Rng& rng) {
  UncertaintyEstimator est(cfg);
  return est(logits, d, rng);
}

double expected_uncertainty(std::span<const float> logits, int32_t d,
                            const UncertaintyConfig& cfg) {
  assert(d >= 0 && static_cast<size_t>(d) < logits.size());
  if (logits[d] == kNegInf) return 1.0;
  const double m = max_logit(logits);
  const double g_d = m - static_cast<double>(logits[d]);
  double total = 0.0;
  for (int k = 1; k <= cfg.samples; ++k) {
    const double theta = theta_k(cfg, k);
    total += 1.0 - std::exp(-g_d / theta) / partition(logits, m, theta);
  }
  return total / cfg.samples;
}

}  // namespace hlm
