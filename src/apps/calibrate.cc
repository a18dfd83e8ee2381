// hlm calibrate (SPEC §9): full verification over calibration prompts, the (u, β) fit, the
// risk-averse and risk-prone thresholds, the operating point of the skip-risk rule, and with
// --save the pair profile the hybrid commands then use (eval/profile.h).
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "apps/command.h"
#include "apps/options.h"
#include "apps/prompt.h"
#include "apps/run_options.h"
#include "eval/calibration.h"
#include "eval/profile.h"
#include "eval/prompts.h"
#include "models/fingerprint.h"

namespace hlm::apps {
namespace {

// The skip-risk budget of the shipped profile: see docs/profiles.md for the dev-split figures
// that made it the default.
constexpr double kDefaultMaxRisk = 0.10;

struct CalibrateOptions {
  PairOptions models;
  MethodOptions method;
  ThreadOptions threads;
  OutputOptions output;
  std::string prompts;
  int limit = 0;
  int max_tokens = 64;
  bool chat = true;
  double max_risk = kDefaultMaxRisk;
  std::optional<std::string> save;  // --save [FILE]; "" without FILE: the models cache
};

int run_calibrate(const CalibrateOptions& o) {
  auto pair = o.models.load();
  if (!pair) return fail(pair.error());
  auto cfg = o.method.config(o.max_tokens, o.models.ctx);
  if (!cfg) return fail(cfg.error());
  auto records = load_prompts(o.prompts, o.limit);
  if (!records) return fail(records.error());
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& r : *records) {
    PromptOptions po;
    po.prompt = r.prompt;
    po.chat = o.chat;
    auto ids = prepare_prompt(*pair->slm, po, o.models.ctx - o.max_tokens - 8);
    if (!ids) return fail(fmt::format("prompt {}: {}", r.id, ids.error().message));
    prompts.push_back(std::move(*ids));
  }
  ThreadPool pool(o.threads.threads);
  auto points =
      collect_calibration(pair->slm, pair->llm, pool, *cfg, prompts, [&](size_t i, size_t n) {
        std::fprintf(stderr, "\rcalibrate: prompt %zu/%zu", i + 1, n);
        std::fflush(stderr);
      });
  std::fprintf(stderr, "\n");
  if (!points) return fail(points.error());
  const CalibrationFit f = fit_calibration(*points);
  const ThresholdChoice choice = choose_u_th(*points, o.max_risk);
  nlohmann::json curve = nlohmann::json::array();  // [u, skip_share, risk] per u level
  for (const RiskLevel& l : risk_curve(*points)) curve.push_back({l.u, l.skip_share, l.risk});
  std::string saved;
  if (o.save) {
    PairProfile p;
    p.slm = {model_fingerprint(pair->slm->gguf()),
             std::filesystem::path(pair->slm->path()).filename().string()};
    p.llm = {model_fingerprint(pair->llm->gguf()),
             std::filesystem::path(pair->llm->path()).filename().string()};
    p.prompts = o.prompts;
    p.n_prompts = int64_t(prompts.size());
    p.max_tokens = o.max_tokens;
    p.temperature = cfg->sampling.temperature;
    p.unc_samples = cfg->uncertainty.samples;
    p.theta_max = cfg->uncertainty.theta_max;
    p.fit = f;
    p.choice = choice;
    p.estimator = cfg->policy.importance.estimator;
    p.lambda = cfg->policy.importance.lambda_value();
    p.importance_rule = o.method.estimator || o.method.lambda
                            ? "given to hlm calibrate (--estimator, --lambda)"
                            : "hlm's defaults: the importance study on the dev split "
                              "(docs/RESULTS.md)";
    p.hlm_version = HLM_VERSION;
    saved = o.save->empty() ? default_profile_path(p) : *o.save;
    if (auto st = save_profile(p, saved); !st) return fail(st.error());
  }
  if (o.output.json) {
    nlohmann::json j = {{"n_tokens", f.n},
                        {"n_prompts", prompts.size()},
                        {"u_th", choice.u_th},
                        {"max_risk", choice.max_risk},
                        {"skip_share", choice.skip_share},
                        {"risk", choice.risk},
                        {"profile", saved.empty() ? nlohmann::json() : nlohmann::json(saved)},
                        {"risk_curve", curve},
                        {"slm", pair->slm->path()},
                        {"llm", pair->llm->path()},
                        {"temperature", cfg->sampling.temperature}};
    for_each_fit_value(f, [&](const char* name, double v) { j[name] = v; });
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("calibration over %zu prompts, %lld drafted tokens (T = %.2f)\n", prompts.size(),
                static_cast<long long>(f.n), cfg->sampling.temperature);
    std::printf("  fit          beta = %.4f * u %+.4f   (correlation r = %.3f)\n", f.a, f.b,
                f.correlation);
    std::printf("  Delta        P(q(d) < p(d)) = %.4f, mean beta = %.4f\n", f.delta, f.mean_beta);
    std::printf("  thresholds   risk-averse u_th = %.4f, risk-prone u_th = %.4f\n", f.u_th_averse,
                f.u_th_prone);
    std::printf(
        "  skip-risk    u_th = %.4f skips %.1f%% of these tokens, expected rejections "
        "let through %.3f per token (budget %.3f)\n",
        choice.u_th, 100 * choice.skip_share, choice.risk, choice.max_risk);
    if (!saved.empty()) std::printf("  profile      %s\n", saved.c_str());
  }
  return 0;
}

}  // namespace

void add_calibrate_command(CLI::App& app, Commands& commands) {
  auto* sub = app.add_subcommand("calibrate",
                                 "Fit the rejection rate against uncertainty (beta ~ a*u + b) and "
                                 "derive the upload thresholds");
  auto o = std::make_shared<CalibrateOptions>();
  o->models.add(sub);
  o->method.add(sub);
  o->threads.add(sub);
  sub->add_option("--prompts", o->prompts, "Calibration prompts (JSONL with a \"prompt\" field)")
      ->required();
  sub->add_option("--n", o->limit, "Use only the first N prompts (0: all)");
  sub->add_option("--max-tokens", o->max_tokens, "Tokens generated per prompt")
      ->capture_default_str();
  sub->add_option("--chat", o->chat, "Wrap prompts in the chat template")->capture_default_str();
  sub->add_option("--max-risk", o->max_risk,
                  "Skip-risk budget: the chosen u_th skips tokens whose expected rejections "
                  "add up to at most this share of all drafted tokens")
      ->capture_default_str()
      ->check(finite_range(0, 1));
  sub->add_option("--save", o->save,
                  "Write the pair profile (fingerprints, fit, u_th, estimator and lambda) to FILE; "
                  "without FILE to the models cache's profiles/, where the hybrid commands find it")
      ->expected(0, 1)
      ->type_name("[FILE]");
  o->output.add(sub, "Print the fit as one JSON object");
  commands.on(sub, [o] { return run_calibrate(*o); });
}

}  // namespace hlm::apps
