// hlm bench serve: N simulated devices against one server. Starts `hlm serve`'s server
// in-process on 127.0.0.1 (port 0), on either backend (the engine, or vLLM servers), runs N
// client threads that each open a session and issue Verify calls back to back as the device
// loop does (a few pending tokens, one draft with its p̂), and reports verification throughput,
// mean batch size and p50/p99 latency per N; on vLLM also the gateway's share of a verification.
// The cloud compute each verification reports comes from --cloud-cost (a profile, or the clock);
// --save-cost fits a cloud cost profile to the batches the server measured.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <tuple>

#include "apps/command.h"
#include "apps/cost_options.h"
#include "apps/options.h"
#include "engine/sampler.h"
#include "method/upload.h"
#include "models/registry.h"
#include "protocol/remote_verifier.h"
#include "server/server.h"

namespace hlm::apps {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchServeOptions {
  std::string llm = "llm";
  std::vector<int> devices = {1, 4, 16};
  double seconds = 5.0;
  int repeat = 1;  // rounds over the device counts; medians are reported
  std::string encoding{kDefaultEncoding};
  int max_pending = 2;  // each request carries 0..max_pending pending tokens
  int prompt_tokens = 16;
  int max_context = 1024;
  int max_batch = 32;
  double gather = server::ServerOptions{}.batch_gather;
  ThreadOptions threads;
  OutputOptions output;
  BackendOptions backend;
  CloudCostOptions cost;
  SaveCostOptions save;
  // The sessions' sampling. The engine's figures use plain softmax; on vLLM that would ask for
  // the whole vocabulary every time, so vLLM sessions use hlm's defaults (top-k 40, top-p 0.95).
  SamplingParams sampling{0.8f, 0, 1.0f};
};

struct DeviceStats {
  std::vector<double> latencies_s;
  uint64_t tokens = 0;
  double t_llm_s = 0;  // the cloud compute the replies reported
  uint64_t errors = 0;
  std::string first_error;
};

// One simulated device: open, verify until the deadline (reopening when the context fills).
// Every device opens its session first; the clock starts when all have (session opens
// evaluate prompts and are not what is measured).
struct StartLine {
  std::mutex mu;
  std::condition_variable cv;
  int waiting = 0, n = 0;
  Clock::time_point start, deadline;
  double seconds = 0;
  const server::Metrics* metrics = nullptr;
  uint64_t batches0 = 0;  // the server's batch histogram when the clock started
  double batched0 = 0;
  double busy0 = 0;  // and its time in batches
  const vllm::VllmVerifier* vllm = nullptr;
  double http0 = 0;  // the vLLM backend's time in HTTP calls when the clock started
  void arrive() {
    std::unique_lock<std::mutex> lock(mu);
    if (++waiting == n) {
      batches0 = metrics->batch_size.count();
      batched0 = metrics->batch_size.sum();
      busy0 = metrics->forward_time.sum();
      if (vllm) http0 = vllm->stats().http_s;
      start = Clock::now();
      deadline = start + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(seconds));
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return waiting == n; });
    }
  }
};

