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

// Least-squares fit and thresholds from recorded points.
CalibrationFit fit_calibration(const std::vector<CalibrationPoint>& points);

// Runs every prompt with policy hlm and full upload (the RunConfig's sampling and uncertainty
// settings are used; its policy is overridden), then scores each draft with both models on the
// final context. on_prompt(i, n) reports progress.
Result<std::vector<CalibrationPoint>> collect_calibration(
    std::shared_ptr<const Model> slm, std::shared_ptr<const Model> llm, ThreadPool& pool,
    RunConfig config, const std::vector<std::vector<int32_t>>& prompts,
    const std::function<void(size_t, size_t)>& on_prompt = {});

}  // namespace hlm
