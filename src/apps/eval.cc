// hlm eval: every method on every prompt under the same seeds, with sweeps, a progress bar and
// resumable results (results.jsonl), then quality scoring (tools/eval/score.py: BERTScore and
// ROUGE-L) and the summary (summary.json, summary.csv: means with 95% CIs over prompts).
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "apps/options.h"
#include "apps/prompt.h"
#include "apps/run_options.h"
#include "eval/harness.h"
#include "eval/prompts.h"
#include "models/subprocess.h"

namespace hlm::apps {
namespace {

using nlohmann::json;

struct EvalOptions {
  PairOptions models;
  MethodOptions method;
  ProfileOptions profile;
  CostOptions cost;
  ThreadOptions threads;
  std::string methods = "slm,llm,hlm,rand,uhlm,iuhlm,spec";
  std::string prompts = "test";
  int n = 0;
  int max_tokens = 48;
  std::string sweep;
  std::string seeds = "42";
  std::string out;
  bool chat = true;
  std::string system;
  bool no_score = false;
  bool fast_score = false;
  std::string scorer;
  bool smoke = false;
  bool quiet = false;
};

// SPLIT (calibration, dev, test: data/prompts/SPLIT.jsonl of the source tree) or a file.
Result<std::string> resolve_prompts(const std::string& arg) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(arg, ec)) return arg;
  if (arg.find('/') == std::string::npos && arg.find('.') == std::string::npos) {
    const std::string rel = "data/prompts/" + arg + ".jsonl";
    if (std::string p = find_source_file(rel); !p.empty()) return p;
    return make_error(
        "--prompts {}: no file {} (set HLM_SOURCE_DIR to the source tree, or run "
        "python3 tools/eval/prepare_prompts.py)",
        arg, rel);
  }
  return make_error(
      "--prompts {}: no such file (give a JSONL file or a split: calibration, dev, "
      "test)",
      arg);
}

Result<std::vector<uint64_t>> parse_seeds(const std::string& csv) {
  std::vector<uint64_t> out;
  size_t start = 0;
  while (start <= csv.size()) {
    size_t end = csv.find(',', start);
    if (end == std::string::npos) end = csv.size();
    const std::string s = csv.substr(start, end - start);
    char* stop = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &stop, 10);
    if (s.empty() || *stop != '\0') return make_error("--seeds: '{}' is not an integer", s);
    out.push_back(v);
    start = end + 1;
  }
  return out;
}

// Whether Python can import a module (for the scorer's fast path).
bool python_has(const std::string& module) {
  auto r = run_process({"python3", "-c", "import " + module},
                       {SpawnOptions::Stdout::kDiscard, /*discard_stderr=*/true});
  return r.ok() && r->exit_code == 0;
}

std::string fmt_metric(const json& metrics, const char* name, int digits, double scale = 1.0) {
  if (!metrics.contains(name)) return "-";
  const auto& m = metrics[name];
  return fmt::format("{:.{}f}±{:.{}f}", scale * m["mean"].get<double>(), digits,
                     scale * m["ci95"].get<double>(), digits);
}

void print_table(const json& summary) {
  std::printf("%-6s %-34s %3s %13s %13s %13s %15s %11s\n", "method", "setting", "n",
              "BERTScore-llm", "ROUGE-L-llm", "upload rate", "energy/token J", "tokens/s");
  for (const auto& g : summary["groups"]) {
    const auto& m = g["metrics"];
    std::printf("%-6s %-34s %3d %13s %13s %13s %15s %11s\n", g["method"].get<std::string>().c_str(),
                g["setting"].get<std::string>().c_str(), g["n_prompts"].get<int>(),
                fmt_metric(m, "bertscore_f1_llm", 3).c_str(),
                fmt_metric(m, "rougeL_f1_llm", 3).c_str(), fmt_metric(m, "upload_rate", 3).c_str(),
                fmt_metric(m, "e_per_token_j", 3).c_str(),
                fmt_metric(m, "tokens_per_s", 3).c_str());
  }
}

