// hlm bench engine: prompt-processing and decode speed of a model at 1 and 2 threads, with
// attention capture off and on, side by side with llama.cpp on the same file and threads (run
// from the PyPI oracle through tools/reference/bench_llamacpp.py when it is installed); in the
// same run, the machine's memory bandwidth, the share of it decode streams as weights, and the
// process's resident memory against the file's size.
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
#include "apps/options.h"
#include "engine/context.h"
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
};

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

struct Speed {
  double pp = 0, tg = 0;
};

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
  const auto tokens = [V](int n, int salt) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; ++i) t[i] = (i * 7919 + salt) % V;
    return t;
  };
  const std::vector<int32_t> prompt = tokens(o.n_prompt, 13), context = tokens(o.depth, 101);
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

std::string gb(double bytes) { return fmt::format("{:.2f} GB", bytes / 1e9); }

int run_bench(const BenchOptions& o) {
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
      ->check(CLI::NonNegativeNumber);
  sub->add_flag("!--no-capture", o->capture, "Skip the runs with attention capture on");
  sub->add_option("--bandwidth-mib", o->bandwidth_mib,
                  "Buffer streamed to measure memory bandwidth (MiB, far above the caches)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 16));
  sub->add_option("--reps", o->reps, "Repetitions (median reported)")->capture_default_str();
  sub->add_flag("!--no-reference", o->reference, "Skip the llama.cpp comparison");
  sub->add_option("--python", o->python, "Python interpreter with llama-cpp-python")
      ->capture_default_str();
  o->output.add(sub);
  commands.on(sub, [o] { return run_bench(*o); });
}

}  // namespace hlm::apps
