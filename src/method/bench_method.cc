// Microbenchmarks for the method's per-token filters: uncertainty (K = 20, V = 49152), the
// sampling filter and importance (30 layers × 9 heads × 512 positions), per call on synthetic
// inputs; and uncertainty and importance on the shipped device model's own steps (BM_FilterReal:
// logits, drafts and attention of the `slm` over a few prompts, when it is cached), with the share
// of an SLM step they cost.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "engine/context.h"
#include "engine/sampler.h"
#include "method/importance.h"
#include "method/uncertainty.h"
#include "method/uncertainty_reference.h"
#include "models/registry.h"
#include "util/thread_pool.h"

namespace hlm {
namespace {

constexpr int kVocab = 49152;

// Logits shaped like a small LM's: a Gaussian bulk (σ = 2.5) and a head of a few dozen
// candidates lifted by `head` above it.
std::vector<float> lm_like_logits(float head, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> bulk(0.0f, 2.5f);
  std::vector<float> z(kVocab);
  for (float& v : z) v = bulk(g);
  std::exponential_distribution<float> lift(1.0f);
  for (int i = 0; i < 40; ++i) z[g() % kVocab] = head + 3.0f * lift(g) - 3.0f;
  return z;
}

void BM_Uncertainty(benchmark::State& state) {
  const auto algo = static_cast<UncertaintyAlgo>(state.range(0));
  const float head = static_cast<float>(state.range(1));
  std::vector<std::vector<float>> logits;
  for (int i = 0; i < 8; ++i) logits.push_back(lm_like_logits(head, 1000 + i));
  std::vector<int32_t> drafts;
  dist::Rng rng(7);
  for (const auto& z : logits) drafts.push_back(dist::sample(dist::softmax(z, 1.0f), rng));
  UncertaintyEstimator est({}, algo);
  size_t i = 0;
  double u_sum = 0.0;
  for (auto _ : state) {
    const float u = est(logits[i % 8], drafts[i % 8], rng);
    benchmark::DoNotOptimize(u);
    u_sum += u;
    ++i;
  }
  state.counters["mean_u"] = u_sum / static_cast<double>(i);
  state.counters["fallback_rate"] =
      est.decisions() ? static_cast<double>(est.exact_fallbacks()) / est.decisions() : 0.0;
}
// range(0): 0 bounded, 1 exact-Z, 2 sampled (naive: K softmaxes + inverse CDF);
// range(1): how far the head stands above the bulk (10: peaked, 4: broad).
BENCHMARK(BM_Uncertainty)
    ->ArgsProduct({{0, 1, 2}, {4, 10}})
    ->ArgNames({"algo", "head"})
    ->Unit(benchmark::kMicrosecond);

// The sampling filter each drafted and verified token goes through: T = 0.8 and top-p 0.95, with
// top-k 40 or without it (`hlm run --top-p`, the API's top_p), on logits as above.
void BM_SamplerTopP(benchmark::State& state) {
  const SamplingParams sp{
      .temperature = 0.8f, .top_k = static_cast<int>(state.range(0)), .top_p = 0.95f, .seed = 1};
  std::vector<std::vector<float>> logits;
  for (int i = 0; i < 8; ++i) logits.push_back(lm_like_logits(float(state.range(1)), 2000 + i));
  const Sampler sampler(sp);
  std::vector<float> p(kVocab);
  size_t i = 0;
  for (auto _ : state) {
    sampler.distribution(logits[i++ % 8], p);
    benchmark::DoNotOptimize(p.data());
  }
}
BENCHMARK(BM_SamplerTopP)
    ->ArgsProduct({{0, 40}, {4, 10}})
    ->ArgNames({"top_k", "head"})
    ->Unit(benchmark::kMicrosecond);

AttentionRows make_rows(int n_layer, int n_head, int n_pos, uint64_t seed) {
  AttentionRows rows;
  rows.n_pos = n_pos;
  for (int l = 0; l < n_layer; ++l) rows.layers.push_back(l);
  rows.probs.resize(static_cast<size_t>(n_layer) * n_head * n_pos);
  std::mt19937_64 g(seed);
  std::exponential_distribution<float> e(1.0f);
  for (int r = 0; r < n_layer * n_head; ++r) {
    float* row = rows.probs.data() + static_cast<size_t>(r) * n_pos;
    double t = 0.0;
    for (int j = 0; j < n_pos; ++j) t += row[j] = std::pow(e(g), 3.0f);
    row[0] += static_cast<float>(t);  // a sink holding half the mass
    t *= 2.0;
    for (int j = 0; j < n_pos; ++j) row[j] = static_cast<float>(row[j] / t);
  }
  return rows;
}

void BM_Importance(benchmark::State& state) {
  const AttentionRows rows = make_rows(30, 9, 512, 3);
  ImportanceConfig cfg;
  cfg.estimator = static_cast<ImportanceEstimator>(state.range(0));
  const std::vector<AttentionRows> later = {rows};
  for (auto _ : state) {
    const Importance imp = cfg.estimator == ImportanceEstimator::kReceived
                               ? received_importance(later, 300, cfg)
                               : importance(rows, cfg);
    benchmark::DoNotOptimize(imp);
  }
}
// range(0): 0 focus, 1 received(1), 2 entropy.
BENCHMARK(BM_Importance)->DenseRange(0, 2)->ArgName("est")->Unit(benchmark::kMicrosecond);

// The device model's steps: for each generated token the raw logits, the draft (sampled at
// T = 0.8 as `hlm run` does) and the attention rows of every layer, plus the mean time of one
// SLM step with attention capture on (the t_slm the filter is compared with). Null when the
// model is not cached.
struct RealSteps {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> drafts;
  std::vector<AttentionRows> rows;
  double t_slm_s = 0;
};

const RealSteps* real_steps() {
  static const std::unique_ptr<RealSteps> steps = []() -> std::unique_ptr<RealSteps> {
    auto path = resolve_model("slm");
    if (!path) return nullptr;
    auto model = Model::load(*path);
    if (!model) return nullptr;
    std::shared_ptr<const Model> m = *model;
    ThreadPool pool(2);
    auto out = std::make_unique<RealSteps>();
    const AttentionRequest all = AttentionRequest::all(m->config().n_layer);
    const char* prompts[] = {"Explain speculative decoding in one sentence.",
                             "Write a haiku about autumn leaves.",
                             "List three uses of a paperclip.", "Why is the sky blue?"};
    dist::Rng rng(42);
    double t_total = 0;
    int n_steps = 0;
    for (const char* text : prompts) {
      Context ctx(m, 1, 512, pool);
      const std::string chat =
          std::string("<|im_start|>user\n") + text + "<|im_end|>\n<|im_start|>assistant\n";
      std::vector<int32_t> feed = m->tokenizer().encode(chat, true, true);
      for (int i = 0; i < 64; ++i) {
        AttentionRows rows;
        const auto t0 = std::chrono::steady_clock::now();
        auto z = ctx.eval_last(0, feed, &all, &rows);
        const double dt =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!z) return nullptr;
        if (i > 0) {  // not the prompt
          t_total += dt;
          ++n_steps;
        }
        const int32_t d = dist::sample(dist::softmax(*z, 0.8f), rng);
        out->logits.push_back(std::move(z).value());
        out->drafts.push_back(d);
        out->rows.push_back(std::move(rows));
        if (m->tokenizer().is_eog(d)) break;
        feed = {d};
      }
    }
    out->t_slm_s = n_steps > 0 ? t_total / n_steps : 0;
    return out;
  }();
  return steps.get();
}

// range(0): 0 uncertainty (K = 20, θ_max = 2), 1 importance (entropy, the default), 2 both,
// 3 the uncertainty estimator as it was before the one-pass histogram (for comparison).
// Time is per token; share_of_slm_pct is that time (wall clock) over the mean SLM step measured
// while the steps were generated (attention capture on), in percent.
void BM_FilterReal(benchmark::State& state) {
  const RealSteps* steps = real_steps();
  if (!steps || steps->logits.empty()) {
    state.SkipWithError("the device model `slm` is not cached: run `hlm models fetch`");
    return;
  }
  const int part = static_cast<int>(state.range(0));
  UncertaintyEstimator unc;
  testing::ReferenceUncertainty before;  // part 3: the estimator before this change
  const ImportanceConfig cfg;
  dist::Rng rng(7);
  const size_t n = steps->logits.size();
  size_t i = 0;
  double spent_s = 0;  // the filter's own time (the warm-up excluded), for share_of_slm
  for (auto _ : state) {
    const size_t t = i++ % n;
    // In the device loop the logits were just written by the SLM and read by the sampler: warm
    // them as that would (the benchmark cycles through more steps than the caches hold).
    state.PauseTiming();
    float sink = 0;
    for (float v : steps->logits[t]) sink += v;
    benchmark::DoNotOptimize(sink);
    state.ResumeTiming();
    const auto t0 = std::chrono::steady_clock::now();
    if (part == 3) {
      benchmark::DoNotOptimize(before(steps->logits[t], steps->drafts[t], rng));
    } else {
      if (part != 1) benchmark::DoNotOptimize(unc(steps->logits[t], steps->drafts[t], rng));
      if (part != 0) benchmark::DoNotOptimize(importance(steps->rows[t], cfg));
    }
    spent_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  state.counters["t_slm_us"] = steps->t_slm_s * 1e6;
  state.counters["share_of_slm_pct"] =
      100.0 * spent_s / (static_cast<double>(state.iterations()) * steps->t_slm_s);
  state.counters["tokens"] = static_cast<double>(n);
}
BENCHMARK(BM_FilterReal)->DenseRange(0, 3)->ArgName("part")->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace hlm

BENCHMARK_MAIN();
