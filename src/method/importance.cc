// Importance estimators over head-and-layer averaged attention rows.
#include "method/importance.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

#include "engine/context.h"

namespace hlm {
namespace {

// lambda_flip of a row that carries no evidence: important at every λ.
constexpr float kNoEvidence = std::numeric_limits<float>::infinity();

}  // namespace

std::string_view to_string(ImportanceEstimator e) {
  switch (e) {
    case ImportanceEstimator::kFocus:
      return "focus";
    case ImportanceEstimator::kReceived:
      return "received";
    case ImportanceEstimator::kEntropy:
      return "entropy";
  }
  return "?";
}

Result<ImportanceEstimator> parse_estimator(std::string_view name) {
  if (name == "focus") return ImportanceEstimator::kFocus;
  if (name == "received") return ImportanceEstimator::kReceived;
  if (name == "entropy") return ImportanceEstimator::kEntropy;
  return make_error("unknown importance estimator '{}': use focus, received or entropy", name);
}

float default_lambda(ImportanceEstimator e) {
  switch (e) {
    case ImportanceEstimator::kFocus:
      return 5.48f;
    case ImportanceEstimator::kReceived:
      return 10.1f;
    case ImportanceEstimator::kEntropy:
      return 0.201f;
  }
  return 0.0f;
}

namespace {

// a[j] += Σ rows[r][j] for the given rows, four rows per sweep over a. Each a[j] receives the
// rows in the order given, one float addition at a time, exactly as a row-by-row loop would
// add them (so the result is the same bit for bit), with a quarter of the loads and stores.
void add_rows(std::span<const float* const> rows, int n_pos, float* a) {
  size_t r = 0;
  for (; r + 4 <= rows.size(); r += 4) {
    const float *r0 = rows[r], *r1 = rows[r + 1], *r2 = rows[r + 2], *r3 = rows[r + 3];
    for (int j = 0; j < n_pos; ++j) a[j] = (((a[j] + r0[j]) + r1[j]) + r2[j]) + r3[j];
  }
  for (; r < rows.size(); ++r) {
    const float* row = rows[r];
    for (int j = 0; j < n_pos; ++j) a[j] += row[j];
  }
}

// The head-and-layer average of `rows` (only `layers` when non-empty) into a.
void average_into(const AttentionRows& rows, std::span<const int> layers, std::vector<float>& a,
                  std::vector<const float*>& ptrs) {
  a.assign(rows.n_pos, 0.0f);
  const size_t n_layers = rows.layers.size();
  if (n_layers == 0 || rows.n_pos == 0) return;
  const int n_head = static_cast<int>(rows.probs.size() / (n_layers * rows.n_pos));
  ptrs.clear();
  for (size_t li = 0; li < n_layers; ++li) {
    if (!layers.empty() &&
        std::find(layers.begin(), layers.end(), rows.layers[li]) == layers.end()) {
      continue;
    }
    for (int h = 0; h < n_head; ++h) ptrs.push_back(rows.row(li, h, n_head));
  }
  add_rows(ptrs, rows.n_pos, a.data());
  if (!ptrs.empty()) {
    const float inv = 1.0f / static_cast<int>(ptrs.size());
    for (float& v : a) v *= inv;
  }
}

// drop_sinks in place: a becomes a′ (its first `sinks` entries removed, renormalised).
void drop_sinks_in_place(std::vector<float>& a, int sinks) {
  assert(sinks >= 0);
  if (a.size() <= static_cast<size_t>(sinks)) {
    a.clear();
    return;
  }
  a.erase(a.begin(), a.begin() + sinks);
  double total = 0.0;
  for (float v : a) total += v;
  if (total > 0.0) {
    for (float& v : a) v = static_cast<float>(v / total);
  } else {
    std::fill(a.begin(), a.end(), 1.0f / a.size());
  }
}

// Per-thread scratch, so the per-token estimators do not allocate.
struct Scratch {
  std::vector<float> a;
  std::vector<const float*> ptrs;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

std::vector<float> average_attention(std::span<const float> probs, int n_layers, int n_heads,
                                     int n_pos) {
  assert(probs.size() == static_cast<size_t>(n_layers) * n_heads * n_pos);
  std::vector<float> a(n_pos, 0.0f);
  const int n_rows = n_layers * n_heads;
  std::vector<const float*> ptrs(n_rows);
  for (int r = 0; r < n_rows; ++r) ptrs[r] = probs.data() + static_cast<size_t>(r) * n_pos;
  add_rows(ptrs, n_pos, a.data());
  if (n_rows > 0) {
    const float inv = 1.0f / n_rows;
    for (float& v : a) v *= inv;
  }
  return a;
}

std::vector<float> average_attention(const AttentionRows& rows, std::span<const int> layers) {
  std::vector<float> a;
  std::vector<const float*> ptrs;
  average_into(rows, layers, a, ptrs);
  return a;
}

std::vector<float> drop_sinks(std::span<const float> a, int sinks) {
  std::vector<float> out(a.begin(), a.end());
  drop_sinks_in_place(out, sinks);
  return out;
}

Importance focus_importance(std::span<const float> a_prime, float lambda) {
  const size_t n = a_prime.size();
  if (n <= 1) {
    const float v = n == 1 ? 1.0f : 0.0f;
    return {v, v, true, kNoEvidence};
  }
  double sum = 0.0, max = a_prime[0];
  for (float v : a_prime) {
    sum += v;
    max = std::max<double>(max, v);
  }
  const double mean = sum / n;
  double var = 0.0;
  for (float v : a_prime) var += (v - mean) * (v - mean);
  const double sd = std::sqrt(var / n);
  const double tau = mean + lambda * sd;
  // A flat row (sd = 0) is important at every λ, as the rule reads.
  const float flip = sd > 0.0 ? static_cast<float>((max - mean) / sd) : kNoEvidence;
  return {static_cast<float>(max), static_cast<float>(tau), max >= tau, flip};
}

Importance entropy_importance(std::span<const float> a_prime, float lambda) {
  const size_t n = a_prime.size();
  if (n <= 1) return {1.0f, lambda, true, kNoEvidence};
  double h = 0.0;
  for (float v : a_prime) {
    if (v > 0.0f) h -= v * std::log(static_cast<double>(v));
  }
  const double value = 1.0 - h / std::log(static_cast<double>(n));
  return {static_cast<float>(value), lambda, value >= lambda, static_cast<float>(value)};
}

Importance received_importance(std::span<const std::vector<float>> later, int position, int sinks,
                               float lambda) {
  if (later.empty() || position < sinks) return {1.0f, lambda, true, kNoEvidence};
  double total = 0.0;
  int used = 0;
  for (const std::vector<float>& a : later) {
    assert(static_cast<size_t>(position) < a.size());
    if (static_cast<size_t>(position) >= a.size()) continue;
    const std::vector<float> ap = drop_sinks(a, sinks);
    total += static_cast<double>(ap.size()) * ap[position - sinks];
    ++used;
  }
  if (used == 0) return {1.0f, lambda, true, kNoEvidence};
  const double value = total / used;
  return {static_cast<float>(value), lambda, value >= lambda, static_cast<float>(value)};
}

Importance importance(const AttentionRows& rows, const ImportanceConfig& cfg) {
  Scratch& sc = scratch();
  average_into(rows, cfg.layers, sc.a, sc.ptrs);
  drop_sinks_in_place(sc.a, cfg.sinks);
  switch (cfg.estimator) {
    case ImportanceEstimator::kFocus:
      return focus_importance(sc.a, cfg.lambda_value());
    case ImportanceEstimator::kEntropy:
      return entropy_importance(sc.a, cfg.lambda_value());
    case ImportanceEstimator::kReceived:
      break;
  }
  assert(false && "received(w) needs the look-ahead rows: call received_importance");
  return {1.0f, cfg.lambda_value(), true, kNoEvidence};
}

Importance received_importance(std::span<const AttentionRows> later, int position,
                               const ImportanceConfig& cfg) {
  const float lambda = cfg.lambda_value();
  const int sinks = cfg.sinks;
  const size_t w = std::min(later.size(), static_cast<size_t>(std::max(cfg.lookahead, 0)));
  if (w == 0 || position < sinks) return {1.0f, lambda, true, kNoEvidence};
  // As received_importance over the averages, without keeping them: each row needs only a′ at
  // d's position and n′.
  Scratch& sc = scratch();
  double total = 0.0;
  int used = 0;
  for (size_t i = 0; i < w; ++i) {
    average_into(later[i], cfg.layers, sc.a, sc.ptrs);
    assert(static_cast<size_t>(position) < sc.a.size());
    if (static_cast<size_t>(position) >= sc.a.size()) continue;
    drop_sinks_in_place(sc.a, sinks);
    total += static_cast<double>(sc.a.size()) * sc.a[position - sinks];
    ++used;
  }
  if (used == 0) return {1.0f, lambda, true, kNoEvidence};
  const double value = total / used;
  return {static_cast<float>(value), lambda, value >= lambda, static_cast<float>(value)};
}

}  // namespace hlm