void run_device(const std::string& target, const Model& m, const EncodingConfig& enc,
                const BenchServeOptions& o, int index, StartLine& line, DeviceStats& out) {
  std::mt19937_64 rng(1000 + index);
  const int V = m.config().n_vocab;
  std::uniform_int_distribution<int32_t> token(3, V - 1);
  // A peaked draft distribution, encoded once into the request that every call reuses (the
  // device's own cost is not what is measured).
  std::vector<float> logits(static_cast<size_t>(V));
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& z : logits) z = normal(rng);
  VerifyRequest req;
  if (enc.kind != Encoding::kIds) req.p_hat = {encode(softmax(logits, 1.0f), enc)};

  RemoteOptions ro;
  ro.target = target;
  ro.timeout_s = 60;
  RemoteVerifier remote(ro);
  SessionParams sp;
  sp.vocab_fingerprint = m.tokenizer().fingerprint();
  sp.n_vocab = V;
  sp.sampling = o.sampling;
  sp.sampling.seed = uint64_t(index + 1);
  sp.encoding = enc.kind;
  std::uniform_int_distribution<int> n_pending(0, o.max_pending);

  SessionId session = 0;
  int context = 0;
  bool started = false;
  Clock::time_point deadline = Clock::now() + std::chrono::hours(1);
  while (Clock::now() < deadline) {
    if (session == 0 || context + o.max_pending + 3 >= o.max_context) {
      if (session) (void)remote.close(session);
      sp.prompt.resize(size_t(o.prompt_tokens));
      for (int32_t& t : sp.prompt) t = token(rng);
      auto id = remote.open(sp);
      if (!id) {
        if (out.errors++ == 0) out.first_error = id.error().message;
        session = 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      session = *id;
      context = o.prompt_tokens;
    }
    if (!started) {
      line.arrive();
      deadline = line.deadline;
      started = true;
    }
    req.session = session;
    req.pending.resize(size_t(n_pending(rng)));
    for (int32_t& t : req.pending) t = token(rng);
    req.drafts = {token(rng)};
    const auto t0 = Clock::now();
    auto r = remote.verify(req);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!r) {
      if (out.errors++ == 0) out.first_error = r.error().message;
      session = 0;
      continue;
    }
    out.latencies_s.push_back(dt);
    out.t_llm_s += r->t_llm_s;
    const int added = int(req.pending.size()) + r->n_accepted + (r->has_next ? 1 : 0);
    out.tokens += uint64_t(added);
    context += added;
  }
  if (session) (void)remote.close(session);
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5));
  return v[i];
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// One measured point: n devices for o.seconds.
struct Point {
  double seconds = 0, vps = 0, tokens_per_s = 0, mean_batch = 0, busy = 0, p50_ms = 0, p99_ms = 0;
  double cloud_ms = 0;  // the cloud compute a verification reported, on average
  // vLLM, one device: the share of a verification's latency spent outside HTTP (hlm.v1 in,
  // scheduling, JSON, the verdict). With more devices HTTP calls overlap: not reported (-1).
  double gateway = -1;
  uint64_t verifications = 0, errors = 0;
  std::string first_error;
};

Point measure(int n, const std::string& target, const Model& model, const EncodingConfig& enc,
              const BenchServeOptions& o, const server::Metrics& metrics,
              const vllm::VllmVerifier* vllm) {
  std::vector<DeviceStats> stats(static_cast<size_t>(n));
  StartLine line;
  line.n = n;
  line.seconds = o.seconds;
  line.metrics = &metrics;
  line.vllm = vllm;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back(run_device, std::cref(target), std::cref(model), std::cref(enc),
                         std::cref(o), i, std::ref(line), std::ref(stats[size_t(i)]));
  }
  for (auto& t : threads) t.join();
  Point pt;
  pt.seconds = std::chrono::duration<double>(Clock::now() - line.start).count();
  std::vector<double> lat;
  uint64_t tokens = 0;
  double t_llm = 0;
  for (auto& s : stats) {
    lat.insert(lat.end(), s.latencies_s.begin(), s.latencies_s.end());
    tokens += s.tokens;
    t_llm += s.t_llm_s;
    pt.errors += s.errors;
    if (pt.first_error.empty()) pt.first_error = s.first_error;
  }
  pt.verifications = lat.size();
  pt.cloud_ms = lat.empty() ? 0 : 1e3 * t_llm / double(lat.size());
  if (vllm && n == 1 && !lat.empty()) {
    double total = 0;
    for (double s : lat) total += s;
    pt.gateway = 1 - (vllm->stats().http_s - line.http0) / total;
  }
  pt.vps = double(lat.size()) / pt.seconds;
  pt.tokens_per_s = double(tokens) / pt.seconds;
  const uint64_t nb = metrics.batch_size.count() - line.batches0;
  pt.mean_batch = nb ? (metrics.batch_size.sum() - line.batched0) / double(nb) : 0.0;
  // The share of the time the server spent in batches rather than waiting for requests.
  pt.busy = (metrics.forward_time.sum() - line.busy0) / pt.seconds;
  pt.p50_ms = percentile(lat, 0.50) * 1e3;
  pt.p99_ms = percentile(lat, 0.99) * 1e3;
  return pt;
}

