// hlm bench engine: prompt-processing and decode speed of a model at 1 and 2 threads, with
// attention capture off and on, side by side with llama.cpp on the same file and threads (run
// from the PyPI oracle through tools/reference/bench_llamacpp.py when it is installed); in the
// same run, the machine's memory bandwidth, the share of it decode streams as weights, and the
// process's resident memory against the file's size. With --save-cost it measures instead the
// forward's time over a grid of sizes and contexts (and the device's filter), fits the lines of a
// cost profile (eval/cost_profile.h, docs/energy.md) and saves it.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/command.h"
#include "apps/cost_options.h"
#include "apps/options.h"
#include "engine/context.h"
#include "eval/cost_profile.h"
#include "method/importance.h"
#include "method/uncertainty.h"
#include "models/registry.h"
#include "models/subprocess.h"
#include "ops/ops.h"

namespace hlm::apps {
namespace {

struct BenchOptions {
  ModelOptions model;
  OutputOptions output;
  std::vector<int> threads = {1, 2};
  int n_prompt = 128;
  int n_gen = 64;
  int depth = 0;
  int reps = 3;
  int bandwidth_mib = 1024;
  bool capture = true;
  bool reference = true;
  std::string python = "python3";
  std::string script = HLM_SOURCE_DIR "/tools/reference/bench_llamacpp.py";
  SaveCostOptions save;  // --save-cost FILE, its name, hardware and powers
  std::string cost_role = "device";
};

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Speed {
  double pp = 0, tg = 0;
};

// n token ids spread over the model's vocabulary: text no tokenizer made, as llama-bench times.
std::vector<int32_t> synthetic_tokens(const Model& model, int n, int salt) {
  const int V = model.config().n_vocab;
  std::vector<int32_t> t(size_t(std::max(n, 0)));
  for (int i = 0; i < n; ++i) t[size_t(i)] = int32_t((int64_t(i) * 7919 + salt) % V);
  return t;
}

// Same protocol as llama-bench: pp = one batch of n_prompt tokens after `depth` cached ones;
// tg = n_gen single-token steps after `depth` cached ones; median over reps after a warm-up. The
// context holds --ctx positions (the KV cache is allocated for all of them, as a server's is).
Speed measure(std::shared_ptr<const Model> model, int threads, bool capture,
              const BenchOptions& o) {
  ThreadPool pool(threads);
  Context ctx(model, 1, o.model.ctx, pool);
  AttentionRequest all = AttentionRequest::all(model->config().n_layer);
  const AttentionRequest* req = capture ? &all : nullptr;
  const int V = model->config().n_vocab;
  const std::vector<int32_t> prompt = synthetic_tokens(*model, o.n_prompt, 13),
                             context = synthetic_tokens(*model, o.depth, 101);
  for (int i = 0; i < o.depth; i += 512) {  // the cached tokens, once, in llama.cpp-sized batches
    const int n = std::min(512, o.depth - i);
    (void)ctx.eval_last(0, std::span<const int32_t>(context.data() + i, n));
  }
  std::vector<double> pp, tg;
  for (int rep = -1; rep < o.reps; ++rep) {
    ctx.truncate(0, o.depth);
    AttentionRows rows;
    auto t0 = Clock::now();
    (void)ctx.eval_last(0, prompt, req, &rows);
    const double t_pp = std::chrono::duration<double>(Clock::now() - t0).count();
    ctx.truncate(0, o.depth);
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

// Memory bandwidth as decode sees it: `threads` threads each stream through their share of a
// buffer far larger than the caches, summing its 64-bit words; the best of five passes, in GB/s
// (10^9 bytes per second). The buffer is written first so its pages are resident.
double read_bandwidth_gbps(int threads, size_t mib) {
  const size_t n = mib * (size_t(1) << 20) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
  ThreadPool pool(threads);
  std::vector<uint64_t> sums(size_t(threads) * 8);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = Clock::now();
    pool.parallel_for(n, 1 << 16, [&](size_t b, size_t e, int worker) {
      uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;  // independent sums keep the loads in flight
      for (size_t i = b; i + 4 <= e; i += 4) {
        a0 += buf[i];
        a1 += buf[i + 1];
        a2 += buf[i + 2];
        a3 += buf[i + 3];
      }
      sums[size_t(worker) * 8] += a0 ^ a1 ^ a2 ^ a3;
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * sizeof(uint64_t)) / s / 1e9);
  }
  uint64_t sink = 0;
  for (uint64_t v : sums) sink ^= v;
  if (sink == 1) std::fprintf(stderr, " ");  // keeps the reads from being optimised away
  return best;
}

// This process's resident memory now and at its peak (VmRSS, VmHWM of /proc/self/status), bytes.
struct Resident {
  double now = 0, peak = 0;
};
// Restarts VmHWM from the current VmRSS (so the bandwidth buffer's pages do not count as the
// model's peak).
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }
Resident resident_memory() {
  Resident r;
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    double kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %lf kB", &kb) == 1) r.now = kb * 1024;
    if (std::sscanf(line.c_str(), "VmHWM: %lf kB", &kb) == 1) r.peak = kb * 1024;
  }
  return r;
}

// Bytes of weights one decode step reads: every matrix once, the embedding only as one row
// (unless it is also the output matrix). GGUF bytes, the same as the tiled copies except Q8_0's
// (6% more in tiles).
double decode_weight_bytes(const Model& m) {
  const Weight& e = m.token_embd();
  const bool tied = m.output().data == e.data;
  return static_cast<double>(m.weight_bytes()) -
         (tied ? 0.0
               : static_cast<double>(e.rows) * static_cast<double>(row_bytes(e.type, e.cols)));
}

// ------------------------------------------------------------------------------ cost profiles

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The shortest time of `reps` calls of f after one warm-up call: on a shared machine other
// processes only ever add time, so the minimum is the estimate of the hardware's own cost that
// moves least from run to run.
template <class F>
double min_time(int reps, F&& f) {
  double best = 1e300;
  for (int rep = -1; rep < reps; ++rep) {
    const auto t0 = Clock::now();
    f();
    if (rep >= 0) best = std::min(best, seconds_since(t0));
  }
  return best;
}

Result<CostLine> fit_or_explain(const std::vector<CostSample>& samples, unsigned terms,
                                const char* what) {
  auto line = fit_cost_line(samples, terms);
  if (!line) return make_error("--save-cost: fitting {}: {}", what, line.error().message);
  return line;
}

// The forward's time for n positions after `context` cached ones, over a grid of both; with
// `batch`, also batches of single positions (one per sequence) after `context`.
Result<CostLine> measure_forward(std::shared_ptr<const Model> model, ThreadPool& pool,
                                 const BenchOptions& o, bool capture, bool batch) {
  const int n_seq = batch ? 4 : 1;
  Context ctx(model, n_seq, o.model.ctx, pool);
  AttentionRequest all = AttentionRequest::all(model->config().n_layer);
  const std::vector<int32_t> tokens = synthetic_tokens(*model, o.model.ctx, 13);
  const std::span<const int32_t> toks(tokens);
  std::vector<CostSample> samples;
  for (int context : {32, 128, 384}) {
    for (int n : {1, 2, 4, 8, 16, 32}) {
      if (context + n > o.model.ctx) continue;
      for (int s = 0; s < n_seq; ++s) {
        ctx.clear(s);
        (void)ctx.eval_last(s, toks.first(size_t(context)));
      }
      const double t = min_time(o.reps, [&] {
        ctx.truncate(0, context);
        AttentionRows rows;
        (void)ctx.eval_last(0, toks.subspan(size_t(context), size_t(n)), capture ? &all : nullptr,
                            &rows);
      });
      samples.push_back({{double(n), double(context), 1}, t});
      if (!batch || n != 1) continue;
      for (int b : {2, 4}) {
        const double tb = min_time(o.reps, [&] {
          std::vector<SeqInput> in;
          for (int s = 0; s < b; ++s) {
            ctx.truncate(s, context);
            in.push_back({s, toks.subspan(size_t(context), 1), {0}, nullptr});
          }
          (void)ctx.eval(in);
        });
        samples.push_back({{double(b), double(context), double(b)}, tb});
      }
    }
  }
  const unsigned terms =
      kTermUnits | kTermContext | kTermUnitsContext | (batch ? unsigned(kTermBatch) : 0u);
  return fit_or_explain(samples, terms, capture ? "the forward with capture" : "the forward");
}

// The device's filter: uncertainty with K samples over the model's logits, importance over its
// attention rows, after synthetic contexts of several lengths (ImportanceConfig's default
// estimator).
Status measure_filter(std::shared_ptr<const Model> model, ThreadPool& pool, const BenchOptions& o,
                      CostProfile& p) {
  Context ctx(model, 1, o.model.ctx, pool);
  AttentionRequest all = AttentionRequest::all(model->config().n_layer);
  const std::vector<int32_t> tokens = synthetic_tokens(*model, o.model.ctx, 13);
  std::vector<CostSample> unc, imp;
  const ImportanceConfig icfg;
  for (int context : {32, 128, 384}) {
    if (context + 1 > o.model.ctx) continue;
    ctx.clear(0);
    AttentionRows rows;
    auto z = ctx.eval_last(0, std::span<const int32_t>(tokens).first(size_t(context)), &all, &rows);
    if (!z) return z.error();
    const int32_t d = int32_t(std::max_element(z->begin(), z->end()) - z->begin());
    constexpr int kCalls = 20;  // per timing: one call is too short for the clock
    volatile float sink = 0;
    imp.push_back({{1, double(context), 1}, min_time(o.reps, [&] {
                                              for (int i = 0; i < kCalls; ++i)
                                                sink = sink + importance(rows, icfg).value;
                                            }) / kCalls});
    if (context != 128) continue;
    for (int k : {5, 10, 20, 40}) {
      UncertaintyEstimator est({k, UncertaintyConfig{}.theta_max});
      dist::Rng rng(7);
      unc.push_back({{double(k), 0, 1}, min_time(o.reps, [&] {
                                          for (int i = 0; i < kCalls; ++i)
                                            sink = sink + est(*z, d, rng);
                                        }) / kCalls});
    }
  }
  auto u = fit_or_explain(unc, kTermUnits, "uncertainty");
  if (!u) return u.error();
  auto i = fit_or_explain(imp, kTermContext, "importance");
  if (!i) return i.error();
  p.uncertainty = *u;
  p.importance = *i;
  return ok_status();
}

int run_save_cost(const BenchOptions& o) {
  if (o.threads.size() != 1) {
    return fail("--save-cost measures one thread count: give --threads N (the runs' --threads)");
  }
  if (o.cost_role != "device" && o.cost_role != "cloud") {
    return fail(fmt::format("--cost-role {}: expected device or cloud", o.cost_role));
  }
  if (o.model.ctx < 416) {
    return fail("--save-cost measures contexts up to 384 + 32: use --ctx 416 or more");
  }
  auto path = resolve_model(o.model.model);
  if (!path) return fail(path.error());
  auto model = Model::load(*path);
  if (!model) return fail(model.error());
  const bool device = o.cost_role == "device";
  const int threads = o.threads.front();
  ThreadPool pool(threads);
  auto started = o.save.start(device ? CostRole::kDevice : CostRole::kCloud, threads);
  if (!started) return fail(started.error());
  CostProfile& p = *started;
  p.model = model_shape(**model);
  p.model_file = std::filesystem::path(*path).filename().string();
  p.command =
      fmt::format("hlm bench engine --model {} --threads {} --ctx {} --reps {}{} --cost-role {}",
                  o.model.model, threads, o.model.ctx, o.reps, o.save.flags(), o.cost_role);
  p.method = fmt::format(
      "the fastest of {} timed forwards (after a warm-up) of n = 1..32 positions after 32, 128 and "
      "384 cached ones{}, least-squares fit; {}",
      o.reps, device ? "" : ", and of batches of 2 and 4 single-position sequences",
      device ? "with and without attention capture; uncertainty at K = 5..40 samples and "
               "importance (default estimator) at the same contexts, 20 calls a timing"
             : "one logit row per sequence, as a per-token verification asks for");
  std::fprintf(stderr, "bench: measuring the forward of %s at %d thread(s)...\n", path->c_str(),
               threads);
  auto forward = measure_forward(*model, pool, o, false, !device);
  if (!forward) return fail(forward.error());
  p.forward = *forward;
  if (device) {
    auto capture = measure_forward(*model, pool, o, true, false);
    if (!capture) return fail(capture.error());
    p.forward_capture = *capture;
    if (auto st = measure_filter(*model, pool, o, p); !st) return fail(st.error());
  }
  if (auto st = o.save.finish(p, "bench"); !st) return fail(st.error());
  return 0;
}

std::string gb(double bytes) { return fmt::format("{:.2f} GB", bytes / 1e9); }

int run_bench(const BenchOptions& o) {
  if (!o.save.file.empty()) return run_save_cost(o);
  auto path = resolve_model(o.model.model);
  if (!path) return fail(path.error());
  const int need = o.depth + std::max(o.n_prompt, o.n_gen);
  if (o.model.ctx < need) {
    return fail(fmt::format("--ctx {} cannot hold --depth {} plus {} tokens: use --ctx {} or more",
                            o.model.ctx, o.depth, std::max(o.n_prompt, o.n_gen), need));
  }
  auto model = Model::load(*path);
  if (!model) return fail(model.error());
  std::error_code ec;
  const double file_bytes = static_cast<double>(std::filesystem::file_size(*path, ec));
  const Resident loaded = resident_memory();
  double peak = loaded.peak;  // VmHWM over the run, without the bandwidth buffer
  const double weights_per_token = decode_weight_bytes(**model);
  nlohmann::json rows = nlohmann::json::array();
  bool have_reference = o.reference;
  std::string reference_note;
  for (int t : o.threads) {
    if (!o.output.json) std::fprintf(stderr, "bench: %d thread(s)...\n", t);
    const Speed off = measure(*model, t, false, o);
    const Speed on = o.capture ? measure(*model, t, true, o) : Speed{};
    peak = std::max(peak, resident_memory().peak);
    const double bandwidth = read_bandwidth_gbps(t, size_t(o.bandwidth_mib));
    reset_peak();
    const double streamed = weights_per_token * off.tg / 1e9;
    nlohmann::json row = {{"threads", t},
                          {"pp_tokens_per_s", off.pp},
                          {"tg_tokens_per_s", off.tg},
                          {"read_bandwidth_gb_per_s", bandwidth},
                          {"tg_weight_gb_per_s", streamed},
                          {"tg_bandwidth_share", streamed / bandwidth}};
    if (o.capture) {
      row["pp_tokens_per_s_capture"] = on.pp;
      row["tg_tokens_per_s_capture"] = on.tg;
    }
    if (have_reference) {
      auto r =
          run_process({o.python, o.script, "--model", *path, "--threads", std::to_string(t),
                       "--n-prompt", std::to_string(o.n_prompt), "--n-gen", std::to_string(o.n_gen),
                       "--depth", std::to_string(o.depth), "--ctx", std::to_string(o.model.ctx),
                       "--reps", std::to_string(o.reps), "--json"},
                      {SpawnOptions::Stdout::kCapture, true});
      auto j = r.ok() && r->exit_code == 0 ? nlohmann::json::parse(r->out, nullptr, false)
                                           : nlohmann::json(nullptr);
      if (j.is_object() && j.contains("tg_tokens_per_s")) {
        row["llama_cpp"] = {{"pp_tokens_per_s", j["pp_tokens_per_s"]},
                            {"tg_tokens_per_s", j["tg_tokens_per_s"]},
                            {"reference", j.value("reference", "")}};
        if (j.contains("max_rss_bytes")) row["llama_cpp"]["max_rss_bytes"] = j["max_rss_bytes"];
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
  const Resident end = resident_memory();
  peak = std::max(peak, end.peak);
  const nlohmann::json memory = {{"file_bytes", file_bytes},
                                 {"rss_after_load_bytes", loaded.now},
                                 {"rss_bytes", end.now},
                                 {"rss_peak_bytes", peak},
                                 {"rss_peak_over_file", peak / file_bytes}};
  if (o.output.json) {
    nlohmann::json j = {
        {"model", *path},         {"kernels", ops::kernels_name()},
        {"n_prompt", o.n_prompt}, {"n_gen", o.n_gen},
        {"depth", o.depth},       {"ctx", o.model.ctx},
        {"reps", o.reps},         {"decode_weight_bytes_per_token", weights_per_token},
        {"memory", memory},       {"results", rows}};
    if (!reference_note.empty()) j["note"] = reference_note;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf(
      "model %s (kernels %s): pp = %d-token prompt batch, tg = %d decode steps, after %d cached "
      "tokens, context %d, median of %d\n",
      path->c_str(), ops::kernels_name().c_str(), o.n_prompt, o.n_gen, o.depth, o.model.ctx,
      o.reps);
  std::printf("%-8s %10s %10s %12s %12s %10s %10s %8s %8s %9s %9s %6s\n", "threads", "pp tok/s",
              "tg tok/s", "pp +capture", "tg +capture", "llama pp", "llama tg", "pp ratio",
              "tg ratio", "read GB/s", "tg GB/s", "share");
  const auto num = [](const nlohmann::json& r, const char* k, const char* f) {
    return r.contains(k) ? fmt::format(fmt::runtime(f), r[k].get<double>()) : std::string("-");
  };
  for (const auto& r : rows) {
    const bool ref = r.contains("llama_cpp");
    std::printf("%-8d %10.1f %10.1f %12s %12s %10s %10s %8s %8s %9.1f %9.1f %5.0f%%\n",
                r["threads"].get<int>(), r["pp_tokens_per_s"].get<double>(),
                r["tg_tokens_per_s"].get<double>(),
                num(r, "pp_tokens_per_s_capture", "{:.1f}").c_str(),
                num(r, "tg_tokens_per_s_capture", "{:.1f}").c_str(),
                ref ? num(r["llama_cpp"], "pp_tokens_per_s", "{:.1f}").c_str() : "-",
                ref ? num(r["llama_cpp"], "tg_tokens_per_s", "{:.1f}").c_str() : "-",
                num(r, "pp_ratio", "{:.2f}").c_str(), num(r, "tg_ratio", "{:.2f}").c_str(),
                r["read_bandwidth_gb_per_s"].get<double>(), r["tg_weight_gb_per_s"].get<double>(),
                100 * r["tg_bandwidth_share"].get<double>());
  }
  std::printf(
      "read GB/s: %d MiB streamed by that many threads (best of 5); tg GB/s: %s of weights per "
      "token x tg tok/s\n",
      o.bandwidth_mib, gb(weights_per_token).c_str());
  std::printf("memory: file %s, resident after load %s, at the end %s, peak %s (%.2fx the file)\n",
              gb(file_bytes).c_str(), gb(loaded.now).c_str(), gb(end.now).c_str(), gb(peak).c_str(),
              peak / file_bytes);
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
  o->model.ctx = 512;  // as llama-bench's default runs (pp512, tg128) use
  o->model.add(sub);
  sub->add_option("--threads", o->threads, "Thread counts to measure")->capture_default_str();
  sub->add_option("--n-prompt", o->n_prompt, "Prompt batch size")->capture_default_str();
  sub->add_option("--n-gen", o->n_gen, "Decode steps")->capture_default_str();
  sub->add_option("--depth", o->depth, "Tokens already in the cache before pp and tg")
      ->capture_default_str()
      ->check(finite_non_negative());
  sub->add_flag("!--no-capture", o->capture, "Skip the runs with attention capture on");
  sub->add_option("--bandwidth-mib", o->bandwidth_mib,
                  "Buffer streamed to measure memory bandwidth (MiB, far above the caches)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 16));
  sub->add_option("--reps", o->reps, "Repetitions (median reported)")->capture_default_str();
  sub->add_flag("!--no-reference", o->reference, "Skip the llama.cpp comparison");
  sub->add_option("--python", o->python, "Python interpreter with llama-cpp-python")
      ->capture_default_str();
  o->save.add(sub,
              "Instead of the speed table: time the forward over a grid of sizes and contexts "
              "(and a device's filter), fit the lines");
  sub->add_option("--cost-role", o->cost_role,
                  "With --save-cost: device (the SLM: forward, capture, filter) or cloud (the "
                  "LLM's verification forward, with a batch term)")
      ->capture_default_str();
  o->output.add(sub);
  commands.on(sub, [o] { return run_bench(*o); });
}

}  // namespace hlm::apps
