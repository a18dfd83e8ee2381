// Pair profiles: JSON reading and writing, and the search for the profile of a loaded pair.
#include "eval/profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "eval/harness.h"
#include "eval/json_fields.h"
#include "models/registry.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

// A float as the double of its shortest decimal form, so the file says 0.8 rather than
// 0.800000011920929 and reading it back gives the same float.
double decimal(float x) { return std::stod(fmt::format("{}", x)); }

}  // namespace

std::string profile_to_json(const PairProfile& p) {
  const CalibrationFit& f = p.fit;
  ojson j;
  j["format"] = kProfileFormat;
  j["hlm_version"] = p.hlm_version;
  for (auto [key, m] : {std::pair{"slm", &p.slm}, {"llm", &p.llm}}) {
    j[key] = {{"fingerprint", m->fingerprint}, {"file", m->file}};
  }
  j["u_th"] = p.choice.u_th;
  j["rule"] = {{"name", "skip-risk"},
               {"max_risk", p.choice.max_risk},
               {"skip_share", p.choice.skip_share},
               {"risk", p.choice.risk},
               {"text",
                "the largest u_th at which the calibration tokens it skips (u <= u_th) carry an "
                "expected rejection mass sum(beta)/n of at most max_risk per drafted token"}};
  j["importance"] = {{"estimator", std::string(to_string(p.estimator))},
                     {"lambda", decimal(p.lambda)},
                     {"rule", p.importance_rule}};
  j["calibration"] = {{"prompts", p.prompts},
                      {"n_prompts", p.n_prompts},
                      {"n_tokens", f.n},
                      {"max_tokens", p.max_tokens},
                      {"temperature", decimal(p.temperature)},
                      {"unc_samples", p.unc_samples},
                      {"theta_max", decimal(p.theta_max)}};
  for_each_fit_value(f, [&](const char* name, double v) { j["calibration"][name] = v; });
  return j.dump(2) + "\n";
}

Result<PairProfile> parse_profile(const std::string& text, const std::string& source) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error("{}: not valid JSON (expected a pair profile)", source);
  if (!j.is_object()) return make_error("{}: expected a JSON object (a pair profile)", source);
  FieldReader r(source);
  PairProfile p;
  auto format = r.string(j, "", "format");
  if (!format) return format.error();
  if (*format != kProfileFormat) {
    return make_error("{}: field 'format' is '{}', expected '{}'", source, *format, kProfileFormat);
  }
  auto version = r.string(j, "", "hlm_version");
  if (!version) return version.error();
  p.hlm_version = *version;
  for (auto [key, m] : {std::pair{"slm", &p.slm}, {"llm", &p.llm}}) {
    auto o = r.object(j, "", key);
    if (!o) return o.error();
    auto fp = r.string(**o, key, "fingerprint");
    if (!fp) return fp.error();
    if (fp->size() != 64 || !std::all_of(fp->begin(), fp->end(),
                                         [](unsigned char c) { return std::isxdigit(c) != 0; })) {
      return make_error(
          "{}: field '{}.fingerprint' must be 64 hex digits (hlm's model "
          "fingerprint), got '{}'",
          source, key, *fp);
    }
    auto file = r.string(**o, key, "file");
    if (!file) return file.error();
    *m = {*fp, *file};
  }
  auto u_th = r.number(j, "", "u_th", 0, 1);
  if (!u_th) return u_th.error();
  p.choice.u_th = *u_th;
  auto rule = r.object(j, "", "rule");
  if (!rule) return rule.error();
  for (auto [key, out] : {std::pair{"max_risk", &p.choice.max_risk},
                          {"skip_share", &p.choice.skip_share},
                          {"risk", &p.choice.risk}}) {
    auto x = r.number(**rule, "rule", key, 0, 1);
    if (!x) return x.error();
    *out = *x;
  }
  auto imp = r.object(j, "", "importance");
  if (!imp) return imp.error();
  auto est = r.string(**imp, "importance", "estimator");
  if (!est) return est.error();
  auto e = parse_estimator(*est);
  if (!e) return make_error("{}: field 'importance.estimator': {}", source, e.error().message);
  p.estimator = *e;
  auto lambda = r.number(**imp, "importance", "lambda", -1e6, 1e6);
  if (!lambda) return lambda.error();
  p.lambda = float(*lambda);
  auto imp_rule = r.string(**imp, "importance", "rule");
  if (!imp_rule) return imp_rule.error();
  p.importance_rule = *imp_rule;
  auto cal = r.object(j, "", "calibration");
  if (!cal) return cal.error();
  auto prompts = r.string(**cal, "calibration", "prompts");
  if (!prompts) return prompts.error();
  p.prompts = *prompts;
  CalibrationFit& f = p.fit;
  double n_prompts = 0, n_tokens = 0, max_tokens = 0, temperature = 0, unc_samples = 0,
         theta_max = 0;
  const std::pair<const char*, double*> fields[] = {{"n_prompts", &n_prompts},
                                                    {"n_tokens", &n_tokens},
                                                    {"max_tokens", &max_tokens},
                                                    {"temperature", &temperature},
                                                    {"unc_samples", &unc_samples},
                                                    {"theta_max", &theta_max},
                                                    {"a", &f.a},
                                                    {"b", &f.b},
                                                    {"correlation", &f.correlation},
                                                    {"delta", &f.delta},
                                                    {"mean_beta", &f.mean_beta},
                                                    {"u_th_risk_averse", &f.u_th_averse},
                                                    {"u_th_risk_prone", &f.u_th_prone}};
  for (auto [key, out] : fields) {
    auto x = r.number(**cal, "calibration", key);
    if (!x) return x.error();
    *out = *x;
  }
  p.n_prompts = int64_t(n_prompts);
  f.n = int64_t(n_tokens);
  p.max_tokens = int(max_tokens);
  p.temperature = float(temperature);
  p.unc_samples = int(unc_samples);
  p.theta_max = float(theta_max);
  return p;
}