// --save-cost: a cloud profile fitted to the fastest batch of each kind the server measured
// (batch size, positions over the batch, mean context to the nearest 32): as bench engine's
// fastest of its repetitions, because other processes only ever add time.
Status save_serve_cost(const BenchServeOptions& o, const Model& model, const std::string& path,
                       int threads, const std::vector<CostSample>& batches) {
  std::map<std::tuple<double, double, double>, CostSample> fastest;
  for (const CostSample& s : batches) {
    const auto key = std::tuple{s.work.batch, s.work.n, std::round(s.work.context / 32)};
    auto [it, fresh] = fastest.emplace(key, s);
    if (!fresh && s.seconds < it->second.seconds) it->second = s;
  }
  std::vector<CostSample> samples;
  bool batched = false;
  for (const auto& [key, s] : fastest) {
    samples.push_back(s);
    batched = batched || s.work.batch > 1;
  }
  // One device only: every batch has one request, so the batch term is not measured (0).
  const unsigned terms = kTermUnits | kTermContext | (batched ? unsigned(kTermBatch) : 0u);
  auto line = fit_cost_line(samples, terms);
  if (!line) {
    return make_error(
        "--save-cost: fitting the verification's time to {} kinds of batch ({} batches): {} "
        "(measure longer with --seconds, at more --devices, or with a larger --max-pending)",
        samples.size(), batches.size(), line.error().message);
  }
  auto p = o.save.start(CostRole::kCloud, threads);
  if (!p) return p.error();
  p->model = model_shape(model);
  p->model_file = std::filesystem::path(path).filename().string();
  p->forward = *line;
  std::string devices;
  for (int d : o.devices) devices += fmt::format("{}{}", devices.empty() ? "" : ",", d);
  p->command = fmt::format(
      "hlm bench serve --llm {} --backend {} --devices {} --seconds {:g} --repeat {} "
      "--max-pending {} --prompt-tokens {} --max-context {} --threads {}{}",
      o.llm, o.backend.backend, devices, o.seconds, o.repeat, o.max_pending, o.prompt_tokens,
      o.max_context, threads, o.save.flags());
  p->method = fmt::format(
      "the server's own verification batches under load from {} simulated devices (requests of "
      "0..{} pending tokens and one draft): the fastest of each kind (batch size, positions over "
      "the batch, mean context to the nearest 32; {} kinds of {} batches), least-squares fit of "
      "n = positions over the batch, context = their mean, batch = requests{}; the time is the "
      "backend's whole call (the forward, the distributions and the verdicts)",
      devices, o.max_pending, samples.size(), batches.size(),
      batched ? "" : " (one device: no batch term)");
  return o.save.finish(*p, "bench serve", o.output.json);
}

