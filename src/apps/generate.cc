// hlm generate: load one model, optionally apply its chat template, evaluate the prompt in one
// batch, then sample and stream tokens until end-of-generation or --max-tokens.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "apps/command.h"
#include "apps/options.h"
#include "apps/prompt.h"
#include "engine/context.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "models/registry.h"
#include "tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace hlm::apps {
namespace {

struct GenerateOptions {
  ModelOptions model;
  ThreadOptions threads;
  SamplingOptions sampling;
  PromptOptions prompt;
  OutputOptions output;
};

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

void write_stdout(const std::string& s) {
  if (s.empty()) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

int run_generate(const GenerateOptions& o) {
  auto path = resolve_model(o.model.model);
  if (!path) return fail(path.error());
  auto loaded = Model::load(*path);
  if (!loaded) return fail(loaded.error());
  std::shared_ptr<const Model> model = *loaded;
  const Tokenizer& tok = model->tokenizer();

  auto prepared = prepare_prompt(*model, o.prompt, o.model.ctx);
  if (!prepared) return fail(prepared.error());
  const std::vector<int32_t>& prompt = *prepared;

  ThreadPool pool(o.threads.threads);
  Context ctx(model, /*n_seq=*/1, o.model.ctx, pool);
  Sampler sampler(o.sampling.params());

  const auto t0 = Clock::now();
  auto logits = ctx.eval_last(0, prompt);
  if (!logits) return fail(logits.error());
  const auto t1 = Clock::now();

  Utf8Stream stream;
  std::string out;
  auto emit = [&](const std::string& piece) {
    if (o.output.json) {
      out += piece;
    } else {
      write_stdout(piece);
    }
  };
  int n_tokens = 0;
  while (n_tokens < o.prompt.max_tokens) {
    const int32_t id = sampler.sample(*logits);
    if (tok.is_eog(id)) break;
    ++n_tokens;
    emit(stream.push(tok.token_to_piece(id)));
    if (n_tokens == o.prompt.max_tokens || ctx.n_past(0) >= ctx.n_ctx()) break;
    logits = ctx.eval_last(0, std::span<const int32_t>(&id, 1));
    if (!logits) return fail(logits.error());
  }
  emit(stream.flush());
  const auto t2 = Clock::now();
  const double gen_s = seconds(t1, t2);
  const double tokens_per_s = gen_s > 0 ? n_tokens / gen_s : 0.0;

  if (o.output.json) {
    nlohmann::json j = {{"text", out},
                        {"n_prompt_tokens", prompt.size()},
                        {"n_tokens", n_tokens},
                        {"tokens_per_s", tokens_per_s},
                        {"model", *path}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    write_stdout("\n");
    const double prompt_s = seconds(t0, t1);
    std::fprintf(stderr,
                 "hlm: %zu prompt tokens in %.2f s (%.1f tokens/s), %d generated at %.1f "
                 "tokens/s\n",
                 prompt.size(), prompt_s, prompt_s > 0 ? prompt.size() / prompt_s : 0.0, n_tokens,
                 tokens_per_s);
  }
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, Commands& commands) {
  auto* sub = app.add_subcommand("generate", "Generate text from a prompt with one model");
  auto o = std::make_shared<GenerateOptions>();
  o->model.add(sub);
  o->prompt.add(sub);
  o->sampling.add(sub);
  o->threads.add(sub);
  o->output.add(sub,
                "Print {text, n_prompt_tokens, n_tokens, tokens_per_s, model} as JSON "
                "instead of streaming");
  commands.on(sub, [o] { return run_generate(*o); });
}

}  // namespace hlm::apps
