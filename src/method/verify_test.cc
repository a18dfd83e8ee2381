// Tests for verification: chi-square exactness of the output token against q (full and top-k
// p̂, ids mode, spec(k) positions), greedy mode, and the edge cases.
#include "method/verify.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "method/stats_testing.h"
#include "method/upload.h"

namespace hlm {
namespace {

using testing::chi_square_p;
using testing::gamma_q;

TEST(Verify, ChiSquareHelperIsSane) {
  // Q(7/2, 24.32/2) ≈ 0.001: the 0.999 quantile of chi-square with 7 degrees of freedom.
  EXPECT_NEAR(gamma_q(3.5, 24.322 / 2), 0.001, 2e-5);
  EXPECT_NEAR(gamma_q(1.0, 2.0), std::exp(-2.0), 1e-12);
}

const std::vector<float> kP = {0.30f, 0.25f, 0.15f, 0.10f, 0.08f, 0.06f, 0.04f, 0.02f};
const std::vector<float> kQ = {0.05f, 0.20f, 0.30f, 0.05f, 0.15f, 0.10f, 0.05f, 0.10f};
constexpr int kDraws = 40000;

// Draws d ~ p_hat on the device, verifies against q, and returns the output-token histogram.
std::vector<int64_t> run(VerifyMode mode, std::span<const float> p_hat, std::span<const float> q,
                         uint64_t seed, int64_t* accepted) {
  dist::Rng device(seed), cloud(seed + 1);
  std::vector<int64_t> counts(q.size(), 0);
  *accepted = 0;
  for (int i = 0; i < kDraws; ++i) {
    const int32_t d = dist::sample(p_hat, device);
    const Verdict v = verify_token(mode, q, p_hat, d, cloud);
    EXPECT_EQ(v.accepted, v.token == d);
    *accepted += v.accepted;
    ++counts[v.token];
  }
  return counts;
}

TEST(Verify, SpeculativeFullIsExact) {
  int64_t acc = 0;
  const auto counts = run(VerifyMode::kSpeculative, kP, kQ, 42, &acc);
  const double p = chi_square_p(counts, kQ);
  EXPECT_GT(p, 0.001) << "output token not distributed as q";
  // Acceptance rate = Σ min(p, q) = 0.05+0.2+0.15+0.05+0.08+0.06+0.04+0.02 = 0.65.
  EXPECT_NEAR(static_cast<double>(acc) / kDraws, 0.65, 0.01);
  // The chi-square test has power: the drafts themselves (distributed as p) fail it.
  dist::Rng rng(5);
  std::vector<int64_t> drafts(kP.size(), 0);
  for (int i = 0; i < kDraws; ++i) ++drafts[dist::sample(kP, rng)];
  EXPECT_LT(chi_square_p(drafts, kQ), 1e-6);
}

TEST(Verify, SpeculativeTopKIsExact) {
  const EncodingConfig cfg{Encoding::kTopK, 3, 4};
  const std::vector<float> p_hat = build_p_hat(kP, cfg);
  int64_t acc = 0;
  const auto counts = run(VerifyMode::kSpeculative, p_hat, kQ, 43, &acc);
  EXPECT_GT(chi_square_p(counts, kQ), 0.001);
}

TEST(Verify, IdsIsExact) {
  int64_t acc = 0;
  const auto counts = run(VerifyMode::kIds, kP, kQ, 44, &acc);
  EXPECT_GT(chi_square_p(counts, kQ), 0.001);
  // Independent draws agree with probability Σ p·q.
  double agree = 0.0;
  for (size_t i = 0; i < kP.size(); ++i) agree += kP[i] * kQ[i];
  EXPECT_NEAR(static_cast<double>(acc) / kDraws, agree, 0.01);
}

TEST(Verify, Greedy) {
  EXPECT_EQ(verify_greedy(kQ, 2).token, 2);
  EXPECT_TRUE(verify_greedy(kQ, 2).accepted);
  const Verdict v = verify_greedy(kQ, 0);
  EXPECT_FALSE(v.accepted);
  EXPECT_EQ(v.token, 2);
  // One-hot q and p̂ (T = 0 on both sides) through the speculative path agree with greedy.
  std::vector<float> q(8, 0.0f), p(8, 0.0f);
  q[3] = 1.0f;
  p[3] = 1.0f;
  dist::Rng rng(1);
  EXPECT_TRUE(verify_speculative(q, p, 3, rng).accepted);
  std::vector<float> p5(8, 0.0f);
  p5[5] = 1.0f;
  const Verdict r = verify_speculative(q, p5, 5, rng);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.token, 3);
}

TEST(Verify, IdenticalDistributionsAlwaysAccept) {
  dist::Rng device(3), cloud(4);
  for (int i = 0; i < 2000; ++i) {
    const int32_t d = dist::sample(kP, device);
    EXPECT_TRUE(verify_speculative(kP, kP, d, cloud).accepted);
  }
}

TEST(Verify, DraftsPositionsAreExact) {
  // spec(2) with context-free rows q0, q1, q2: the first output token is distributed as q0; the
  // second, in rounds that accepted d0, as q1; a bonus token, as q2.
  const std::vector<float> q2 = {0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f, 0.125f};
  std::vector<float> q;
  for (const auto* row : {&kQ, &kP, &q2}) q.insert(q.end(), row->begin(), row->end());
  const std::vector<float> p0 = kP, p1 = kQ;  // drafts deliberately mismatched
  std::vector<float> p_hat(p0);
  p_hat.insert(p_hat.end(), p1.begin(), p1.end());
  dist::Rng device(10), cloud(11);
  std::vector<int64_t> first(8, 0), second(8, 0), bonus(8, 0);
  for (int i = 0; i < kDraws; ++i) {
    const int32_t drafts[2] = {dist::sample(p0, device), dist::sample(p1, device)};
    const DraftVerdict v = verify_drafts(VerifyMode::kSpeculative, q, p_hat, drafts, 8, cloud);
    ASSERT_EQ(v.tokens.size(), static_cast<size_t>(v.n_accepted + 1));
    for (int j = 0; j < v.n_accepted; ++j) ASSERT_EQ(v.tokens[j], drafts[j]);
    ++first[v.tokens[0]];
    if (v.n_accepted >= 1) ++second[v.tokens[1]];
    if (v.bonus) ++bonus[v.tokens[2]];
    EXPECT_EQ(v.bonus, v.n_accepted == 2);
  }
  EXPECT_GT(chi_square_p(first, kQ), 0.001);
  EXPECT_GT(chi_square_p(second, kP), 0.001);
  EXPECT_GT(chi_square_p(bonus, q2), 0.001);

  // Greedy: accepts the prefix that matches the argmaxes and appends the next argmax.
  const int32_t good[2] = {2, 0};
  const DraftVerdict g = verify_drafts(VerifyMode::kGreedy, q, {}, good, 8, cloud);
  EXPECT_EQ(g.n_accepted, 2);
  EXPECT_EQ(g.tokens, (std::vector<int32_t>{2, 0, 0}));
  const int32_t bad[2] = {2, 1};
  const DraftVerdict h = verify_drafts(VerifyMode::kGreedy, q, {}, bad, 8, cloud);
  EXPECT_EQ(h.n_accepted, 1);
  EXPECT_EQ(h.tokens, (std::vector<int32_t>{2, 0}));
  EXPECT_FALSE(h.bonus);
}

}  // namespace
}  // namespace hlm