int bench_serve(BenchServeOptions o) {
  auto enc = parse_encoding(o.encoding);
  if (!enc) return fail(fmt::format("--encoding: {}", enc.error().message));
  auto path = resolve_model(o.llm);
  if (!path) return fail(path.error());
  auto model = o.backend.load(*path);
  if (!model) return fail(model.error());
  const int max_devices = *std::max_element(o.devices.begin(), o.devices.end());

  server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.max_sessions = max_devices;
  so.max_context = o.max_context;
  so.max_batch = o.max_batch;
  so.batch_gather = o.gather;
  so.threads = o.threads.threads;
  so.idle_timeout_s = 600;
  auto backend = o.backend.make(*model, so.max_sessions, so.max_context);
  if (!backend) return fail(backend.error());
  const auto* vllm = dynamic_cast<const vllm::VllmVerifier*>(backend->get());
  if (vllm) o.sampling = SamplingParams{};
  auto cost = o.cost.resolve(**model, vllm != nullptr, so.threads);
  if (!cost) return fail(cost.error());
  set_cloud_cost(so, *cost);
  so.record_batches = !o.save.file.empty();
  auto srv = server::Server::start(*model, so, std::move(backend).value());
  if (!srv) return fail(srv.error());
  const std::string target = (*srv)->address();
  const server::Metrics& metrics = (*srv)->metrics();
  if (!o.output.json) {
    std::fprintf(
        stderr, "bench serve: %s on %s, encoding %s, %.1f s per point, %d round(s), %d threads%s\n",
        (*model)->config().name.c_str(), target.c_str(), to_string(*enc).c_str(), o.seconds,
        o.repeat, so.threads,
        vllm
            ? fmt::format(", vLLM {} at {}", vllm->model_id(), fmt::join(o.backend.vllm.urls, ", "))
                  .c_str()
            : "");
    std::printf("%8s %12s%s %10s %10s %10s %10s %10s %9s%s\n", "devices", "verif/s",
                o.repeat > 1 ? "        range" : "", "tokens/s", "mean batch", "busy", "p50 ms",
                "p99 ms", "speedup", vllm ? "   gateway" : "");
  }
  // Rounds over every device count in turn, so that the machine's drift spreads over all of them;
  // each count reports its medians over the rounds.
  std::vector<std::vector<Point>> runs(o.devices.size());
  for (int round = 0; round < o.repeat; ++round) {
    for (size_t k = 0; k < o.devices.size(); ++k) {
      runs[k].push_back(measure(o.devices[k], target, **model, *enc, o, metrics, vllm));
      const Point& pt = runs[k].back();
      if (pt.errors) {
        std::fprintf(stderr, "bench serve: %llu failed calls with %d devices; first: %s\n",
                     static_cast<unsigned long long>(pt.errors), o.devices[k],
                     pt.first_error.c_str());
      }
      if (o.repeat > 1 && !o.output.json) {
        std::fprintf(stderr, "bench serve: round %d/%d, %d devices: %.1f verif/s\n", round + 1,
                     o.repeat, o.devices[k], pt.vps);
      }
    }
  }
  nlohmann::json results = nlohmann::json::array();
  double base = 0;
  for (size_t k = 0; k < o.devices.size(); ++k) {
    const std::vector<Point>& r = runs[k];
    const auto median_of = [&](double Point::*field) {
      std::vector<double> v;
      for (const Point& pt : r) v.push_back(pt.*field);
      return median(v);
    };
    const double vps = median_of(&Point::vps);
    if (base == 0) base = vps;
    const double speedup = base > 0 ? vps / base : 0;
    nlohmann::json each = nlohmann::json::array();
    double lo = vps, hi = vps;
    uint64_t verifs = 0, errors = 0;
    for (const Point& pt : r) {
      each.push_back(pt.vps);
      lo = std::min(lo, pt.vps);
      hi = std::max(hi, pt.vps);
      verifs += pt.verifications;
      errors += pt.errors;
    }
    results.push_back({{"devices", o.devices[k]},
                       {"verifications", verifs},
                       {"seconds", median_of(&Point::seconds)},
                       {"verifications_per_s", vps},
                       {"verifications_per_s_runs", each},
                       {"tokens_per_s", median_of(&Point::tokens_per_s)},
                       {"mean_batch", median_of(&Point::mean_batch)},
                       {"engine_busy", median_of(&Point::busy)},
                       {"p50_ms", median_of(&Point::p50_ms)},
                       {"p99_ms", median_of(&Point::p99_ms)},
                       {"speedup_vs_first", speedup},
                       {"gateway_share", median_of(&Point::gateway)},
                       {"cloud_ms_per_verification", median_of(&Point::cloud_ms)},
                       {"errors", errors}});
    if (cost->profile) {
      results.back()["cloud_j_per_verification"] =
          cost->profile->power.compute_w * median_of(&Point::cloud_ms) / 1e3;
    }
    if (!o.output.json) {
      const std::string spread =
          o.repeat > 1 ? fmt::format(" {:>12}", fmt::format("{:.0f}-{:.0f}", lo, hi)) : "";
      const double gateway = median_of(&Point::gateway);
      const std::string gateway_text = !vllm         ? ""
                                       : gateway < 0 ? fmt::format("{:>10}", "-")
                                                     : fmt::format("{:>9.1f}%", 100 * gateway);
      std::printf("%8d %12.1f%s %10.1f %10.2f %9.0f%% %10.1f %10.1f %8.2fx%s\n", o.devices[k], vps,
                  spread.c_str(), median_of(&Point::tokens_per_s), median_of(&Point::mean_batch),
                  100 * median_of(&Point::busy), median_of(&Point::p50_ms),
                  median_of(&Point::p99_ms), speedup, gateway_text.c_str());
      std::fflush(stdout);
    }
  }
  if (!o.output.json) {
    std::string per;
    for (const auto& r : results) {
      per += fmt::format("{}{} devices {:.2f} ms", per.empty() ? "" : ", ", r["devices"].get<int>(),
                         r["cloud_ms_per_verification"].get<double>());
      if (r.contains("cloud_j_per_verification"))
        per += fmt::format(" ({:.3f} J)", r["cloud_j_per_verification"].get<double>());
    }
    std::fprintf(stderr, "bench serve: cloud compute a verification reported (cost %s%s): %s\n",
                 cost->name().c_str(),
                 cost->profile ? fmt::format(", {:g} W", cost->profile->power.compute_w).c_str()
                               : ", the clock",
                 per.c_str());
  }
  if (vllm && !o.output.json) {
    const vllm::VllmStats st = vllm->stats();
    std::fprintf(stderr,
                 "bench serve: %llu vLLM requests, %llu asked again for the whole vocabulary (q "
                 "not determined by the top log-probabilities), %llu failed\n",
                 static_cast<unsigned long long>(st.requests),
                 static_cast<unsigned long long>(st.full_vocab),
                 static_cast<unsigned long long>(st.failures));
  }
  const std::vector<CostSample> batches = (*srv)->batch_samples();
  (*srv)->stop();
  if (!o.save.file.empty()) {
    if (auto st = save_serve_cost(o, **model, *path, so.threads, batches); !st) {
      return fail(st.error());
    }
  }
  if (o.output.json) {
    nlohmann::json j = {{"model", (*model)->config().name},
                        {"backend", o.backend.backend},
                        {"path", *path},
                        {"encoding", to_string(*enc)},
                        {"threads", so.threads},
                        {"cloud_cost", cost->name()},
                        {"seconds_per_point", o.seconds},
                        {"rounds", o.repeat},
                        {"results", results}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

void add_bench_serve_command(CLI::App& app, Commands& commands) {
  // `hlm bench serve` joins the `bench` group (registered first by add_bench_command).
  auto found = app.get_subcommands([](CLI::App* a) { return a->get_name() == "bench"; });
  CLI::App* bench = found.empty() ? app.add_subcommand("bench", "Benchmarks") : found.front();
  auto* sub = bench->add_subcommand(
      "serve",
      "N simulated devices against one in-process server: verifications/s, batch size, "
      "latency");
  auto o = std::make_shared<BenchServeOptions>();
  sub->add_option("--llm", o->llm,
                  "Cloud model: a GGUF path or a known name (with --backend vllm: its vocabulary)")
      ->capture_default_str();
  o->backend.add(sub);
  sub->add_option("--devices", o->devices, "Device counts to measure (e.g. 1,4,16)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_option("--seconds", o->seconds, "Measuring time per device count")
      ->capture_default_str()
      ->check(finite_positive());
  sub->add_option("--repeat", o->repeat,
                  "Rounds over the device counts (in turn, so drift spreads over all); the "
                  "figures are each count's medians, verif/s with its range")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  sub->add_option("--encoding", o->encoding,
                  "Upload encoding: full (standard HLM) | topk(k,bits[,renorm]) | ids")
      ->capture_default_str();
  sub->add_option("--max-pending", o->max_pending, "Pending tokens per request: 0..N")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  sub->add_option("--prompt-tokens", o->prompt_tokens,
                  "Context each session opens with (random tokens); it grows by each reply")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--max-context", o->max_context, "Server context per session")
      ->capture_default_str()
      ->check(CLI::Range(64, 1 << 20));
  sub->add_option("--max-batch", o->max_batch, "Server's verifications per forward")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_option("--batch-gather", o->gather,
                  "Server's wait for the devices of the last forwards, as a fraction of it")
      ->capture_default_str()
      ->check(finite_range(0, 4));
  o->threads.add(sub);
  o->cost.add(sub);
  o->save.add(sub,
              "After the measurement: fit the cloud's verification time to the batches the "
              "server served (size, positions, context)");
  o->output.add(sub, "Print the results as one JSON object");
  commands.on(sub, [o] { return bench_serve(*o); });
}

}  // namespace hlm::apps