int run_eval_command(EvalOptions o) {
  if (o.smoke) {
    // A few prompts, a few tokens, every method, a two-point sweep; ROUGE-only scoring.
    if (o.n <= 0) o.n = 2;
    o.max_tokens = std::min(o.max_tokens, 8);
    if (o.sweep.empty()) o.sweep = "u_th=0.05,0.2";
    o.fast_score = true;
    if (o.out.empty()) {
      std::string t = (std::filesystem::temp_directory_path() / "hlm_eval_smoke_XXXXXX").string();
      if (!::mkdtemp(t.data())) return fail("--smoke: cannot create a temporary --out directory");
      o.out = t;
    }
  }
  if (o.out.empty()) return fail("--out DIR is required (results are appended there)");
  auto methods = parse_methods(o.methods);
  if (!methods) return fail(methods.error());
  auto sweep = parse_sweep(o.sweep);
  if (!sweep) return fail(sweep.error());
  auto seeds = parse_seeds(o.seeds);
  if (!seeds) return fail(seeds.error());
  auto prompts_path = resolve_prompts(o.prompts);
  if (!prompts_path) return fail(prompts_path.error());
  auto records = load_prompts(*prompts_path, o.n);
  if (!records) return fail(records.error());
  auto pair = o.models.load();
  if (!pair) return fail(pair.error());
  auto profile = o.profile.resolve(*pair);
  if (!profile) return fail(profile.error());
  auto cost = o.cost.resolve(*pair, o.threads.threads);
  if (!cost) return fail(cost.error());
  auto base = o.method.config(o.max_tokens, o.models.ctx, profile->policy, *cost);
  if (!base) return fail(base.error());
  auto settings = expand_settings(*methods, *sweep, base->policy);
  if (!settings) return fail(settings.error());

  std::vector<EvalPrompt> prompts;
  for (const auto& r : *records) {
    PromptOptions po;
    po.prompt = r.prompt;
    po.chat = o.chat;
    po.system = o.system;
    auto ids = prepare_prompt(*pair->slm, po, o.models.ctx - o.max_tokens - 16);
    if (!ids) return fail(fmt::format("prompt {}: {}", r.id, ids.error().message));
    prompts.push_back({r.id, r.prompt, r.reference, std::move(*ids)});
  }

  EvalConfig cfg;
  cfg.settings = std::move(*settings);
  cfg.seeds = *seeds;
  cfg.base = *base;
  cfg.out_dir = o.out;
  const auto& pol = base->policy;
  cfg.fingerprint = {{"slm", pair->slm->path()},
                     {"llm", pair->llm->path()},
                     {"max_tokens", o.max_tokens},
                     {"ctx", o.models.ctx},
                     {"chat", o.chat},
                     {"system", o.system},
                     {"temperature", base->sampling.temperature},
                     {"top_k", base->sampling.top_k},
                     {"top_p", base->sampling.top_p},
                     {"encoding", o.method.encoding},
                     {"channel", o.method.channel},
                     {"unc_samples", o.method.unc_samples},
                     {"theta_max", o.method.theta_max},
                     {"profile", profile_json(*profile)},
                     {"cost", cost_json(base->cost)},
                     {"u_hi", pol.u_hi},
                     {"sinks", pol.importance.sinks},
                     {"lookahead", pol.importance.lookahead}};

  const bool tty = ::isatty(STDERR_FILENO) == 1;
  auto last_line = std::chrono::steady_clock::now() - std::chrono::hours(1);
  auto on_progress = [&](const EvalProgress& p) {
    if (o.quiet) return;
    const auto now = std::chrono::steady_clock::now();
    const bool end = p.done == p.total;
    if (tty) {
      std::fprintf(stderr, "\r\033[K%s", progress_bar(p).c_str());
      if (end) std::fprintf(stderr, "\n");
    } else if (end || now - last_line > std::chrono::seconds(15)) {
      std::fprintf(stderr, "%s\n", progress_bar(p).c_str());
      last_line = now;
    }
    std::fflush(stderr);
  };
  if (!o.quiet) {
    std::fprintf(
        stderr, "hlm eval: %zu prompts x %zu method settings x %zu seeds, %d tokens each -> %s\n",
        prompts.size(), cfg.settings.size(), cfg.seeds.size(), o.max_tokens, o.out.c_str());
  }
  ThreadPool pool(o.threads.threads);
  auto stats = run_eval(pair->slm, pair->llm, pool, cfg, prompts, on_progress);
  if (!stats) return fail(stats.error());
  if (!o.quiet) {
    std::fprintf(stderr, "hlm eval: %zu runs done, %zu found from an earlier run\n", stats->ran,
                 stats->skipped);
  }

  if (!o.no_score) {
    std::string scorer = o.scorer.empty() ? find_source_file("tools/eval/score.py") : o.scorer;
    std::vector<std::string> argv = {"python3", scorer, "--results", o.out + "/results.jsonl"};
    if (o.fast_score) argv.push_back("--fast");
    if (scorer.empty()) {
      if (!o.smoke)
        return fail(
            "tools/eval/score.py not found: set HLM_SOURCE_DIR, --scorer, or "
            "pass --no-score");
      std::fprintf(stderr, "hlm eval: --smoke: scorer not found; skipping the scores\n");
    } else if (o.fast_score && !python_has("rouge_score")) {
      std::fprintf(stderr,
                   "hlm eval: the fast scorer needs rouge-score (pip install -r "
                   "tools/eval/requirements.txt); skipping the scores\n");
    } else {
      if (!o.quiet) std::fprintf(stderr, "hlm eval: scoring with %s\n", scorer.c_str());
      auto r = run_process(argv, {SpawnOptions::Stdout::kToStderr, false});
      if (!r) return fail(fmt::format("cannot run the scorer: {}", r.error().message));
      if (r->exit_code != 0) {
        return fail(
            fmt::format("the scorer ({}) exited with {}; rerun it by hand or pass "
                        "--no-score",
                        scorer, r->exit_code));
      }
    }
  }
  auto summary = write_summary(o.out);
  if (!summary) return fail(summary.error());
  print_table(*summary);
  std::fprintf(stderr, "hlm eval: wrote %s/{results.jsonl,summary.json,summary.csv}\n",
               o.out.c_str());
  return 0;
}

}  // namespace

