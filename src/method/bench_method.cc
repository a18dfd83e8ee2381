// Microbenchmarks for the method's per-token filters: uncertainty (K = 20, V = 49152) and
// importance (30 layers × 9 heads × 512 positions), per call.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/context.h"
#include "method/importance.h"
#include "method/uncertainty.h"

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

}  // namespace
}  // namespace hlm

BENCHMARK_MAIN();
