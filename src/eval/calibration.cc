// Calibration implementation: generation through the real device loop and cloud verifier, then
// one batched re-scoring pass per model to read p(d) and q(d) at every drafted position.
#include "eval/calibration.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "cloud/cloud_verifier.h"

namespace hlm {

CalibrationFit fit_calibration(const std::vector<CalibrationPoint>& pts) {
  CalibrationFit f;
  f.n = int64_t(pts.size());
  if (pts.empty()) return f;
  double su = 0, sb = 0, suu = 0, sbb = 0, sub = 0, below = 0;
  for (const auto& p : pts) {
    su += p.u;
    sb += p.beta;
    suu += double(p.u) * p.u;
    sbb += double(p.beta) * p.beta;
    sub += double(p.u) * p.beta;
    below += p.q_d < p.p_d;
  }
  const double n = double(pts.size());
  const double cov = sub / n - su / n * sb / n, var_u = suu / n - su / n * su / n,
               var_b = sbb / n - sb / n * sb / n;
  f.a = var_u > 0 ? cov / var_u : 0;
  f.b = sb / n - f.a * su / n;
  f.correlation = var_u > 0 && var_b > 0 ? cov / std::sqrt(var_u * var_b) : 0;
  f.delta = below / n;
  f.mean_beta = sb / n;
  if (f.a > 0) {
    f.u_th_averse = -f.b / f.a;
    f.u_th_prone = (f.delta - f.b) / f.a;
  }
  return f;
}

std::vector<RiskLevel> risk_curve(const std::vector<CalibrationPoint>& points) {
  std::vector<std::pair<float, float>> by_u;  // (u, β), ascending in u
  by_u.reserve(points.size());
  for (const auto& p : points) by_u.emplace_back(p.u, p.beta);
  std::sort(by_u.begin(), by_u.end());
  std::vector<RiskLevel> curve;
  const double n = double(by_u.size());
  double mass = 0;
  for (size_t i = 0; i < by_u.size();) {
    size_t j = i;
    for (; j < by_u.size() && by_u[j].first == by_u[i].first; ++j) mass += by_u[j].second;
    curve.push_back({by_u[i].first, double(j) / n, mass / n});
    i = j;
  }
  return curve;
}

ThresholdChoice choose_u_th(const std::vector<CalibrationPoint>& points, double max_risk) {
  const std::vector<RiskLevel> curve = risk_curve(points);
  ThresholdChoice c;
  c.max_risk = max_risk;
  // A threshold skips all of a u level or none of it; the risk grows with every level.
  for (size_t i = 0; i < curve.size() && curve[i].risk <= max_risk; ++i) {
    c.skip_share = curve[i].skip_share;
    c.risk = curve[i].risk;
    c.u_th = i + 1 < curve.size() ? (double(curve[i].u) + curve[i + 1].u) / 2 : 1.0;
  }
  return c;
}

Result<std::vector<CalibrationPoint>> collect_calibration(
    std::shared_ptr<const Model> slm, std::shared_ptr<const Model> llm, ThreadPool& pool,
    RunConfig config, const std::vector<std::vector<int32_t>>& prompts,
    const std::function<void(size_t, size_t)>& on_prompt) {
  config.policy = parse_policy("hlm").value();
  config.encoding = EncodingConfig{};
  config.keep_trace = true;
  config.measure_uncertainty = true;
  if (auto st =
          check_vocab_compatible(slm->tokenizer(), slm->path(), llm->tokenizer(), llm->path());
      !st) {
    return st.error();
  }
  CloudVerifier cloud(llm, pool, {1, config.n_ctx});
  Device device(slm, pool, config);
  Context slm_ctx(slm, 1, config.n_ctx, pool), llm_ctx(llm, 1, config.n_ctx, pool);
  Sampler sampler(config.sampling);
  std::vector<CalibrationPoint> points;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (on_prompt) on_prompt(i, prompts.size());
    auto r = device.generate(prompts[i], &cloud);
    if (!r) return make_error("calibration prompt {}: {}", i, r.error().message);
    if (auto st = cloud.close(device.session()); !st) return st.error();
    const std::vector<int32_t> ctx = r->context();
    const int P = int(r->prompt.size()), n = int(r->tokens.size());
    if (n == 0) continue;
    // Position P + t holds token t; its draft was predicted by the logits at index P + t − 1.
    SeqInput in{0, ctx, {}, nullptr};
    for (int t = 0; t < n; ++t) in.logits_at.push_back(P + t - 1);
    slm_ctx.clear(0);
    llm_ctx.clear(0);
    auto ps = slm_ctx.eval(std::span<const SeqInput>(&in, 1));
    auto qs = llm_ctx.eval(std::span<const SeqInput>(&in, 1));
    if (!ps) return ps.error();
    if (!qs) return qs.error();
    const int V = slm->config().n_vocab;
    for (int t = 0; t < n; ++t) {
      const TokenTrace& tr = r->trace[t];
      auto p =
          sampler.distribution(std::span<const float>((*ps)[0].logits).subspan(size_t(t) * V, V));
      auto q =
          sampler.distribution(std::span<const float>((*qs)[0].logits).subspan(size_t(t) * V, V));
      CalibrationPoint pt;
      pt.u = tr.u;
      pt.p_d = p[tr.draft];
      pt.q_d = q[tr.draft];
      pt.beta = pt.p_d > 0 ? std::max(0.0f, 1.0f - pt.q_d / pt.p_d) : 0.0f;
      points.push_back(pt);
    }
  }
  return points;
}

}  // namespace hlm
