// Importance: attention-based token importance (SPEC §4). Averages the SLM's captured attention
// over heads and layers, drops the sink positions, and scores the draft with one of three
// estimators: focus, received(w), entropy.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace hlm {

struct AttentionRows;  // engine/context.h

enum class ImportanceEstimator { kFocus, kReceived, kEntropy };

std::string_view to_string(ImportanceEstimator e);
Result<ImportanceEstimator> parse_estimator(std::string_view name);

// Default λ per estimator, read off the importance study (docs/RESULTS.md, "Importance study":
// 30 dev prompts x 48 tokens with the shipped device model, iuhlm against uhlm at matched upload
// rates). entropy had the best mean quality difference against uhlm, and λ = 0.201 its best
// point; the other two default to the median lambda_flip of the tokens above u_th = 0.6 there,
// which vetoes about half of the uploads the uncertainty alone would make. λ is on each
// estimator's own scale:
// - entropy: 0.201, i.e. an effective support exp(H) ≤ n′^0.799.
// - focus: 5.48, in standard deviations of the row above its mean.
// - received: 10.1 × the uniform share of the look-ahead query's attention.
float default_lambda(ImportanceEstimator e);

struct ImportanceConfig {
  // entropy: the importance study's choice (see default_lambda); focus is the adaptive per-row
  // threshold the target paper describes, received(w) the look-ahead candidate.
  ImportanceEstimator estimator = ImportanceEstimator::kEntropy;
  std::optional<float> lambda;  // unset: the pair's λ (below), else default_lambda(estimator)
  int sinks = 1;                // s: leading positions dropped (sequence start)
  int lookahead = 1;            // w for received(w): fewest extra drafts, at most 1 discarded
  std::vector<int> layers;      // model layer ids to average; empty: every captured layer
  // The estimator and λ a pair profile (eval/profile.h) calibrated. λ is on its estimator's own
  // scale, so it applies only while that estimator is selected: choosing another estimator
  // without a λ falls back to that estimator's default instead of borrowing a foreign scale.
  struct PairLambda {
    ImportanceEstimator estimator;
    float lambda;
  };
  std::optional<PairLambda> pair_lambda;

  float lambda_value() const {
    if (lambda) return *lambda;
    if (pair_lambda && pair_lambda->estimator == estimator) return pair_lambda->lambda;
    return default_lambda(estimator);
  }
};

// value = I; threshold = τ (focus) or λ (received, entropy); important = the estimator's rule.
// lambda_flip is the largest λ at which this token is still important (focus: (I − mean)/std;
// received, entropy: I; +inf when the row carries no evidence). Traced so that a λ grid can be
// chosen from the quantiles of a run instead of by guessing.
struct Importance {
  float value = 0.0f;
  float threshold = 0.0f;
  bool important = true;
  float lambda_flip = std::numeric_limits<float>::infinity();
};

// a ∈ Δⁿ: the mean over heads and layers of probs[l][h][j] ([n_layers][n_heads][n_pos]).
std::vector<float> average_attention(std::span<const float> probs, int n_layers, int n_heads,
                                     int n_pos);
// The same from captured rows; n_head is probs.size() / (layers.size()·n_pos). When `layers` is
// non-empty only those model layers (that were captured) are averaged.
std::vector<float> average_attention(const AttentionRows& rows, std::span<const int> layers = {});

// a′: a without its first `sinks` entries, renormalised to sum 1 (uniform if that mass is 0;
// empty if n <= sinks).
std::vector<float> drop_sinks(std::span<const float> a, int sinks);

// Edge cases, shared by all estimators: with n′ <= 1 non-sink positions (or no look-ahead rows)
// the row carries no evidence about importance, so the token is declared important and the
// upload rule falls back to uncertainty alone (U-HLM behaviour). Values are then: focus
// I = τ = (n′ == 1 ? 1 : 0); entropy I = 1; received I = 1 per row with n′ == 1.

// focus: I = max a′, τ = mean(a′) + λ·std(a′) (population std); important iff I >= τ.
// A perfectly flat row has I == τ and, by the formula, counts as important.
Importance focus_importance(std::span<const float> a_prime, float lambda);

// entropy: I = 1 − H(a′)/log n′ (natural log, 0·log 0 = 0); important iff I >= λ.
Importance entropy_importance(std::span<const float> a_prime, float lambda);

// received(w): `later` holds the head-and-layer averages a (sinks not yet dropped) of the w
// queries drafted after d, d sitting at cache position `position` (>= sinks). Each row
// contributes n′·a′[position − sinks] (1.0 means uniform); I is their mean; important iff
// I >= λ. A d inside the sink prefix is always important.
Importance received_importance(std::span<const std::vector<float>> later, int position, int sinks,
                               float lambda);

// focus or entropy from the row of the query that predicted d.
Importance importance(const AttentionRows& rows, const ImportanceConfig& cfg);
// received(w) from the look-ahead rows (only the first cfg.lookahead are used).
Importance received_importance(std::span<const AttentionRows> later, int position,
                               const ImportanceConfig& cfg);

}  // namespace hlm
