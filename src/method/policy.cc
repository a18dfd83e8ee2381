// Policy parsing, validation and per-token upload decisions.
#include "method/policy.h"

#include <fmt/format.h>

#include <cassert>
#include <cmath>

#include "method/options.h"

namespace hlm {
namespace {

Result<PolicyKind> parse_kind(std::string_view name) {
  if (name == "slm") return PolicyKind::kSlm;
  if (name == "llm") return PolicyKind::kLlm;
  if (name == "hlm") return PolicyKind::kHlm;
  if (name == "rand") return PolicyKind::kRand;
  if (name == "uhlm") return PolicyKind::kUhlm;
  if (name == "iuhlm") return PolicyKind::kIuhlm;
  if (name == "spec") return PolicyKind::kSpec;
  return make_error("unknown policy '{}': use slm, llm, hlm, rand, uhlm, iuhlm or spec", name);
}

// The keys each policy accepts, in positional order first.
std::vector<std::string_view> keys_of(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kRand:
      return {"r"};
    case PolicyKind::kUhlm:
      return {"u_th"};
    case PolicyKind::kIuhlm:
      return {"u_th", "lambda", "est", "u_hi", "s", "w"};
    case PolicyKind::kSpec:
      return {"k"};
    default:
      return {};
  }
}

Status set_key(PolicyConfig& cfg, std::string_view key, std::string_view value) {
  const std::string what = fmt::format("policy {} {}", to_string(cfg.kind), key);
  if (key == "r") {
    auto v = parse_number(value, what);
    if (!v) return v.error();
    cfg.rate = *v;
  } else if (key == "u_th") {
    auto v = parse_number(value, what);
    if (!v) return v.error();
    cfg.u_th = static_cast<float>(*v);
  } else if (key == "u_hi") {
    auto v = parse_number(value, what);
    if (!v) return v.error();
    cfg.u_hi = static_cast<float>(*v);
  } else if (key == "lambda") {
    auto v = parse_number(value, what);
    if (!v) return v.error();
    cfg.importance.lambda = static_cast<float>(*v);
  } else if (key == "est") {
    auto e = parse_estimator(value);
    if (!e) return e.error();
    cfg.importance.estimator = *e;
  } else if (key == "s") {
    auto v = parse_int(value, what);
    if (!v) return v.error();
    cfg.importance.sinks = *v;
  } else if (key == "w") {
    auto v = parse_int(value, what);
    if (!v) return v.error();
    cfg.importance.lookahead = *v;
  } else if (key == "k") {
    auto v = parse_int(value, what);
    if (!v) return v.error();
    cfg.draft = *v;
  }
  return ok_status();
}

}  // namespace

std::string_view to_string(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::kSlm:
      return "slm";
    case PolicyKind::kLlm:
      return "llm";
    case PolicyKind::kHlm:
      return "hlm";
    case PolicyKind::kRand:
      return "rand";
    case PolicyKind::kUhlm:
      return "uhlm";
    case PolicyKind::kIuhlm:
      return "iuhlm";
    case PolicyKind::kSpec:
      return "spec";
  }
  return "?";
}

std::string to_string(const PolicyConfig& cfg) {
  switch (cfg.kind) {
    case PolicyKind::kRand:
      return fmt::format("rand:r={}", cfg.rate);
    case PolicyKind::kUhlm:
      return fmt::format("uhlm:u_th={}", cfg.u_th);
    case PolicyKind::kIuhlm:
      return fmt::format("iuhlm:u_th={},lambda={},est={},u_hi={},s={},w={}", cfg.u_th,
                         cfg.importance.lambda_value(), to_string(cfg.importance.estimator),
                         cfg.u_hi, cfg.importance.sinks, cfg.importance.lookahead);
    case PolicyKind::kSpec:
      return fmt::format("spec:k={}", cfg.draft);
    default:
      return std::string(to_string(cfg.kind));
  }
}