void add_eval_command(CLI::App& app, Commands& commands) {
  auto* sub = app.add_subcommand(
      "eval", "Evaluate methods side by side over a prompt set (resumable; scores and summary)");
  auto o = std::make_shared<EvalOptions>();
  o->models.add(sub);
  o->method.add(sub);
  o->profile.add(sub);
  o->cost.add(sub);
  o->threads.add(sub);
  sub->add_option("--methods", o->methods, "Comma-separated: slm,llm,hlm,rand,uhlm,iuhlm,spec")
      ->capture_default_str();
  sub->add_option("--prompts", o->prompts,
                  "A split (calibration, dev, test: data/prompts/SPLIT.jsonl) or a JSONL file")
      ->capture_default_str();
  sub->add_option("--n", o->n, "Use only the first N prompts (0: all)")
      ->check(finite_non_negative());
  sub->add_option("--max-tokens", o->max_tokens, "Tokens generated per run")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  sub->add_option("--sweep", o->sweep,
                  "Settings grid, e.g. 'u_th=0.05,0.1,0.2;lambda=1,2,3' (keys u_th, lambda, est, "
                  "u_hi, s, r, k; '|' joins grids)");
  sub->add_option("--seeds", o->seeds, "Comma-separated seeds; every method runs each")
      ->capture_default_str();
  sub->add_option("--out", o->out, "Output directory (resumes what it already holds)");
  sub->add_option("--chat", o->chat, "Wrap prompts in the chat template")->capture_default_str();
  sub->add_option("--system", o->system, "System message for the chat template");
  sub->add_flag("--no-score", o->no_score, "Skip the quality scoring (BERTScore, ROUGE-L)");
  sub->add_flag("--fast-score", o->fast_score, "Score ROUGE-L only (no BERTScore encoder)");
  sub->add_option("--scorer", o->scorer, "The scoring script (default: tools/eval/score.py)");
  sub->add_flag("--smoke", o->smoke,
                "Smoke test: 2 prompts, 8 tokens, sweep u_th=0.05,0.2, ROUGE-only scoring, a "
                "temporary --out unless given");
  sub->add_flag("--quiet", o->quiet, "No progress bar");
  commands.on(sub, [o] { return run_eval_command(*o); });
}

}  // namespace hlm::apps
