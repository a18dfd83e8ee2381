// hlm bench engine: prompt-processing and decode speed of a model at 1 and 2 threads, with
// attention capture off and on, side by side with llama.cpp on the same file and threads (run
// from the PyPI oracle through tools/reference/bench_llamacpp.py when it is installed).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "apps/options.h"
#include "engine/context.h"
#include "models/registry.h"
#include "models/subprocess.h"

namespace hlm::apps {
namespace {

struct BenchOptions {
  ModelOptions model;
  OutputOptions output;
  std::vector<int> threads = {1, 2};
  int n_prompt = 128;
  int n_gen = 64;
  int reps = 3;
  bool reference = true;
  std::string python = "python3";
  std::string script = HLM_SOURCE_DIR "/tools/reference/bench_llamacpp.py";
};

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Speed {
  double pp = 0, tg = 0;
};

// Same protocol as llama-bench: pp = one batch of n_prompt tokens from an empty cache;
// tg = n_gen single-token steps from an empty cache; median over reps after a warm-up.
Speed measure(std::shared_ptr<const Model> model, int threads, bool capture,
              const BenchOptions& o) {
  ThreadPool pool(threads);
  Context ctx(model, 1, o.n_prompt + o.n_gen + 8, pool);
  AttentionRequest all = AttentionRequest::all(model->config().n_layer);
  const AttentionRequest* req = capture ? &all : nullptr;
  const int V = model->config().n_vocab;
  std::vector<int32_t> prompt(o.n_prompt);
  for (int i = 0; i < o.n_prompt; ++i) prompt[i] = (i * 7919 + 13) % V;
  std::vector<double> pp, tg;
  for (int rep = -1; rep < o.reps; ++rep) {
    ctx.clear(0);
    AttentionRows rows;
    auto t0 = Clock::now();
    (void)ctx.eval_last(0, prompt, req, &rows);
    const double t_pp = std::chrono::duration<double>(Clock::now() - t0).count();
    ctx.clear(0);
    int32_t tok = 1;
    t0 = Clock::now();
    for (int i = 0; i < o.n_gen; ++i) {
      auto z = ctx.eval_last(0, std::span<const int32_t>(&tok, 1), req, &rows);
      tok = (tok * 31 + i) % V;
    }
    const double t_tg = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rep >= 0) {
      pp.push_back(o.n_prompt / t_pp);
      tg.push_back(o.n_gen / t_tg);
    }
  }
  return {median(pp), median(tg)};
}

int run_bench(const BenchOptions& o) {
  auto path = resolve_model(o.model.model);
  if (!path) return fail(path.error());
  auto model = Model::load(*path);
  if (!model) return fail(model.error());
  nlohmann::json rows = nlohmann::json::array();
  bool have_reference = o.reference;
  std::string reference_note;
  for (int t : o.threads) {
    if (!o.output.json) std::fprintf(stderr, "bench: %d thread(s)...\n", t);
    const Speed off = measure(*model, t, false, o), on = measure(*model, t, true, o);
    nlohmann::json row = {{"threads", t},
                          {"pp_tokens_per_s", off.pp},
                          {"tg_tokens_per_s", off.tg},
                          {"pp_tokens_per_s_capture", on.pp},
                          {"tg_tokens_per_s_capture", on.tg}};
    if (have_reference) {
      auto r = run_process({o.python, o.script, "--model", *path, "--threads", std::to_string(t),
                            "--n-prompt", std::to_string(o.n_prompt), "--n-gen",
                            std::to_string(o.n_gen), "--reps", std::to_string(o.reps), "--json"},
                           {SpawnOptions::Stdout::kCapture, true});
      auto j = r.ok() && r->exit_code == 0 ? nlohmann::json::parse(r->out, nullptr, false)
                                           : nlohmann::json(nullptr);
      if (j.is_object() && j.contains("tg_tokens_per_s")) {
        row["llama_cpp"] = {{"pp_tokens_per_s", j["pp_tokens_per_s"]},
                            {"tg_tokens_per_s", j["tg_tokens_per_s"]},
                            {"reference", j.value("reference", "")}};
        row["pp_ratio"] = off.pp / j["pp_tokens_per_s"].get<double>();
        row["tg_ratio"] = off.tg / j["tg_tokens_per_s"].get<double>();
      } else {
        have_reference = false;
        reference_note = fmt::format(
            "llama.cpp reference unavailable ({}); install it with `pip install -r "
            "tools/reference/requirements.txt`",
            r.ok() ? fmt::format("{} exited with {}", o.script, r->exit_code) : r.error().message);
      }
    }
    rows.push_back(row);
  }
  if (o.output.json) {
    nlohmann::json j = {{"model", *path},
                        {"n_prompt", o.n_prompt},
                        {"n_gen", o.n_gen},
                        {"reps", o.reps},
                        {"results", rows}};
    if (!reference_note.empty()) j["note"] = reference_note;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model %s: pp = %d-token prompt batch, tg = %d decode steps, median of %d\n",
              path->c_str(), o.n_prompt, o.n_gen, o.reps);
  std::printf("%-8s %12s %12s %14s %14s %12s %12s %9s %9s\n", "threads", "pp tok/s", "tg tok/s",
              "pp +capture", "tg +capture", "llama pp", "llama tg", "pp ratio", "tg ratio");
  for (const auto& r : rows) {
    const bool ref = r.contains("llama_cpp");
    std::printf(
        "%-8d %12.1f %12.1f %14.1f %14.1f %12s %12s %9s %9s\n", r["threads"].get<int>(),
        r["pp_tokens_per_s"].get<double>(), r["tg_tokens_per_s"].get<double>(),
        r["pp_tokens_per_s_capture"].get<double>(), r["tg_tokens_per_s_capture"].get<double>(),
        ref ? fmt::format("{:.1f}", r["llama_cpp"]["pp_tokens_per_s"].get<double>()).c_str() : "-",
        ref ? fmt::format("{:.1f}", r["llama_cpp"]["tg_tokens_per_s"].get<double>()).c_str() : "-",
        ref ? fmt::format("{:.2f}", r["pp_ratio"].get<double>()).c_str() : "-",
        ref ? fmt::format("{:.2f}", r["tg_ratio"].get<double>()).c_str() : "-");
  }
  if (!reference_note.empty()) std::printf("note: %s\n", reference_note.c_str());
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Commands& commands) {
  auto* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  auto* sub = bench->add_subcommand(
      "engine", "Prompt and decode speed, attention capture off and on, beside llama.cpp");
  auto o = std::make_shared<BenchOptions>();
  o->model.add(sub);
  sub->add_option("--threads", o->threads, "Thread counts to measure")->capture_default_str();
  sub->add_option("--n-prompt", o->n_prompt, "Prompt batch size")->capture_default_str();
  sub->add_option("--n-gen", o->n_gen, "Decode steps")->capture_default_str();
  sub->add_option("--reps", o->reps, "Repetitions (median reported)")->capture_default_str();
  sub->add_flag("!--no-reference", o->reference, "Skip the llama.cpp comparison");
  sub->add_option("--python", o->python, "Python interpreter with llama-cpp-python")
      ->capture_default_str();
  o->output.add(sub);
  commands.on(sub, [o] { return run_bench(*o); });
}

}  // namespace hlm::apps
