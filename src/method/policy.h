// Policy: which tokens the device uploads for verification (SPEC §5): slm, llm, hlm, rand(r),
// uhlm(u_th), iuhlm(u_th, λ, estimator, u_hi) and spec(k), with per-token decisions.
#pragma once

#include <string>
#include <string_view>

#include "method/distribution.h"
#include "method/importance.h"
#include "util/result.h"

namespace hlm {

enum class PolicyKind { kSlm, kLlm, kHlm, kRand, kUhlm, kIuhlm, kSpec };

// Default u_th: U-HLM's risk-averse threshold from its published fit β ≈ 0.82·u − 0.06
// (TinyLlama-1.1B → Llama-2-7B, the same pair as the target paper): u_th = −b/a = 0.06/0.82
// ≈ 0.073, the largest u at which the fit predicts no rejection. With K = 20 u moves in steps
// of 0.05, so u > 0.073 means at least 2 of the 20 perturbed samples disagree with d.
// It is the fallback for a model pair without a profile; `hlm calibrate --save` (SPEC §9)
// makes one (eval/profile.h).
inline constexpr float kDefaultUth = 0.06f / 0.82f;

struct PolicyConfig {
  PolicyKind kind = PolicyKind::kIuhlm;
  // rand: upload probability r. 0.5 is a neutral midpoint; for a fair comparison set it to
  // another policy's measured upload rate.
  double rate = 0.5;
  float u_th = kDefaultUth;  // uhlm, iuhlm: upload needs u > u_th (same default for both, so
                             // the comparison isolates importance)
  float u_hi = 1.0f;         // iuhlm: also upload whenever u > u_hi; 1.0 disables (SPEC default)
  // spec: draft length k. 4 keeps the k-token upload small on a narrowband uplink while
  // amortising one round trip over several tokens (llama.cpp drafts up to 16 on a local bus).
  int draft = 4;
  ImportanceConfig importance;  // iuhlm
};

std::string_view to_string(PolicyKind kind);
// Canonical option string, parseable by parse_policy ("iuhlm:u_th=0.1,lambda=3,est=focus,...").
std::string to_string(const PolicyConfig& cfg);

// "slm", "llm", "hlm", "rand", "uhlm", "iuhlm", "spec"; each with either positional arguments
// in the SPEC's order — rand(r), uhlm(u_th), iuhlm(u_th, lambda, est, u_hi), spec(k) — or
// keys: rand:r=; uhlm:u_th=; iuhlm:u_th=,lambda=,est=focus|received|entropy,u_hi=,s=,w=;
// spec:k=. Fields the text does not set keep base's values (the built-in defaults, or a pair
// profile's: eval/profile.h); base's kind is replaced. The result is validated.
Result<PolicyConfig> parse_policy(std::string_view text, const PolicyConfig& base = {});
Status validate(const PolicyConfig& cfg);

// slm, hlm, rand, uhlm and iuhlm decide token by token; llm and spec run their own loops.
bool is_per_token(PolicyKind kind);
bool needs_uncertainty(const PolicyConfig& cfg);
// Whether the importance changes the decision at this u (iuhlm with u_th < u <= u_hi): the
// device loop can skip computing importance otherwise and save t_filter.
bool needs_importance(const PolicyConfig& cfg, float u);

// The upload decision of a per-token policy. `importance` may be null when needs_importance()
// is false (a missing one counts as important). `policy_rng` is drawn from only by rand; keep
// it apart from the drafting generator so every policy drafts the same tokens from one seed.
bool decide_upload(const PolicyConfig& cfg, float u, const Importance* importance,
                   dist::Rng& policy_rng);

}  // namespace hlm
