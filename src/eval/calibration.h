// Calibration (SPEC §9): run the SLM under full verification over calibration prompts, record
// (u, β) for every drafted token, fit β ≈ a·u + b, and derive the risk-averse and risk-prone
// upload thresholds.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "device/device.h"

namespace hlm {

struct CalibrationPoint {
  float u = 0;
  float beta = 0;  // max(0, 1 − q(d)/p(d)): the LLM's rejection probability of the draft
  float p_d = 0, q_d = 0;
};

struct CalibrationFit {
  int64_t n = 0;
  double a = 0, b = 0;     // β ≈ a·u + b (least squares)
  double correlation = 0;  // Pearson r of (u, β)
  double delta = 0;        // Δ = P(q(d) < p(d))
  double u_th_averse = 0;  // −b/a
  double u_th_prone = 0;   // (Δ − b)/a
  double mean_beta = 0;
};

// Calls add(name, value) for each fitted quantity, in one order and with the names that
// `hlm calibrate --json` and pair profiles print.
template <class Add>
void for_each_fit_value(const CalibrationFit& f, Add&& add) {
  add("a", f.a);
  add("b", f.b);
  add("correlation", f.correlation);
  add("delta", f.delta);
  add("mean_beta", f.mean_beta);
  add("u_th_risk_averse", f.u_th_averse);
  add("u_th_risk_prone", f.u_th_prone);
}

// Least-squares fit and thresholds from recorded points.
CalibrationFit fit_calibration(const std::vector<CalibrationPoint>& points);

// The operating point a pair profile ships (docs/profiles.md): the largest u_th whose skipped
// tokens (u <= u_th) carry an expected rejection mass of at most `max_risk` per drafted token,
// Σ_{u_i <= u_th} β_i / n <= max_risk: the share of all tokens that verification would have
// replaced but that skipping lets through. It needs no linear fit (which a weak pair's risk-averse
// threshold −b/a turns negative) and its budget reads directly as a loss of fidelity.
struct ThresholdChoice {
  double max_risk = 0;
  // Midway between the highest u level that fits the budget and the next level above it, so
  // that u > u_th does not hinge on float equality (u moves in steps of 1/K); 0 when not even
  // the lowest level fits, 1 when every level does.
  double u_th = 0;
  double skip_share = 0;  // share of the points with u <= u_th
  double risk = 0;        // Σ β over those points / n
};
ThresholdChoice choose_u_th(const std::vector<CalibrationPoint>& points, double max_risk);

// The rule's trade-off at every u level: skipping the tokens with u <= level skips `skip_share`
// of them at an expected rejection mass of `risk` per drafted token (both cumulative, ascending).
struct RiskLevel {
  float u = 0;
  double skip_share = 0, risk = 0;
};
std::vector<RiskLevel> risk_curve(const std::vector<CalibrationPoint>& points);

// Runs every prompt with policy hlm and full upload (the RunConfig's sampling and uncertainty
// settings are used; its policy is overridden), then scores each draft with both models on the
// final context. on_prompt(i, n) reports progress.
Result<std::vector<CalibrationPoint>> collect_calibration(
    std::shared_ptr<const Model> slm, std::shared_ptr<const Model> llm, ThreadPool& pool,
    RunConfig config, const std::vector<std::vector<int32_t>>& prompts,
    const std::function<void(size_t, size_t)>& on_prompt = {});

}  // namespace hlm
