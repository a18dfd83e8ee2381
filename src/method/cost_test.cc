// Tests for the cost model: a fit recovers the line its samples were drawn from, reports R²,
// keeps every term's time non-negative and refuses samples that cannot fix its terms; modelled
// times follow the line.
#include "method/cost.h"

#include <gtest/gtest.h>

#include <vector>

namespace hlm {
namespace {

TEST(Cost, FitRecoversAnExactLine) {
  // t = 2 ms + 0.5 ms·n + 1 µs·n·context, sampled at several sizes and contexts.
  std::vector<CostSample> samples;
  for (int n : {1, 2, 4, 8, 16}) {
    for (int ctx : {0, 64, 256}) {
      samples.push_back({{double(n), double(ctx), 1}, 2e-3 + 0.5e-3 * n + 1e-6 * n * ctx});
    }
  }
  auto line = fit_cost_line(samples, kTermUnits | kTermUnitsContext);
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_NEAR(line->intercept_s, 2e-3, 1e-12);
  EXPECT_NEAR(line->per_unit_s, 0.5e-3, 1e-12);
  EXPECT_NEAR(line->per_unit_context_s, 1e-6, 1e-15);
  EXPECT_EQ(line->per_context_s, 0.0);
  EXPECT_EQ(line->per_batch_s, 0.0);
  EXPECT_NEAR(line->r2, 1.0, 1e-12);
  EXPECT_EQ(line->n_samples, 15);
  EXPECT_NEAR(line->seconds({10, 100, 1}), 2e-3 + 5e-3 + 1e-3, 1e-12);
}

TEST(Cost, FitSeparatesTheBatchTerm) {
  // Batches of single positions beside single sequences of several positions.
  std::vector<CostSample> samples;
  for (int n : {1, 4, 16}) samples.push_back({{double(n), 0, 1}, 1e-3 + 2e-3 * n});
  for (int b : {2, 4, 8})
    samples.push_back({{double(b), 0, double(b)}, 1e-3 + 2e-3 * b + 3e-4 * (b - 1)});
  auto line = fit_cost_line(samples, kTermUnits | kTermBatch);
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_NEAR(line->per_batch_s, 3e-4, 1e-12);
  EXPECT_NEAR(line->per_unit_s, 2e-3, 1e-12);
}

TEST(Cost, RSquaredOfNoisySamples) {
  // Alternating ±10% around a line: the slope is still found, R² falls below 1.
  std::vector<CostSample> samples;
  for (int n = 1; n <= 20; ++n) {
    const double t = 1e-3 * n;
    samples.push_back({{double(n), 0, 1}, t * (n % 2 ? 1.1 : 0.9)});
  }
  auto line = fit_cost_line(samples, kTermUnits);
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_NEAR(line->per_unit_s, 1e-3, 1e-4);
  EXPECT_LT(line->r2, 1.0);
  EXPECT_GT(line->r2, 0.9);
}

TEST(Cost, FitKeepsEveryTermNonNegative) {
  // Times that fall slightly with the context (noise, in a real measurement): least squares would
  // give the context a negative time and extrapolate to negative times at long contexts. On this
  // balanced grid the non-negative fit drops both context terms, keeps the per-position time
  // and moves the mean context effect into the intercept.
  std::vector<CostSample> samples;
  const std::vector<int> contexts = {32, 128, 384};
  for (int n : {1, 2, 4, 8, 16, 32}) {
    for (int ctx : contexts)
      samples.push_back({{double(n), double(ctx), 1}, 1e-3 + 1e-4 * n - 1e-7 * ctx});
  }
  auto line = fit_cost_line(samples, kTermUnits | kTermContext | kTermUnitsContext);
  ASSERT_TRUE(line.ok()) << line.error().message;
  EXPECT_EQ(line->per_context_s, 0.0);
  EXPECT_EQ(line->per_unit_context_s, 0.0);
  EXPECT_NEAR(line->per_unit_s, 1e-4, 1e-12);
  EXPECT_NEAR(line->intercept_s, 1e-3 - 1e-7 * (32 + 128 + 384) / 3.0, 1e-12);
  EXPECT_LT(line->r2, 1.0);
  EXPECT_GT(line->r2, 0.9);
  EXPECT_GE(line->seconds({1, 1e6, 1}), line->seconds({1, 0, 1}));  // no gain from more context
}

TEST(Cost, FitRefusesWhatItCannotFix) {
  const std::vector<CostSample> one = {{{1, 0, 1}, 1e-3}};
  EXPECT_FALSE(fit_cost_line(one, kTermUnits).ok());  // two coefficients, one sample
  // Every sample at one size: the slope is not identifiable.
  const std::vector<CostSample> same = {{{4, 0, 1}, 1e-3}, {{4, 0, 1}, 2e-3}, {{4, 0, 1}, 3e-3}};
  auto r = fit_cost_line(same, kTermUnits);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("tell the terms apart"), std::string::npos);
  // A batch term without a batch above one.
  const std::vector<CostSample> single = {{{1, 0, 1}, 1e-3}, {{2, 0, 1}, 2e-3}, {{3, 0, 1}, 3e-3}};
  EXPECT_FALSE(fit_cost_line(single, kTermUnits | kTermBatch).ok());
}

TEST(Cost, ModelledTimes) {
  DeviceCost d;
  d.forward.intercept_s = 1e-3;
  d.forward.per_unit_s = 2e-3;
  EXPECT_DOUBLE_EQ(d.slm_s(3, 10, false), 7e-3);
  EXPECT_DOUBLE_EQ(d.slm_s(3, 10, true), 7e-3);  // no capture line: the plain one
  d.forward_capture = CostLine{2e-3, 2e-3};
  EXPECT_DOUBLE_EQ(d.slm_s(3, 10, true), 8e-3);
  EXPECT_EQ(d.slm_s(0, 10, false), 0.0);

  CostConfig c;
  EXPECT_EQ(c.cloud_s(0.123, 5, 0), 0.123);  // measured
  c.cloud = CostLine{1e-2, 1e-3};
  EXPECT_DOUBLE_EQ(c.cloud_s(0.123, 5, 0), 1.5e-2);
  EXPECT_EQ(c.cloud_s(0.123, 0, 0), 0.0);
  // A line extrapolated below zero is clamped.
  EXPECT_EQ((CostLine{-1.0, 1e-3}).seconds({1, 0, 1}), 0.0);
}

}  // namespace
}  // namespace hlm
