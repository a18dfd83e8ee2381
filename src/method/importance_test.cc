// Tests for importance: averaging, sink dropping, and each estimator's value and decision on
// hand-made attention rows.
#include "method/importance.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "engine/context.h"

namespace hlm {
namespace {

TEST(Importance, AverageAndDropSinks) {
  // 2 layers × 2 heads × 4 positions.
  const std::vector<float> probs = {
      0.7f, 0.1f, 0.1f, 0.1f,  // l0 h0
      0.3f, 0.3f, 0.2f, 0.2f,  // l0 h1
      0.5f, 0.0f, 0.0f, 0.5f,  // l1 h0
      0.5f, 0.1f, 0.2f, 0.2f,  // l1 h1
  };
  const std::vector<float> a = average_attention(probs, 2, 2, 4);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_NEAR(a[0], 0.5f, 1e-6);
  EXPECT_NEAR(a[1], 0.125f, 1e-6);
  EXPECT_NEAR(a[2], 0.125f, 1e-6);
  EXPECT_NEAR(a[3], 0.25f, 1e-6);
  const std::vector<float> ap = drop_sinks(a, 1);
  ASSERT_EQ(ap.size(), 3u);
  EXPECT_NEAR(ap[0], 0.25f, 1e-6);
  EXPECT_NEAR(ap[1], 0.25f, 1e-6);
  EXPECT_NEAR(ap[2], 0.5f, 1e-6);

  AttentionRows rows;
  rows.n_pos = 4;
  rows.layers = {3, 7};
  rows.probs = probs;
  EXPECT_EQ(average_attention(rows), a);
  const int only_7[] = {7};
  const std::vector<float> a7 = average_attention(rows, only_7);
  EXPECT_NEAR(a7[0], 0.5f, 1e-6);
  EXPECT_NEAR(a7[1], 0.05f, 1e-6);
  EXPECT_NEAR(a7[3], 0.35f, 1e-6);

  // Zero mass outside the sinks becomes uniform; too short a row becomes empty.
  EXPECT_EQ(drop_sinks(std::vector<float>{1.0f, 0.0f, 0.0f}, 1), (std::vector<float>{0.5f, 0.5f}));
  EXPECT_TRUE(drop_sinks(std::vector<float>{1.0f}, 1).empty());
}

TEST(Importance, Focus) {
  const std::vector<float> ap = {0.5f, 0.25f, 0.25f};
  // mean = 1/3; std = sqrt(((1/6)^2 + 2·(1/12)^2)/3) = sqrt(1/72).
  const double mean = 1.0 / 3.0, sd = std::sqrt(1.0 / 72.0);
  Importance r = focus_importance(ap, 1.0f);
  EXPECT_NEAR(r.value, 0.5, 1e-6);
  EXPECT_NEAR(r.threshold, mean + sd, 1e-6);
  EXPECT_TRUE(r.important);  // 0.5 >= 0.4512
  r = focus_importance(ap, 2.0f);
  EXPECT_NEAR(r.threshold, mean + 2 * sd, 1e-6);
  EXPECT_FALSE(r.important);  // 0.5 < 0.5690
  // Edge cases: n′ = 1 and n′ = 0 count as important.
  EXPECT_TRUE(focus_importance(std::vector<float>{1.0f}, 3.0f).important);
  EXPECT_TRUE(focus_importance(std::vector<float>{}, 3.0f).important);
}

TEST(Importance, Entropy) {
  const std::vector<float> ap = {0.5f, 0.25f, 0.25f};
  // H = 0.5·ln 2 + 2·0.25·ln 4 = 1.5·ln 2; I = 1 − 1.5·ln 2 / ln 3 ≈ 0.0536.
  const double expected = 1.0 - 1.5 * std::log(2.0) / std::log(3.0);
  Importance r = entropy_importance(ap, 0.05f);
  EXPECT_NEAR(r.value, expected, 1e-6);
  EXPECT_FLOAT_EQ(r.threshold, 0.05f);
  EXPECT_TRUE(r.important);
  EXPECT_FALSE(entropy_importance(ap, 0.1f).important);
  // Uniform: I = 0; one-hot: I = 1.
  EXPECT_NEAR(entropy_importance(std::vector<float>(5, 0.2f), 0.3f).value, 0.0, 1e-6);
  EXPECT_NEAR(entropy_importance(std::vector<float>{0, 1, 0, 0}, 0.3f).value, 1.0, 1e-6);
  EXPECT_TRUE(entropy_importance(std::vector<float>{1.0f}, 0.9f).important);
}

TEST(Importance, Received) {
  // d at cache position 2, one sink. Row 1: a′ = [1/6, 1/2, 1/3], n′ = 3 → 3·1/2 = 1.5.
  // Row 2: a′ = [0.2, 0.2, 0.4, 0.2], n′ = 4, d at index 1 → 4·0.2 = 0.8. I = 1.15.
  const std::vector<std::vector<float>> later = {{0.4f, 0.1f, 0.3f, 0.2f},
                                                 {0.5f, 0.1f, 0.1f, 0.2f, 0.1f}};
  Importance r = received_importance(later, 2, 1, 1.0f);
  EXPECT_NEAR(r.value, 1.15, 1e-5);
  EXPECT_TRUE(r.important);
  EXPECT_FALSE(received_importance(later, 2, 1, 1.2f).important);
  // No look-ahead rows, or d inside the sink prefix: important.
  EXPECT_TRUE(received_importance(std::span<const std::vector<float>>(), 2, 1, 5.0f).important);
  EXPECT_TRUE(received_importance(later, 0, 1, 5.0f).important);

  // Through AttentionRows: one layer, one head; only the first `lookahead` rows are used.
  std::vector<AttentionRows> rows(2);
  for (int i = 0; i < 2; ++i) {
    rows[i].layers = {0};
    rows[i].n_pos = static_cast<int>(later[i].size());
    rows[i].probs = later[i];
  }
  ImportanceConfig cfg;
  cfg.estimator = ImportanceEstimator::kReceived;
  cfg.lookahead = 2;
  EXPECT_NEAR(received_importance(rows, 2, cfg).value, 1.15, 1e-5);
  cfg.lookahead = 1;
  EXPECT_NEAR(received_importance(rows, 2, cfg).value, 1.5, 1e-5);
}

// lambda_flip is where the decision flips: important at λ just below it, not just above, for
// random rows (fixed seed) under every estimator; rows without evidence report +inf.
TEST(Importance, LambdaFlipIsTheDecisionBoundary) {
  std::mt19937 rng(7);
  std::gamma_distribution<float> gamma(0.3f, 1.0f);  // shape < 1: peaked rows, as attention is
  std::uniform_int_distribution<int> length(2, 64);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<float> a(static_cast<size_t>(length(rng)));
    for (float& v : a) v = gamma(rng) + 1e-6f;
    const std::vector<float> ap = drop_sinks(a, 1);
    const std::vector<std::vector<float>> later = {a};
    const int position = 1 + trial % (int(a.size()) - 1);
    using Fn = std::function<Importance(float)>;
    for (const Fn& f : {Fn([&](float l) { return focus_importance(ap, l); }),
                        Fn([&](float l) { return entropy_importance(ap, l); }),
                        Fn([&](float l) { return received_importance(later, position, 1, l); })}) {
      const float flip = f(0.0f).lambda_flip;
      if (std::isinf(flip)) {
        EXPECT_TRUE(f(1e6f).important);
        continue;
      }
      const float eps = 1e-3f * std::max(1.0f, std::fabs(flip));
      EXPECT_TRUE(f(flip - eps).important) << "trial " << trial << " flip " << flip;
      EXPECT_FALSE(f(flip + eps).important) << "trial " << trial << " flip " << flip;
    }
  }
  EXPECT_TRUE(std::isinf(focus_importance(std::vector<float>{1.0f}, 3.0f).lambda_flip));
  EXPECT_TRUE(std::isinf(focus_importance(std::vector<float>{0.5f, 0.5f}, 3.0f).lambda_flip));
  EXPECT_TRUE(
      std::isinf(received_importance(std::vector<std::vector<float>>{}, 3, 1, 1.0f).lambda_flip));
}

TEST(Importance, FromRowsWithConfig) {
  AttentionRows rows;
  rows.layers = {0};
  rows.n_pos = 4;
  rows.probs = {0.25f, 0.375f, 0.1875f, 0.1875f};  // a′ = [0.5, 0.25, 0.25]
  ImportanceConfig cfg;
  cfg.estimator = ImportanceEstimator::kFocus;
  cfg.lambda = 1.0f;
  EXPECT_TRUE(importance(rows, cfg).important);
  cfg.lambda = 2.0f;
  EXPECT_FALSE(importance(rows, cfg).important);
  cfg.estimator = ImportanceEstimator::kEntropy;
  cfg.lambda.reset();
  EXPECT_FLOAT_EQ(importance(rows, cfg).threshold, default_lambda(ImportanceEstimator::kEntropy));
  EXPECT_FALSE(importance(rows, cfg).important);  // 0.0536 < 0.201
}

}  // namespace
}  // namespace hlm