Result<PairProfile> load_profile(const std::string& path) {
  auto text = read_text_file(path, "the pair profile");
  if (!text) return text.error();
  return parse_profile(*text, path);
}

Status save_profile(const PairProfile& p, const std::string& path) {
  return save_text_file(path, profile_to_json(p));
}

PolicyConfig profile_policy(const PairProfile& p) {
  PolicyConfig c;
  c.u_th = float(p.choice.u_th);
  c.importance.estimator = p.estimator;
  c.importance.pair_lambda = ImportanceConfig::PairLambda{p.estimator, p.lambda};
  return c;
}

std::vector<std::string> search_dirs(const char* env_var, const std::string& relative) {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv(env_var); env && *env) dirs.emplace_back(env);
  dirs.push_back((fs::path(models_dir()) / relative).string());
  std::error_code ec;
  for (const auto& root : source_roots()) {
    const fs::path d = fs::path(root) / relative;
    if (fs::is_directory(d, ec)) dirs.push_back(d.string());
  }
  return dirs;
}

std::vector<std::string> profile_dirs() { return search_dirs("HLM_PROFILES_DIR", "profiles"); }

std::string default_profile_path(const PairProfile& p) {
  return (fs::path(models_dir()) / "profiles" /
          fmt::format("{}-{}.json", p.slm.fingerprint.substr(0, 12),
                      p.llm.fingerprint.substr(0, 12)))
      .string();
}

Result<ProfileChoice> find_profile(const std::string& explicit_path,
                                   const std::string& slm_fingerprint,
                                   const std::string& llm_fingerprint) {
  ProfileChoice c;
  const auto fits = [&](const PairProfile& p) {
    return p.slm.fingerprint == slm_fingerprint &&
           (llm_fingerprint.empty() || p.llm.fingerprint == llm_fingerprint);
  };
  const auto take = [&c](std::string path, PairProfile p) {
    c.path = std::move(path);
    c.policy = profile_policy(p);
    c.profile = std::move(p);
    return c;
  };
  const std::string fallback = fmt::format(
      "using U-HLM's published u_th = {:.3f} (TinyLlama-1.1B -> Llama-2-7B) and the built-in "
      "importance defaults ({}, lambda = {:g}); `hlm calibrate --save` fits this pair",
      kDefaultUth, to_string(ImportanceConfig{}.estimator), ImportanceConfig{}.lambda_value());
  if (explicit_path == "none") {
    c.note = fmt::format("hlm: --profile none: {}", fallback);
    return c;
  }
  if (!explicit_path.empty()) {
    auto p = load_profile(explicit_path);
    if (!p) return p.error();
    if (p->slm.fingerprint != slm_fingerprint) {
      return make_error(
          "--profile {}: it was calibrated for another device model ({}, "
          "fingerprint {}), not the loaded one (fingerprint {})",
          explicit_path, p->slm.file, p->slm.fingerprint.substr(0, 12),
          slm_fingerprint.substr(0, 12));
    }
    if (!llm_fingerprint.empty() && p->llm.fingerprint != llm_fingerprint) {
      return make_error(
          "--profile {}: it was calibrated for another cloud model ({}, "
          "fingerprint {}), not the loaded one (fingerprint {})",
          explicit_path, p->llm.file, p->llm.fingerprint.substr(0, 12),
          llm_fingerprint.substr(0, 12));
    }
    return take(explicit_path, std::move(*p));
  }
  const std::vector<std::string> dirs = profile_dirs();
  for (const auto& dir : dirs) {
    for (const auto& f : json_files_in(dir)) {
      auto p = load_profile(f);
      if (!p) return p.error();
      if (fits(*p)) return take(f, std::move(*p));
    }
  }
  std::string searched;
  for (const auto& d : dirs) searched += fmt::format("{}{}", searched.empty() ? "" : ", ", d);
  c.note = fmt::format("hlm: no pair profile matches these models (searched {}): {}", searched,
                       fallback);
  return c;
}

}  // namespace hlm
