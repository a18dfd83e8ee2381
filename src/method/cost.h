// Cost model: the compute times of SPEC §7 (t_slm, t_filter, t_llm) taken from lines fitted to
// measurements (or derived from published hardware figures) instead of this machine's clock, so
// that modelled energy and latency do not follow the load of the machine that ran them
// (docs/energy.md). Profiles that hold these lines are read and written by eval/cost_profile.h.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "method/channel.h"
#include "util/result.h"

namespace hlm {

// One piece of work: `n` units (positions evaluated in one forward, or samples drawn) after
// `context` positions already cached, over `batch` sequences in the same forward.
struct Work {
  double n = 1;
  double context = 0;
  double batch = 1;
};

// t = intercept + per_unit·n + per_context·context + per_unit_context·n·context
//     + per_batch·(batch − 1), never below zero (a fit may extrapolate under it).
struct CostLine {
  double intercept_s = 0;
  double per_unit_s = 0;
  double per_context_s = 0;
  double per_unit_context_s = 0;
  double per_batch_s = 0;
  double r2 = 1;  // of the fit over its samples; 1 for a line that is assumed, not fitted
  int64_t n_samples = 0;

  double seconds(const Work& w) const;
};

// The terms a fit may use besides the intercept.
enum CostTerm : unsigned {
  kTermUnits = 1,
  kTermContext = 2,
  kTermUnitsContext = 4,
  kTermBatch = 8,
};

struct CostSample {
  Work work;
  double seconds = 0;
};

// Least squares over the intercept and the chosen terms, each term's time kept non-negative (work
// does not get cheaper as it grows; an unconstrained fit of noisy, nearly collinear columns can
// say so and extrapolate to negative times), with R² over the samples (1 when they all take the
// same time and the line hits it). Errors when there are fewer samples than
// coefficients or when the samples do not tell the terms apart (collinear or constant columns).
Result<CostLine> fit_cost_line(std::span<const CostSample> samples, unsigned terms);

// The device's modelled compute: the SLM forward (with attention capture when importance needs
// it, which costs more) and the policy's filter (uncertainty with K samples; importance over the
// positions attended).
struct DeviceCost {
  CostLine forward;
  std::optional<CostLine> forward_capture;  // unset: capture costs as much as `forward`
  CostLine uncertainty;                     // n = K samples
  CostLine importance;                      // context = positions attended

  double slm_s(int64_t positions, int64_t context, bool capture) const;
};

// Which times a run models. Unset: measured on this machine (the cloud's as its verifier
// reports them); the names say what is in use for outputs ("measured", a profile's name).
struct CostConfig {
  std::optional<DeviceCost> device;
  std::optional<CostLine> cloud;  // one LLM forward: n positions after `context`, `batch` seqs
  std::string device_name = "measured";
  std::string cloud_name = "measured";
  // The profiles' content digests (empty when measured): a profile remade under the same name
  // gives other figures, so records name the content as well.
  std::string device_digest, cloud_digest;
  // The profiles' powers (unset where a side is measured: the channel preset's apply).
  ComputePowers powers;

  // The cloud compute of a forward over `positions` after `context` cached: the modelled time,
  // or `measured` when the cloud is not modelled. No positions, no forward: 0.
  double cloud_s(double measured, int64_t positions, int64_t context) const;
};

}  // namespace hlm
