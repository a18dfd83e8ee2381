// hlm calibrate (SPEC §9): full verification over calibration prompts, the (u, β) fit and the
// risk-averse and risk-prone thresholds.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "apps/options.h"
#include "apps/prompt.h"
#include "apps/run_options.h"
#include "eval/calibration.h"
#include "eval/prompts.h"

namespace hlm::apps {
namespace {

struct CalibrateOptions {
  PairOptions models;
  MethodOptions method;
  ThreadOptions threads;
  OutputOptions output;
  std::string prompts;
  int limit = 0;
  int max_tokens = 64;
  bool chat = true;
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
  if (o.output.json) {
    nlohmann::json j = {{"n_tokens", f.n},
                        {"n_prompts", prompts.size()},
                        {"a", f.a},
                        {"b", f.b},
                        {"correlation", f.correlation},
                        {"delta", f.delta},
                        {"mean_beta", f.mean_beta},
                        {"u_th_risk_averse", f.u_th_averse},
                        {"u_th_risk_prone", f.u_th_prone},
                        {"slm", pair->slm->path()},
                        {"llm", pair->llm->path()},
                        {"temperature", cfg->sampling.temperature}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("calibration over %zu prompts, %lld drafted tokens (T = %.2f)\n", prompts.size(),
                static_cast<long long>(f.n), cfg->sampling.temperature);
    std::printf("  fit          beta = %.4f * u %+.4f   (correlation r = %.3f)\n", f.a, f.b,
                f.correlation);
    std::printf("  Delta        P(q(d) < p(d)) = %.4f, mean beta = %.4f\n", f.delta, f.mean_beta);
    std::printf("  thresholds   risk-averse u_th = %.4f, risk-prone u_th = %.4f\n", f.u_th_averse,
                f.u_th_prone);
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
  o->output.add(sub, "Print the fit as one JSON object");
  commands.on(sub, [o] { return run_calibrate(*o); });
}

}  // namespace hlm::apps
