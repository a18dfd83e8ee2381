// Uncertainty: the SLM's epistemic uncertainty by temperature perturbation (SPEC §3),
// u = (1/K)·#{k : s_k ≠ d}, s_k ~ softmax(z/θ_k), θ_k = θ_max·k/K.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "method/distribution.h"

namespace hlm {

struct UncertaintyConfig {
  int samples = 20;        // K (U-HLM's reported setting)
  float theta_max = 2.0f;  // θ_max; θ_k = θ_max·k/K for k = 1..K
};

// How u is computed. All three draw exactly K uniforms from the generator, in the same order.
enum class UncertaintyAlgo {
  // Default. [s_k = d] is Bernoulli(π_k(d)) with π_k = softmax(z/θ_k), so u needs only the K
  // partition functions Z_k. One pass histograms the gaps g_i = max(z) − z_i, read in float on
  // a grid of 2^-20 (within 5 grid steps of the exact gap), into buckets of width 1/32 (count
  // and offset sum per bucket, packed in one integer so each logit costs one add), merged four
  // by four into buckets of 1/8. Per θ, convexity of exp(−g/θ) brackets Z_k (Jensen below, the
  // chord above, widened by the grid error) from the wide buckets when θ >= 1/2 and the fine
  // ones otherwise, and the Bernoulli with uniform U is decided from the bracket:
  // U·UB < e_d ⇒ s_k = d, U·LB ≥ e_d ⇒ s_k ≠ d. A decision the wide buckets leave open goes
  // to the fine ones, and only one they leave open too (a few in a million on real logits) is
  // summed exactly. Gives the same u, decision by decision, as kExactZ (and as the estimator
  // before this histogram, uncertainty_reference.h) for the same generator state, at one pass
  // over V plus K short passes over the buckets instead of K passes of exp over V.
  kBounded,
  // Reference: the same Bernoulli decisions with every Z_k summed exactly (K passes of exp).
  kExactZ,
  // Monte-Carlo reference: materialises each softmax(z/θ_k) and draws s_k by inverse CDF.
  // Same distribution of u, different draws; for cross-checks in tests.
  kSampled,
};

// Computes u; keeps scratch between calls so the hot path does not allocate. Not thread-safe:
// use one per thread.
class UncertaintyEstimator {
 public:
  // bucket_log2: kBounded's gap-bucket width is 2^bucket_log2 (default 1/32, clamped to
  // [2^-12, 4]), buckets cover gaps up to 64; wider buckets loosen the bracket (tests use them to
  // exercise the exact fallback).
  explicit UncertaintyEstimator(UncertaintyConfig cfg = {},
                                UncertaintyAlgo algo = UncertaintyAlgo::kBounded,
                                int bucket_log2 = -5);

  // u in {0, 1/K, ..., 1} for the draft d given the SLM's raw logits z (before the sampling
  // temperature). A d whose logit is -inf gives u = 1. Requires 0 <= d < logits.size().
  float operator()(std::span<const float> logits, int32_t d, dist::Rng& rng);

  const UncertaintyConfig& config() const { return cfg_; }
  // The K decisions of the last call: differ()[k-1] is 1 iff s_k ≠ d (θ_k = θ_max·k/K).
  std::span<const uint8_t> differ() const { return differ_; }
  // How many of the K decisions so far needed the exact sum (kBounded only).
  int64_t exact_fallbacks() const { return fallbacks_; }
  int64_t decisions() const { return decisions_; }

 private:
  // Gap buckets of one width: count, offset sum (gap − bucket start), its mean, and the count
  // in every later bucket (gaps >= 64 included); top is the highest non-empty bucket.
  struct Histogram {
    double width = 0;
    int top = 0;
    std::vector<double> n, x, mean, rest;
    void resize(int buckets, double w);
    void set(int b, double count, double offset_sum);
    void finish(uint64_t n_over);
  };
  float bounded(std::span<const float> logits, int32_t d, dist::Rng& rng);
  float exact_z(std::span<const float> logits, int32_t d, dist::Rng& rng);
  float sampled(std::span<const float> logits, int32_t d, dist::Rng& rng);
  void bracket(const Histogram& h, double inv_theta, double& lb, double& ub) const;

  UncertaintyConfig cfg_;
  UncertaintyAlgo algo_;
  int bucket_log2_;
  double width_;                  // bucket width, a power of two
  int n_buckets_;                 // regular buckets over gaps [0, 64); one more holds gaps >= 64
  std::vector<uint64_t> packed_;  // two interleaved tables of (count << 44) + Σ offset quanta
  std::vector<uint32_t> quanta_;  // one block of gaps on the 2^-20 grid
  Histogram fine_, coarse_;       // buckets of width_ and of 4·width_
  uint64_t n_over_ = 0;           // finite gaps >= 64, and their sum
  double over_sum_ = 0;
  std::vector<uint8_t> differ_;
  int64_t fallbacks_ = 0;
  int64_t decisions_ = 0;
};

// One-shot convenience (allocates its scratch).
float uncertainty(std::span<const float> logits, int32_t d, const UncertaintyConfig& cfg,
                  dist::Rng& rng);

// E[u] = (1/K)·Σ_k (1 − π_k(d)), exactly (K passes). Deterministic; for tests and calibration.
double expected_uncertainty(std::span<const float> logits, int32_t d, const UncertaintyConfig& cfg);

}  // namespace hlm