Result<PolicyConfig> parse_policy(std::string_view text, const PolicyConfig& base) {
  auto opt = parse_option_string(text);
  if (!opt) return opt.error();
  auto kind = parse_kind(opt->name);
  if (!kind) return kind.error();
  PolicyConfig cfg = base;
  cfg.kind = *kind;
  const std::vector<std::string_view> keys = keys_of(cfg.kind);
  // Positional arguments cover the SPEC's signature only (s and w are keyed).
  const size_t n_positional = cfg.kind == PolicyKind::kIuhlm ? 4 : keys.size();
  if (opt->positional.size() > n_positional) {
    return make_error("policy '{}': {} takes at most {} arguments, got {}", text, opt->name,
                      n_positional, opt->positional.size());
  }
  for (size_t i = 0; i < opt->positional.size(); ++i) {
    if (auto s = set_key(cfg, keys[i], opt->positional[i]); !s) return s.error();
  }
  for (const auto& [key, value] : opt->keyed) {
    bool known = false;
    for (std::string_view k : keys) known = known || k == key;
    if (!known) {
      std::string valid;
      for (std::string_view k : keys) valid += fmt::format("{}{}", valid.empty() ? "" : ", ", k);
      return make_error("policy '{}': unknown key '{}' for {} (valid: {})", text, key, opt->name,
                        valid.empty() ? "none" : valid);
    }
    if (auto s = set_key(cfg, key, value); !s) return s.error();
  }
  if (auto s = validate(cfg); !s) return s.error();
  return cfg;
}

Status validate(const PolicyConfig& cfg) {
  if (!(cfg.rate >= 0.0 && cfg.rate <= 1.0)) {
    return make_error("rand: r = {} must lie in [0, 1]", cfg.rate);
  }
  if (!(cfg.u_th >= 0.0f && cfg.u_th <= 1.0f)) {
    return make_error("u_th = {} must lie in [0, 1] (u is a fraction of K samples)", cfg.u_th);
  }
  if (!(cfg.u_hi >= 0.0f && cfg.u_hi <= 1.0f)) {
    return make_error("u_hi = {} must lie in [0, 1] (1 disables the override)", cfg.u_hi);
  }
  if (cfg.draft < 1) return make_error("spec: k = {} must be at least 1", cfg.draft);
  const ImportanceConfig& imp = cfg.importance;
  if (!std::isfinite(imp.lambda_value())) return make_error("lambda must be finite");
  if (imp.sinks < 0) return make_error("s = {} sink positions must be >= 0", imp.sinks);
  if (imp.lookahead < 1) return make_error("w = {} look-ahead tokens must be >= 1", imp.lookahead);
  return ok_status();
}

bool is_per_token(PolicyKind kind) { return kind != PolicyKind::kLlm && kind != PolicyKind::kSpec; }

bool needs_uncertainty(const PolicyConfig& cfg) {
  return cfg.kind == PolicyKind::kUhlm || cfg.kind == PolicyKind::kIuhlm;
}

bool needs_importance(const PolicyConfig& cfg, float u) {
  return cfg.kind == PolicyKind::kIuhlm && u > cfg.u_th && !(u > cfg.u_hi);
}

bool decide_upload(const PolicyConfig& cfg, float u, const Importance* importance,
                   dist::Rng& policy_rng) {
  switch (cfg.kind) {
    case PolicyKind::kSlm:
      return false;
    case PolicyKind::kHlm:
      return true;
    case PolicyKind::kRand:
      return dist::uniform01(policy_rng) < cfg.rate;
    case PolicyKind::kUhlm:
      return u > cfg.u_th;
    case PolicyKind::kIuhlm:
      if (u > cfg.u_hi) return true;
      if (!(u > cfg.u_th)) return false;
      return importance == nullptr || importance->important;
    case PolicyKind::kLlm:
    case PolicyKind::kSpec:
      break;
  }
  assert(false && "llm and spec do not decide per token");
  return false;
}

}  // namespace hlm
