// Engine checks on real models against llama.cpp fixtures recorded by
// tools/reference/record_fixtures.py: tokenisation, next-token logits, perplexity; plus the engine
// invariants on a real model. The default model (SmolLM2-135M-Instruct Q4_1, llama architecture)
// and gemma3-270m (Gemma 3, Q4_K_M: Q4_K/Q6_K/Q5_0/Q8_0 weights, sliding-window layers). Skips,
// saying why, when a model is absent.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/context.h"
#include "engine/sampler.h"
#include "models/registry.h"

namespace hlm {
namespace {

using json = nlohmann::json;

json load_fixture(const std::string& name) {
  std::ifstream in(std::string(HLM_FIXTURES_DIR) + "/" + name);
  EXPECT_TRUE(in.good()) << "missing fixture " << name;
  return in.good() ? json::parse(in) : json();
}

// A registry model, its fixtures' file prefix and the bounds its comparisons use.
struct RealModel {
  const char* name;
  const char* prefix;
  float logit_bound;                // max |Δlogit| over llama.cpp's top 50, last positions
  float logit_bound_all_positions;  // the same at every position of the "chat" prompt
  float tie_gap;                    // a different argmax is accepted below this top-2 margin
};

// SmolLM2: the bound is what llama.cpp differs from itself by across its own code paths on this
// model (one-token batches: 0.43; flash attention: 0.67; an f64 reference forward: 0.76; see
// tools/reference/README.md), so a correct engine lands inside it. Every position of the 37-token
// chat prompt gets a looser bound: there the worst of the 37 × 50 entries (1.12, at position 9
// inside the system prompt) is an outlier of the same code-path noise, while the argmax agrees at
// every position. The tie gap covers the margins that llama.cpp's own exact (f64) forward pass
// does not keep: it picks another argmax for "code" (margin 0.12) and "chat" (0.35).
// gemma3-270m (logits of magnitude 20-28): llama.cpp against its own fixture differs by up to
// 1.03 over the top 50 of the last positions with one token per decode, and by up to 1.60 over
// every position of the chat prompt with flash attention (measured 2026-12-06); hlm's worst
// were 0.79 and 1.56, with the argmax equal everywhere. The bounds are llama.cpp's own spread.
const RealModel kModels[] = {
    {"llm", "smollm2", 1.0f, 1.3f, 0.4f},
    {"gemma3-270m", "gemma3", 1.1f, 1.7f, 0.4f},
};

class RealModels : public ::testing::TestWithParam<RealModel> {
 protected:
  void SetUp() override {
    const RealModel& p = GetParam();
    auto& slot = cache()[p.name];
    if (!slot.model && slot.skip_reason.empty()) {
      auto path = resolve_model(p.name);
      if (!path) {
        slot.skip_reason = path.error().message;
      } else {
        auto m = Model::load(*path);
        ASSERT_TRUE(m.ok()) << m.error().message;
        slot.model = m.value();
      }
    }
    if (!slot.model) GTEST_SKIP() << p.name << " not available: " << slot.skip_reason;
    model_ = slot.model;
  }
  static void TearDownTestSuite() { cache().clear(); }
  json fixture(const std::string& kind) const {
    return load_fixture(std::string(GetParam().prefix) + "_" + kind + ".json");
  }
  // Each model loads once for all its tests.
  struct Slot {
    std::shared_ptr<const Model> model;
    std::string skip_reason;
  };
  static std::map<std::string, Slot>& cache() {
    static std::map<std::string, Slot> c;
    return c;
  }
  std::shared_ptr<const Model> model_;
};

TEST_P(RealModels, TokenizationMatchesLlamaCpp) {
  json fx = fixture("tokens");
  int n = 0;
  for (const auto& c : fx["cases"]) {
    const std::string text = c["text"];
    auto ids = model_->tokenizer().encode(text, c["add_special"], c["parse_special"]);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << "text: " << text;
    ++n;
  }
  EXPECT_GE(n, 20);
}

// Compares our logits with llama.cpp's top 50: same argmax unless the reference's top two are
// within tie_gap of each other; returns max |Δlogit| over the reference top 50.
float compare_top(const std::vector<float>& ours, const json& top, float tie_gap, bool* argmax_ok) {
  float worst = 0;
  for (const auto& e : top) {
    const int id = e[0];
    const float ref = e[1];
    worst = std::max(worst, std::abs(ours[id] - ref));
  }
  const float gap = float(top[0][1]) - float(top[1][1]);
  *argmax_ok = argmax(ours) == int(top[0][0]) || gap < tie_gap;
  return worst;
}

TEST_P(RealModels, NextTokenLogitsMatchLlamaCpp) {
  json fx = fixture("logits");
  const RealModel& rm = GetParam();
  // Gemma's fixtures start every prompt with BOS, as the model is trained to see it.
  const bool bos = fx.value("bos", false);
  ThreadPool pool(2);
  float worst_all = 0;
  for (const auto& p : fx["prompts"]) {
    Context ctx(model_, 1, 512, pool);
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> expect = model_->tokenizer().encode(p["text"].get<std::string>(), false,
                                                             p["parse_special"].get<bool>());
    if (bos) expect.insert(expect.begin(), model_->tokenizer().bos());
    EXPECT_EQ(expect, ids);
    const bool all = p.contains("top_all_positions");
    SeqInput in{0, ids, {}, nullptr};
    for (int i = all ? 0 : int(ids.size()) - 1; i < int(ids.size()); ++i) in.logits_at.push_back(i);
    auto out = ctx.eval(std::span<const SeqInput>(&in, 1));
    ASSERT_TRUE(out.ok()) << out.error().message;
    const int V = model_->config().n_vocab;
    const auto& logits = (*out)[0].logits;
    std::vector<float> last(logits.end() - V, logits.end());
    bool ok;
    const float worst = compare_top(last, p["top"], rm.tie_gap, &ok);
    EXPECT_TRUE(ok) << p["name"] << ": argmax " << argmax(last) << " vs " << p["argmax"];
    EXPECT_LT(worst, rm.logit_bound) << p["name"];
    worst_all = std::max(worst_all, worst);
    std::printf("%-8s max |dlogit| %.4f, argmax hlm %d llama.cpp %d\n",
                p["name"].get<std::string>().c_str(), worst, argmax(last), p["argmax"].get<int>());
    if (all) {
      for (size_t pos = 0; pos < ids.size(); ++pos) {
        std::vector<float> row(logits.begin() + pos * V, logits.begin() + (pos + 1) * V);
        const float w = compare_top(row, p["top_all_positions"][pos], rm.tie_gap, &ok);
        EXPECT_TRUE(ok) << "position " << pos << " max |dlogit| " << w;
        EXPECT_LT(w, rm.logit_bound_all_positions) << "position " << pos;
        worst_all = std::max(worst_all, w);
      }
    }
  }
  std::printf("max |dlogit| over reference top-50, all prompts and positions: %.4f\n", worst_all);
}

// Under the sanitizers (CI's ASan+UBSan job) the perplexity test scores the first window only:
// that runs every code path once, and the remaining windows would repeat it for minutes.
#ifdef __SANITIZE_ADDRESS__
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

TEST_P(RealModels, PerplexityWithinTwoPercentOfLlamaCpp) {
  json fx = fixture("ppl");
  if (fx.is_null()) GTEST_SKIP() << "no perplexity fixture";
  const std::string text_path = fx["text_file"];
  std::ifstream in(text_path);
  if (!in) GTEST_SKIP() << text_path << " not present on this machine";
  std::string text((std::istreambuf_iterator<char>(in)), {});
  auto ids = model_->tokenizer().encode(text, false, false);
  const int n_ctx = fx["n_ctx"], n_tokens = fx["n_tokens"];
  ASSERT_GE(int(ids.size()), n_tokens);
  // With BOS, each window is BOS and n_ctx - 1 text tokens (see the fixture's definition).
  const bool bos = fx.value("bos", false);
  const int step = bos ? n_ctx - 1 : n_ctx;
  ThreadPool pool(2);
  Context ctx(model_, 1, n_ctx, pool);
  const int V = model_->config().n_vocab;
  double nll = 0;
  long scored = 0;
  std::vector<int32_t> window;
  int n_windows = 0;
  for (int w = 0; w + step <= n_tokens && !(kSanitized && n_windows == 1); w += step) {
    ++n_windows;
    ctx.clear(0);
    window.assign(ids.begin() + w, ids.begin() + w + step);
    if (bos) window.insert(window.begin(), model_->tokenizer().bos());
    // In chunks, so that the logits held at once stay small with Gemma's 262144-entry
    // vocabulary; the chunks extend the same cache, which is the same computation as one batch.
    constexpr int kChunk = 256;
    for (int c0 = 0; c0 + 1 < n_ctx; c0 += kChunk) {
      const int n = std::min(kChunk, n_ctx - c0);
      SeqInput si{0, std::span<const int32_t>(window).subspan(size_t(c0), size_t(n)), {}, nullptr};
      for (int i = 0; i < n && c0 + i + 1 < n_ctx; ++i) si.logits_at.push_back(i);
      auto out = ctx.eval(std::span<const SeqInput>(&si, 1));
      ASSERT_TRUE(out.ok());
      for (int i = 0; i < int(si.logits_at.size()); ++i) {
        const float* z = (*out)[0].logits.data() + size_t(i) * V;
        const float mx = *std::max_element(z, z + V);
        double s = 0;
        for (int v = 0; v < V; ++v) s += std::exp(double(z[v] - mx));
        nll += -(z[window[size_t(c0 + i + 1)]] - mx - std::log(s));
        ++scored;
      }
    }
  }
  // The reference: the fixture's perplexity, or over the windows scored here, theirs (every
  // window scores n_ctx - 1 tokens).
  double ref = fx["ppl"];
  if (n_windows < int(fx["windows"].size())) {
    double ref_nll = 0;
    for (int w = 0; w < n_windows; ++w) ref_nll += double(fx["windows"][w]["mean_nll"]);
    ref = std::exp(ref_nll / n_windows);
    EXPECT_EQ(scored, long(n_windows) * (n_ctx - 1));
  } else {
    EXPECT_EQ(scored, fx["n_scored"].get<long>());
  }
  const double ppl = std::exp(nll / scored);
  std::printf("perplexity: hlm %.4f, llama.cpp %.4f, ratio %.4f (%ld tokens, %d windows)\n", ppl,
              ref, ppl / ref, scored, n_windows);
  EXPECT_NEAR(ppl / ref, 1.0, 0.02);
}

TEST_P(RealModels, InvariantsOnRealModel) {
  ThreadPool pool(2);
  const auto ids =
      model_->tokenizer().encode("The quick brown fox jumps over the lazy", false, false);
  Context a(model_, 2, 128, pool), b(model_, 1, 128, pool);
  AttentionRequest req = AttentionRequest::all(model_->config().n_layer);
  // Batched two sequences equal each alone; rollback then re-eval equals fresh.
  const std::vector<int32_t> other = {504, 3575, 282};
  SeqInput in[2] = {{0, ids, {int(ids.size()) - 1}, &req}, {1, other, {2}, nullptr}};
  auto out = a.eval(in);
  ASSERT_TRUE(out.ok());
  auto alone = b.eval_last(0, ids);
  ASSERT_TRUE(alone.ok());
  float d = 0;
  for (size_t i = 0; i < alone->size(); ++i)
    d = std::max(d, std::abs((*out)[0].logits[i] - (*alone)[i]));
  EXPECT_LE(d, 1e-3f);
  const AttentionRows& rows = (*out)[0].attention;
  ASSERT_EQ(rows.n_pos, int(ids.size()));
  for (size_t l = 0; l < rows.layers.size(); ++l) {
    for (int h = 0; h < model_->config().n_head; ++h) {
      const float* r = rows.row(l, h, model_->config().n_head);
      double s = 0;
      for (int j = 0; j < rows.n_pos; ++j) s += r[j];
      ASSERT_NEAR(s, 1.0, 1e-3);
    }
  }
  const std::vector<int32_t> junk = {100, 200, 300, 400};
  ASSERT_TRUE(b.eval_last(0, junk).ok());
  b.truncate(0, int(ids.size()));
  const std::vector<int32_t> next = {17};
  auto r1 = b.eval_last(0, next);
  Context fresh(model_, 1, 128, pool);
  std::vector<int32_t> all = ids;
  all.push_back(17);
  auto r2 = fresh.eval_last(0, all);
  ASSERT_TRUE(r1.ok() && r2.ok());
  d = 0;
  for (size_t i = 0; i < r1->size(); ++i) d = std::max(d, std::abs((*r1)[i] - (*r2)[i]));
  EXPECT_LE(d, 1e-3f);
}

TEST_P(RealModels, SeededGenerationIsReproducible) {
  ThreadPool pool(2);
  auto gen = [&](uint64_t seed) {
    Context ctx(model_, 1, 128, pool);
    Sampler s({0.8f, 40, 0.95f, seed});
    std::vector<int32_t> out;
    auto logits = ctx.eval_last(0, model_->tokenizer().encode("Once upon a time", false, false));
    for (int i = 0; i < 16 && logits.ok(); ++i) {
      const int32_t t = s.sample(*logits);
      out.push_back(t);
      const std::vector<int32_t> one = {t};
      logits = ctx.eval_last(0, one);
    }
    return out;
  };
  EXPECT_EQ(gen(7), gen(7));
  EXPECT_NE(gen(7), gen(8));
}

INSTANTIATE_TEST_SUITE_P(Registry, RealModels, ::testing::ValuesIn(kModels),
                         [](const auto& info) { return std::string(info.param.prefix); });

}  // namespace
}  // namespace hlm
