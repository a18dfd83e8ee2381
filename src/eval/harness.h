// Harness: the evaluation loop behind `hlm eval`. Runs every method on every prompt under every
// sweep setting and seed, appends one JSON line per run to results.jsonl (so an interrupted run
// resumes where it stopped), and summarises the lines into means with 95% confidence intervals
// over prompts (summary.json, summary.csv).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "device/device.h"
#include "util/result.h"

namespace hlm {

// ---------------------------------------------------------------------------------- settings

// One point of a sweep: key -> value, keys among u_th, lambda, est, u_hi, s, r, k.
using SweepPoint = std::map<std::string, std::string>;

// "u_th=0.05,0.1;lambda=1,2" is the cartesian product of the ';'-separated axes (',' separates
// values); '|' joins several such grids ("est=focus;lambda=2,3 | est=entropy;lambda=0.2").
// est takes focus, entropy, received or received(w). An empty text is one empty point.
Result<std::vector<SweepPoint>> parse_sweep(std::string_view text);

// "slm,llm,hlm,rand,uhlm,iuhlm,spec" (any subset, in any order, no repeats).
Result<std::vector<std::string>> parse_methods(std::string_view csv);

// One method at one setting. `label` names the setting by the keys that method uses
// ("default" when it uses none); results are keyed by (prompt, method, label, seed).
struct EvalSetting {
  std::string method;
  std::string label;
  PolicyConfig policy;
  // rand without an explicit r: r is set to the mean upload rate measured for iuhlm at the
  // setting with this label (so the two are compared at the same upload budget).
  std::string match_iuhlm;
};

// Expands methods × sweep points into distinct settings, in run order: iuhlm before rand (rand
// needs its rate), otherwise the given order; duplicates (a key a method does not use) merge.
// `base` supplies every value the sweep does not set.
Result<std::vector<EvalSetting>> expand_settings(const std::vector<std::string>& methods,
                                                 const std::vector<SweepPoint>& sweep,
                                                 const PolicyConfig& base);

// ------------------------------------------------------------------------------------ running

struct EvalPrompt {
  std::string id;
  std::string text;          // the prompt as given (before the chat template)
  std::string reference;     // the data set's answer ("" if none)
  std::vector<int32_t> ids;  // prepared token ids (chat template applied)
};

struct EvalConfig {
  std::vector<EvalSetting> settings;
  std::vector<uint64_t> seeds = {42};
  RunConfig base;       // sampling (its seed is replaced per run), uncertainty, channel, limits
  std::string out_dir;  // created if missing
  // Recorded in config.json on the first run; a later run into the same directory must match
  // it (models, sampling, channel, token limit...), otherwise it refuses to mix results.
  nlohmann::json fingerprint = nlohmann::json::object();
};

struct EvalProgress {
  size_t done = 0;  // finished or skipped
  size_t total = 0;
  size_t skipped = 0;  // found in results.jsonl
  size_t ran = 0;
  double elapsed_s = 0;
  double eta_s = 0;  // from the mean time of the runs done in this session
  const EvalSetting* setting = nullptr;
  const EvalPrompt* prompt = nullptr;
};

struct EvalStats {
  size_t total = 0, skipped = 0, ran = 0;
};

// The sampling seed of the run of `seed` on one prompt: shared by every method on that prompt,
// distinct across prompts.
uint64_t run_seed(uint64_t seed, const std::string& prompt_id);

// The key under which a run is recorded (and found again on resume).
std::string run_key(const std::string& prompt_id, const std::string& method,
                    const std::string& label, uint64_t seed);

// Runs every setting × seed × prompt not yet present in out_dir/results.jsonl (prompt by prompt
// through all settings; rand matched to iuhlm last, once iuhlm's rates are known), appending and
// flushing one line per run. Writes out_dir/prompts.jsonl (id, prompt, reference) and config.json.
// A partial last line left by an interruption is dropped first. `on_progress` is called before each
// run and at the end.
Result<EvalStats> run_eval(std::shared_ptr<const Model> slm, std::shared_ptr<const Model> llm,
                           ThreadPool& pool, const EvalConfig& config,
                           const std::vector<EvalPrompt>& prompts,
                           const std::function<void(const EvalProgress&)>& on_progress = {});

// One results.jsonl line from a run (summary_json fields plus ids, derived per-token metrics).
nlohmann::json result_line(const EvalPrompt& prompt, const EvalSetting& setting, uint64_t seed,
                           const RunConfig& config, const RunResult& result);

// A progress bar with elapsed time and ETA, e.g. "[#####.....] 12/40 30% 1m02s ETA 2m10s ...".
std::string progress_bar(const EvalProgress& p, int width = 30);

// ---------------------------------------------------------------------------------- summaries

// Mean and half-width of the two-sided 95% Student-t confidence interval (0 for n < 2).
struct MeanCi {
  size_t n = 0;
  double mean = 0;
  double ci95 = 0;
  double sd = 0;
};
MeanCi mean_ci95(const std::vector<double>& values);
// The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1).
double student_t975(int df);

// The numeric per-run metrics the summary averages, in column order.
const std::vector<std::string>& summary_metrics();

// Reads out_dir/results.jsonl (and out_dir/scores.jsonl when the scorer has run: its lines
// carry `key` plus score fields), averages each metric per prompt over seeds, then over prompts
// (mean and 95% CI) per method and setting; adds energy_saving_vs_hlm, paired per prompt and
// seed with the hlm run: 1 − E/E_hlm on energy per token. Writes summary.json and summary.csv
// and returns the summary.
Result<nlohmann::json> write_summary(const std::string& out_dir);

// Reads a JSONL file into objects; a trailing partial line is ignored. Missing file: empty.
Result<std::vector<nlohmann::json>> read_jsonl(const std::string& path);

// Where the source tree may be: $HLM_SOURCE_DIR, the tree this binary was built from, the
// working directory.
std::vector<std::string> source_roots();
// A file of the source tree (data/prompts/dev.jsonl, tools/eval/score.py): the first of
// source_roots() that has it; empty when none has it.
std::string find_source_file(const std::string& relative);

// Writes a file whole or not at all (a temporary beside it, then a rename).
Status write_text(const std::string& path, const std::string& text);

}  // namespace hlm
