// Tests for uncertainty: exact edge cases, the bounded algorithm against exact decisions, and a
// Monte-Carlo cross-check.
#include "method/uncertainty.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "method/uncertainty_reference.h"

namespace hlm {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<float> gaussian_logits(int n, float sigma, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> z(n);
  for (float& v : z) v = nd(g);
  return z;
}

TEST(Uncertainty, OneHotIsZero) {
  dist::Rng rng(1);
  std::vector<float> z(49152, kNegInf);
  z[123] = 0.0f;
  for (auto algo :
       {UncertaintyAlgo::kBounded, UncertaintyAlgo::kExactZ, UncertaintyAlgo::kSampled}) {
    UncertaintyEstimator est({}, algo);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(est(z, 123, rng), 0.0f);
  }
  // A practically one-hot softmax: a margin of 100 is e^-50 per entry even at θ = 2.
  std::vector<float> peaked(49152, 0.0f);
  peaked[7] = 100.0f;
  UncertaintyEstimator est;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(est(peaked, 7, rng), 0.0f);
  EXPECT_EQ(est.exact_fallbacks(), 0);
}

TEST(Uncertainty, ImpossibleDraftIsOne) {
  dist::Rng rng(2);
  std::vector<float> z = {1.0f, 2.0f, kNegInf};
  EXPECT_EQ(uncertainty(z, 2, {}, rng), 1.0f);
  EXPECT_EQ(expected_uncertainty(z, 2, {}), 1.0);
}

TEST(Uncertainty, UniformLogitsExpectation) {
  // softmax(z/θ) is uniform at every θ: π_k(d) = 1/4, so E[u] = 3/4.
  std::vector<float> z(4, 0.5f);
  EXPECT_NEAR(expected_uncertainty(z, 0, {}), 0.75, 1e-12);
  UncertaintyEstimator est;
  dist::Rng rng(3);
  double sum = 0.0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) sum += est(z, 0, rng);
  EXPECT_NEAR(sum / n, 0.75, 0.01);
}

// For one generator state the bounded algorithm must make exactly the exact-Z decisions.
TEST(Uncertainty, BoundedMatchesExactDecisions) {
  std::mt19937_64 pick(7);
  UncertaintyEstimator bounded({}, UncertaintyAlgo::kBounded);
  UncertaintyEstimator exact({}, UncertaintyAlgo::kExactZ);
  struct Case {
    int n;
    float sigma;
  };
  const Case cases[] = {{2, 0.1f},    {8, 1.0f},     {64, 0.05f},  {100, 3.0f},
                        {1000, 2.0f}, {1000, 0.02f}, {5000, 5.0f}, {49152, 3.0f}};
  int checked = 0;
  for (const Case& c : cases) {
    for (int rep = 0; rep < (c.n > 5000 ? 10 : 60); ++rep) {
      std::vector<float> z = gaussian_logits(c.n, c.sigma, pick());
      if (rep % 3 == 0) z[pick() % c.n] = kNegInf;  // masked entries are skipped
      const std::vector<float> p = dist::softmax(z, 1.0f);
      std::mt19937_64 draw(pick());
      int32_t d = dist::sample(p, draw);
      if (rep % 2 == 0) d = dist::argmax(z);
      const uint64_t seed = pick();
      dist::Rng r1(seed), r2(seed);
      ASSERT_EQ(bounded(z, d, r1), exact(z, d, r2)) << "n=" << c.n << " rep=" << rep;
      ASSERT_EQ(r1(), r2());  // both consumed exactly K uniforms
      ++checked;
    }
  }
  EXPECT_GT(checked, 300);
  // The bracket settles the great majority of decisions without the exact sum (in practice
  // all of them at the default bucket width).
  EXPECT_LT(bounded.exact_fallbacks(), bounded.decisions() / 100);
}

// Coarse buckets widen the bracket so that the exact fallback runs often; the decisions must
// still be the exact ones.
TEST(Uncertainty, FallbackMatchesExactDecisions) {
  std::mt19937_64 pick(8);
  for (int bucket_log2 : {-1, 0, 2}) {
    UncertaintyEstimator coarse({}, UncertaintyAlgo::kBounded, bucket_log2);
    UncertaintyEstimator exact({}, UncertaintyAlgo::kExactZ);
    for (int rep = 0; rep < 100; ++rep) {
      const std::vector<float> z = gaussian_logits(200, 1.5f, pick());
      std::mt19937_64 draw(pick());
      const int32_t d = dist::sample(dist::softmax(z, 1.0f), draw);
      const uint64_t seed = pick();
      dist::Rng r1(seed), r2(seed);
      ASSERT_EQ(coarse(z, d, r1), exact(z, d, r2)) << "bucket_log2=" << bucket_log2;
    }
    EXPECT_GT(coarse.exact_fallbacks(), 0) << "bucket_log2=" << bucket_log2;
    EXPECT_LT(coarse.exact_fallbacks(), coarse.decisions());
  }
}

