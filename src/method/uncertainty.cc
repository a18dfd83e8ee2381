// Uncertainty by temperature perturbation: bounded (histogram) decisions, with exact and
// Monte-Carlo references.
#include "method/uncertainty.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>

namespace hlm {
namespace {

constexpr double kOverflowStart = 64.0;  // e^{-64/θ} <= e^{-32} at θ <= 2
// Gaps are read on a grid of 2^-kGridLog2: q = floor(g·2^20) is exact in double, and
// q·2^-20 <= g < (q + 1)·2^-20.
constexpr int kGridLog2 = 20;
constexpr double kGrid = 0x1p20;
constexpr double kGridCap = kOverflowStart * kGrid;  // 2^26: every gap >= 64 (and +inf) lands here
// A histogram entry packs the count above bit 44 and the sum of the in-bucket offsets (in grid
// steps, < 2^22 each at bucket widths <= 4) below it: exact while V < 2^20.
constexpr int kCountShift = 44;
constexpr uint64_t kOne = uint64_t{1} << kCountShift;
constexpr size_t kMaxPackedVocab = size_t{1} << 20;
constexpr size_t kBlock = 1024;
constexpr float kGridCapF = static_cast<float>(kGridCap);
// The float gap m − z differs from the exact one by at most 2^-24 relative, i.e. 4 grid steps
// below 64 (and the double gap by far less): 5 steps bound both.
constexpr double kGapError = 5.0 / kGrid;  // gaps quantised per block before they are counted
// Relative widening of the bracket: covers rounding in the bucket sums and running products
// (about 1e-13 relative) with a wide margin, so the bracket provably contains the Z the exact
// path computes.
constexpr double kSlack = 1e-9;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// max(z), four vectors of four lanes at a time.
float max_logit(std::span<const float> z) {
  using v4 = float __attribute__((vector_size(16)));
  const v4 lo = {kNegInf, kNegInf, kNegInf, kNegInf};
  v4 acc[4] = {lo, lo, lo, lo};
  size_t i = 0;
  for (; i + 16 <= z.size(); i += 16) {
    for (int j = 0; j < 4; ++j) {
      v4 v;
      std::memcpy(&v, z.data() + i + 4 * j, sizeof v);
      acc[j] = v > acc[j] ? v : acc[j];
    }
  }
  float m = kNegInf;
  for (; i < z.size(); ++i) m = z[i] > m ? z[i] : m;
  for (const v4& a : acc) {
    for (int j = 0; j < 4; ++j) m = a[j] > m ? a[j] : m;
  }
#ifndef NDEBUG
  for (float v : z) assert(!std::isnan(v));
#endif
  return m;
}

// q_i = floor(min(m − z_i, 64)·2^20) with the gap taken in float (vectorised): within
// kGapError of the gap in double that the exact path uses. -inf logits give 2^26.
void quantize_gaps(const float* z, size_t n, float m, uint32_t* q) {
  for (size_t i = 0; i < n; ++i) {
    const float t = (m - z[i]) * static_cast<float>(kGrid);
    q[i] = static_cast<uint32_t>(static_cast<int32_t>(t < kGridCapF ? t : kGridCapF));
  }
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
      bucket_log2_(std::clamp(bucket_log2, -12, 2)),
      width_(std::ldexp(1.0, bucket_log2_)),
      n_buckets_(static_cast<int>(kOverflowStart / width_)) {
  assert(cfg_.samples >= 1 && cfg_.theta_max > 0.0f);
  differ_.assign(static_cast<size_t>(std::max(cfg_.samples, 1)), 0);
}

float UncertaintyEstimator::operator()(std::span<const float> logits, int32_t d, dist::Rng& rng) {
  assert(d >= 0 && static_cast<size_t>(d) < logits.size());
  if (logits[d] == kNegInf) {
    for (int k = 0; k < cfg_.samples; ++k) dist::uniform01(rng);  // keep the stream aligned
    std::fill(differ_.begin(), differ_.end(), 1);
    return 1.0f;
  }
  switch (algo_) {
    case UncertaintyAlgo::kBounded:
      // The packed counts hold up to 2^20 - 1 entries; larger vocabularies take the exact path.
      if (logits.size() < kMaxPackedVocab) return bounded(logits, d, rng);
      return exact_z(logits, d, rng);
    case UncertaintyAlgo::kExactZ:
      return exact_z(logits, d, rng);
    case UncertaintyAlgo::kSampled:
      return sampled(logits, d, rng);
  }
  return 1.0f;
}

void UncertaintyEstimator::Histogram::resize(int buckets, double w) {
  width = w;
  top = 0;
  n.resize(buckets);
  x.resize(buckets);
  mean.resize(buckets);
  rest.resize(buckets);
}

void UncertaintyEstimator::Histogram::set(int b, double count, double offset_sum) {
  n[b] = count;
  x[b] = offset_sum;
  mean[b] = count > 0 ? offset_sum / count : 0.0;
  top = count > 0 ? b : top;
}

void UncertaintyEstimator::Histogram::finish(uint64_t n_over) {
  double after = static_cast<double>(n_over);
  for (int b = static_cast<int>(n.size()) - 1; b > top; --b) after += n[b];
  for (int b = top; b >= 0; --b) {
    rest[b] = after;
    after += n[b];
  }
}

// Σ_i exp(−g_i/θ) over one histogram bracketed from below (Jensen per bucket) and above (the
// chord per bucket), with the early cut once the rest cannot matter. Gaps >= 64 add their own
// bounds. The four-way split lets consecutive buckets' products and sums overlap.
void UncertaintyEstimator::bracket(const Histogram& h, double inv, double& lb_out,
                                   double& ub_out) const {
  const double a = h.width * inv;
  const double r = std::exp(-a);
  const double c = -std::expm1(-a) / h.width;  // chord slope per unit of offset
  const double r2 = r * r, r4 = r2 * r2;
  double e[4] = {1.0, r, r2, r2 * r};
  double lb4[4] = {0, 0, 0, 0}, ub4[4] = {0, 0, 0, 0};
  double tail = 0.0;  // a bound on everything after the cut
  bool cut = false;
  int b = 0;
  const double* n = h.n.data();
  const double* x = h.x.data();
  const double* mean = h.mean.data();
  for (; b + 4 <= h.top + 1; b += 4) {
    for (int j = 0; j < 4; ++j) {
      lb4[j] += e[j] * n[b + j] * exp_neg_lower(mean[b + j] * inv);  // Jensen
      ub4[j] += e[j] * (n[b + j] - x[b + j] * c);                    // chord
      e[j] *= r4;
    }
    const double rest = h.rest[b + 3];
    // The rest is bounded above by e^{−start/θ}·count, valid wherever the loop stops; stop
    // once that bound is below 1e-7 of the sum so far (the bracket widens by no more).
    if (rest == 0.0 || e[0] * rest <= 1e-7 * (lb4[0] + lb4[1] + lb4[2] + lb4[3])) {
      tail = e[0] * rest;  // every later term is at most e^{−start/θ} of the next bucket
      cut = true;
      break;
    }
  }
  double lb = (lb4[0] + lb4[1]) + (lb4[2] + lb4[3]);
  double ub = (ub4[0] + ub4[1]) + (ub4[2] + ub4[3]) + tail;
  if (!cut) {
    double e_lo = e[0];
    for (; b <= h.top; ++b) {
      lb += e_lo * n[b] * exp_neg_lower(mean[b] * inv);
      ub += e_lo * (n[b] - x[b] * c);
      e_lo *= r;
    }
    if (n_over_ != 0) {  // gaps >= 64 (less the grid error): Jensen below, e^{−64/θ} above
      lb += n_over_ * std::exp(-(over_sum_ / n_over_) * inv);
      ub += n_over_ * std::exp(-(kOverflowStart - kGapError) * inv);
    }
  }
  // Each gap was read as its grid value q, and lies in [q − kGapError, q + step + kGapError].
  lb_out = lb * std::exp(-(kGapError + 1.0 / kGrid) * inv) * (1.0 - kSlack);
  ub_out = ub * std::exp(kGapError * inv) * (1.0 + kSlack);
}

float UncertaintyEstimator::bounded(std::span<const float> logits, int32_t d, dist::Rng& rng) {
  const float m_f = max_logit(logits);
  const double m = m_f;
  const int nb = n_buckets_;
  const int shift = kGridLog2 + bucket_log2_;  // grid steps per bucket: 2^shift
  const uint32_t in_bucket = (uint32_t{1} << shift) - 1;

  // One pass: quantise a block of gaps (vectorised, in float: within kGapError of the exact gap),
  // then count them into two interleaved tables (so that neighbours in the same bucket do not
  // wait on each other's store).
  const size_t stride = static_cast<size_t>(nb) + 1;
  packed_.assign(4 * stride, 0);
  quanta_.resize(kBlock);
  uint64_t* t0 = packed_.data();
  uint64_t* t1 = packed_.data() + stride;
  uint64_t* t2 = packed_.data() + 2 * stride;
  uint64_t* t3 = packed_.data() + 3 * stride;
  uint32_t* q = quanta_.data();
  for (size_t base = 0; base < logits.size(); base += kBlock) {
    const size_t len = std::min(kBlock, logits.size() - base);
    quantize_gaps(logits.data() + base, len, m_f, q);
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
      t0[q[i] >> shift] += kOne + (q[i] & in_bucket);
      t1[q[i + 1] >> shift] += kOne + (q[i + 1] & in_bucket);
      t2[q[i + 2] >> shift] += kOne + (q[i + 2] & in_bucket);
      t3[q[i + 3] >> shift] += kOne + (q[i + 3] & in_bucket);
    }
    for (; i < len; ++i) t0[q[i] >> shift] += kOne + (q[i] & in_bucket);
  }

  // Per bucket: count, offset sum (an integer number of grid steps below 2^42, so exact), its
  // mean, and the count beyond it; then the same over buckets four times as wide. Gaps >= 64
  // (rare) are re-read in double; -inf logits drop out.
  n_over_ = 0;
  over_sum_ = 0.0;
  if ((t0[nb] | t1[nb] | t2[nb] | t3[nb]) != 0) {
    for (float v : logits) {
      uint32_t qv;
      quantize_gaps(&v, 1, m_f, &qv);
      if (v == kNegInf || qv >> shift != static_cast<uint32_t>(nb)) continue;
      ++n_over_;
      over_sum_ += m - static_cast<double>(v);
    }
  }
  fine_.resize(nb, width_);
  for (int b = 0; b < nb; ++b) {
    const uint64_t e = (t0[b] + t1[b]) + (t2[b] + t3[b]);
    fine_.set(b, static_cast<double>(e >> kCountShift),
              static_cast<double>(e & (kOne - 1)) * (1.0 / kGrid));
  }
  fine_.finish(n_over_);
  const int nc = (nb + 3) / 4;
  coarse_.resize(nc, 4 * width_);
  for (int b = 0; b < nc; ++b) {
    double n = 0, x = 0;
    for (int j = 0; j < 4 && 4 * b + j < nb; ++j) {
      n += fine_.n[4 * b + j];
      x += fine_.x[4 * b + j] + fine_.n[4 * b + j] * (j * width_);  // exact: grid multiples
    }
    coarse_.set(b, n, x);
  }
  coarse_.finish(n_over_);

  const double g_d = m - static_cast<double>(logits[d]);
  int differ = 0;
  for (int k = 1; k <= cfg_.samples; ++k) {
    const double theta = theta_k(cfg_, k);
    const double u = dist::uniform01(rng);
    const double inv = 1.0 / theta;
    const double e_d = std::exp(-g_d * inv);
    ++decisions_;
    // The wide buckets' bracket is second order in width/θ: from θ = 4 widths on it is within
    // (1/4)²/8 = 0.8% relative at worst, far less on real logits, so it settles nearly every
    // decision; whatever it leaves open the fine buckets decide, and then the exact sum.
    int differs = -1;
    for (const Histogram* h : {&coarse_, &fine_}) {
      if (h == &coarse_ && theta < 4 * h->width) continue;
      double lb, ub;
      bracket(*h, inv, lb, ub);
      if (u * ub < e_d) {
        differs = 0;  // certainly s_k = d
      } else if (u * lb >= e_d) {
        differs = 1;  // certainly s_k ≠ d
      }
      if (differs >= 0) break;
    }
    if (differs < 0) {
      ++fallbacks_;
      differs = !(u * partition(logits, m, theta) < e_d);
    }
    differ_[k - 1] = static_cast<uint8_t>(differs);
    differ += differs;
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
    const bool differs = !(u * partition(logits, m, theta) < e_d);
    differ_[k - 1] = differs;
    differ += differs;
  }
  return static_cast<float>(differ) / cfg_.samples;
}

float UncertaintyEstimator::sampled(std::span<const float> logits, int32_t d, dist::Rng& rng) {
  int differ = 0;
  for (int k = 1; k <= cfg_.samples; ++k) {
    const std::vector<float> p = dist::softmax(logits, static_cast<float>(theta_k(cfg_, k)));
    ++decisions_;
    const bool differs = dist::sample_weights(p, dist::uniform01(rng)) != d;
    differ_[k - 1] = differs;
    differ += differs;
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
