// Parsing vLLM's log-probabilities, and q from a top N against hlm's Sampler on the full logits.
#include "vllm/logprobs.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace hlm::vllm {
namespace {

TEST(ParseCompletion, OrdersChoicesByIndexAndKeepsTheTopNAskedFor) {
  // Choice 1 comes first; choice 0 carries the sampled token as an extra, less probable entry.
  const std::string body = R"({"choices":[
    {"index":1,"logprobs":{"top_logprobs":[{"token_id:7":-0.5,"token_id:3":-1.5}]}},
    {"index":0,"logprobs":{"top_logprobs":[{"token_id:2":-2.0,"token_id:9":-0.1,
                                            "token_id:4":-0.1}]}}]})";
  auto r = parse_completion(body, 2, 2, 10, "http://x/v1/completions");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].ids, (std::vector<int32_t>{4, 9}));  // tie at -0.1: lower id first
  EXPECT_EQ((*r)[0].logprobs, (std::vector<float>{-0.1f, -0.1f}));
  EXPECT_EQ((*r)[1].ids, (std::vector<int32_t>{7, 3}));
}

TEST(ParseCompletion, ErrorsNameTheUrlAndWhatWasExpected) {
  const std::string url = "http://replica:8000/v1/completions";
  const auto error = [&](const std::string& body, size_t n = 1) {
    auto r = parse_completion(body, n, 64, 10, url);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.error().message;
  };
  EXPECT_NE(error("not json").find(url), std::string::npos);
  EXPECT_NE(error(R"({"choices":[]})").find("1 entries"), std::string::npos);
  EXPECT_NE(error(R"({"choices":[{"index":0,"logprobs":null}]})").find("--max-logprobs"),
            std::string::npos);
  EXPECT_NE(error(R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"a":-1}]}}]})")
                .find("token_id:N"),
            std::string::npos);
  EXPECT_NE(error(R"({"choices":[{"index":0,"logprobs":{"top_logprobs":[{"token_id:10":-1}]}}]})")
                .find("outside the vocabulary"),
            std::string::npos);
  EXPECT_NE(error(R"({"choices":[{"index":3,"logprobs":{"top_logprobs":[{"token_id:1":-1}]}}]})")
                .find("index"),
            std::string::npos);
}

TEST(LogprobsToRequest, AsksForTheWholeVocabularyOnlyWhenNothingTruncates) {
  EXPECT_EQ(logprobs_to_request({0.0f, 40, 0.95f}, 64), 1);
  EXPECT_EQ(logprobs_to_request({0.8f, 40, 0.95f}, 64), 64);
  EXPECT_EQ(logprobs_to_request({0.8f, 100, 1.0f}, 64), 116);
  EXPECT_EQ(logprobs_to_request({0.8f, 0, 0.9f}, 64), 64);
  EXPECT_EQ(logprobs_to_request({0.8f, 0, 1.0f}, 64), -1);
}

// Logits shaped like an LM's: a few strong candidates over a long Gaussian tail.
std::vector<float> lm_logits(int n_vocab, std::mt19937& rng, float spread) {
  std::normal_distribution<float> g(0.0f, spread);
  std::vector<float> z(static_cast<size_t>(n_vocab));
  for (float& x : z) x = g(rng);
  for (int i = 0; i < 5; ++i) z[size_t(rng() % n_vocab)] += 12.0f - 2.0f * float(i);
  return z;
}

// vLLM's raw log-probabilities, most probable first.
TopLogprobs top_of(const std::vector<float>& logits, int n) {
  double mx = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (float z : logits) sum += std::exp(double(z) - mx);
  const double lse = mx + std::log(sum);
  std::vector<int32_t> idx(logits.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  TopLogprobs t;
  for (int i = 0; i < n; ++i) {
    t.ids.push_back(idx[size_t(i)]);
    t.logprobs.push_back(float(double(logits[size_t(idx[size_t(i)])]) - lse));
  }
  return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a[i]) - double(b[i])));
  return d;
}

// Whenever top_suffices() says so, q from the top N equals the Sampler on the full logits; with
// hlm's defaults it says so for most LM-shaped logits (the rest are cut near top_p, where the
// unseen tail's mass decides, and cost a full-vocabulary request).
TEST(RebuildQ, EqualsTheSamplerOnFullLogitsWheneverTheTopSuffices) {
  constexpr int V = 4096;
  std::mt19937 rng(7);
  std::vector<float> logits_scratch;
  int proven = 0, cases = 0, default_proven = 0, default_cases = 0;
  for (float spread : {1.0f, 1.5f, 2.0f}) {
    for (SamplingParams s : {SamplingParams{0.8f, 40, 0.95f}, SamplingParams{0.3f, 40, 0.95f},
                             SamplingParams{1.5f, 40, 0.9f}, SamplingParams{1.0f, 0, 0.9f},
                             SamplingParams{0.7f, 20, 1.0f}, SamplingParams{0.0f, 40, 0.95f}}) {
      for (int rep = 0; rep < 10; ++rep) {
        const auto z = lm_logits(V, rng, spread);
        const int n = std::max(1, logprobs_to_request(s, 64));
        const TopLogprobs top = top_of(z, n);
        const bool ok = top_suffices(top, s, V);
        const bool is_default = s.temperature == 0.8f && s.top_k == 40;
        default_cases += is_default;
        default_proven += is_default && ok;
        cases++;
        if (!ok) continue;
        proven++;
        std::vector<float> q(V);
        rebuild_q(top, s, q, logits_scratch);
        const auto want = Sampler(s).distribution(z);
        EXPECT_LT(max_abs_diff(q, want), 1e-5)
            << "T=" << s.temperature << " k=" << s.top_k << " p=" << s.top_p;
      }
    }
  }
  EXPECT_GE(default_proven * 4, default_cases * 3);
  EXPECT_GT(proven, cases / 2);
}

// A flat distribution under top-p alone: the nucleus runs far past any top N, so the top N
// cannot be trusted, and q from it would indeed be wrong.
TEST(TopSuffices, RefusesWhenTheCutCouldLieAmongTheUnseen) {
  constexpr int V = 1000;
  std::vector<float> z(V, 0.0f);
  z[3] = 0.5f;
  const SamplingParams s{1.0f, 0, 0.9f};
  const TopLogprobs top = top_of(z, 64);
  EXPECT_FALSE(top_suffices(top, s, V));
  std::vector<float> q(V), scratch;
  rebuild_q(top, s, q, scratch);
  EXPECT_GT(max_abs_diff(q, Sampler(s).distribution(z)), 1e-3);
  // top-k larger than what was returned: the k-th token is unseen.
  EXPECT_FALSE(top_suffices(top, SamplingParams{1.0f, 100, 1.0f}, V));
  // The whole vocabulary always suffices.
  EXPECT_TRUE(top_suffices(top_of(z, V), s, V));
}

}  // namespace
}  // namespace hlm::vllm