TEST(Uncertainty, AgreesWithMonteCarlo) {
  const std::vector<float> z = gaussian_logits(64, 2.0f, 11);
  // A draft of moderate probability, so u is far from 0 and 1.
  const std::vector<float> p = dist::softmax(z, 1.0f);
  std::vector<int32_t> order(z.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return z[a] > z[b]; });
  const UncertaintyConfig cfg;
  const int n = 3000;
  for (int32_t d : {order[0], order[1], order[3]}) {
    UncertaintyEstimator fast(cfg, UncertaintyAlgo::kBounded);
    UncertaintyEstimator mc(cfg, UncertaintyAlgo::kSampled);
    dist::Rng r1(100 + d), r2(200 + d);
    double s_fast = 0.0, s_mc = 0.0;
    for (int i = 0; i < n; ++i) {
      s_fast += fast(z, d, r1);
      s_mc += mc(z, d, r2);
    }
    const double expected = expected_uncertainty(z, d, cfg);
    EXPECT_NEAR(s_fast / n, s_mc / n, 0.02) << "d=" << d;
    EXPECT_NEAR(s_fast / n, expected, 0.02) << "d=" << d;
    EXPECT_NEAR(s_mc / n, expected, 0.02) << "d=" << d;
  }
}

// A random logit vector of one of several shapes: a Gaussian bulk, an LM-like bulk with a lifted
// head, near-ties, a few -inf entries, gaps beyond 64, constant rows, huge and tiny scales.
std::vector<float> random_logits(std::mt19937_64& g) {
  std::uniform_int_distribution<int> shape_of(0, 6);
  const int shape = shape_of(g);
  const int sizes[] = {1, 2, 3, 7, 16, 17, 100, 1023, 1025, 4099, 49152};
  std::uniform_int_distribution<int> size_of(0, std::size(sizes) - 1);
  int n = sizes[size_of(g)];
  if (n == 49152 && g() % 4 != 0) n = 1000 + static_cast<int>(g() % 3000);  // few large ones
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const float sigma = std::exp(std::log(0.01f) + unit(g) * std::log(1000.0f));  // 0.01 .. 10
  std::normal_distribution<float> bulk(unit(g) * 20.0f - 10.0f, sigma);
  std::vector<float> z(n);
  for (float& v : z) v = bulk(g);
  switch (shape) {
    case 1: {  // a head of candidates above the bulk
      std::exponential_distribution<float> lift(1.0f);
      const float head = 2.0f + unit(g) * 10.0f;
      for (int i = 0; i < std::min(n, 40); ++i) z[g() % n] += head + 3.0f * lift(g) - 3.0f;
      break;
    }
    case 2:  // near-ties at the top and a quantised bulk
      for (float& v : z) v = std::round(v * 8.0f) / 8.0f;
      break;
    case 3:  // masked entries (never all of them)
      for (int i = 0; i < std::max(1, n / 10); ++i) z[g() % n] = kNegInf;
      if (std::all_of(z.begin(), z.end(), [](float v) { return v == kNegInf; })) z[0] = 0.0f;
      break;
    case 4:  // gaps beyond 64 (the overflow bucket), some far beyond
      for (int i = 0; i < std::max(1, n / 5); ++i) z[g() % n] -= 60.0f + unit(g) * 3000.0f;
      break;
    case 5:  // every logit equal
      std::fill(z.begin(), z.end(), bulk(g));
      break;
    default:
      break;
  }
  return z;
}

// The property the fast estimator is held to: for any logits, draft, K, θ_max and generator
// state it makes exactly the K decisions today's reference algorithm made (so the same u, and
// the same uploads downstream), and consumes the generator exactly as it did.
TEST(Uncertainty, SameDecisionsAsTheReferenceAlgorithm) {
  std::mt19937_64 pick(20261206);
  const int samples[] = {1, 5, 20, 20, 20, 37};
  const float theta_max[] = {0.25f, 1.0f, 2.0f, 2.0f, 2.0f, 5.0f};
  int checked = 0, non_trivial = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    const std::vector<float> z = random_logits(pick);
    const UncertaintyConfig cfg{samples[pick() % std::size(samples)],
                                theta_max[pick() % std::size(theta_max)]};
    UncertaintyEstimator fast(cfg);
    testing::ReferenceUncertainty reference(cfg);
    for (int draw = 0; draw < 3; ++draw) {
      int32_t d;
      if (draw == 0) {
        d = static_cast<int32_t>(std::max_element(z.begin(), z.end()) - z.begin());
      } else if (draw == 1) {
        std::mt19937_64 s(pick());
        d = dist::sample(dist::softmax(z, 1.0f), s);
      } else {
        d = static_cast<int32_t>(pick() % z.size());
      }
      const uint64_t seed = pick();
      dist::Rng r1(seed), r2(seed);
      const float u_fast = fast(z, d, r1);
      const float u_ref = reference(z, d, r2);
      ASSERT_EQ(u_fast, u_ref) << "trial " << trial << ", V " << z.size() << ", d " << d;
      ASSERT_TRUE(std::equal(fast.differ().begin(), fast.differ().end(), reference.differ().begin(),
                             reference.differ().end()))
          << "trial " << trial << ": the per-sample decisions differ";
      ASSERT_EQ(r1(), r2()) << "trial " << trial << ": the generators diverged";
      ++checked;
      non_trivial += u_ref > 0.0f && u_ref < 1.0f;
    }
  }
  EXPECT_EQ(checked, 4500);
  EXPECT_GT(non_trivial, 1000);  // most cases are not decided by a one-hot or impossible draft
}

TEST(Uncertainty, ValuesAreMultiplesOfOneOverK) {
  const std::vector<float> z = gaussian_logits(300, 1.5f, 5);
  UncertaintyEstimator est({.samples = 10, .theta_max = 1.0f});
  dist::Rng rng(9);
  for (int i = 0; i < 50; ++i) {
    const float u = est(z, i, rng);
    EXPECT_GE(u, 0.0f);
    EXPECT_LE(u, 1.0f);
    EXPECT_NEAR(u * 10, std::round(u * 10), 1e-5);
  }
}

}  // namespace
}  // namespace hlm
