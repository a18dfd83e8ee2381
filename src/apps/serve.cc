// hlm serve: the cloud side as a process. Serves hlm.v1 over gRPC with the LLM computed by the
// in-process engine (--backend engine: sessions with their own KV sequence) or by vLLM servers
// (--backend vllm, one --vllm-url per replica; the GGUF then gives only the vocabulary):
// continuous batching of verifications across sessions, idle expiry, API keys and rate limits,
// and Prometheus metrics at /metrics. The compute time each reply reports comes from a cloud
// cost profile (--cloud-cost) or the clock. Stops on SIGINT/SIGTERM.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdio>
#include <memory>
#include <thread>
#include <tuple>

#include "apps/command.h"
#include "apps/cost_options.h"
#include "apps/options.h"
#include "models/registry.h"
#include "server/security.h"
#include "server/server.h"
#include "vllm/vllm_verifier.h"

namespace hlm::apps {
namespace {

struct ServeOptions {
  std::string llm = "llm";
  std::string api_key_file;
  std::string tls_cert_file, tls_key_file;
  ThreadOptions threads;
  server::ServerOptions server;
  double batch_window_ms = 0.5;
  BackendOptions backend;
  CloudCostOptions cost;
};

int serve(ServeOptions& o) {
  // Signals go to one waiting thread, not to whichever thread gRPC happens to run.
  const StopSignals stop_signals;

  server::ServerOptions so = o.server;
  so.threads = o.threads.threads;
  so.batch_window_s = o.batch_window_ms / 1000.0;
  if (!o.api_key_file.empty()) {
    auto key = server::read_api_key_file(o.api_key_file);
    if (!key) return fail(key.error());
    so.api_key = *key;
  }
  // Server::start refuses a certificate without its key (or the reverse).
  for (auto [file, pem, flag] : {std::tuple{&o.tls_cert_file, &so.tls_cert_pem, "--tls-cert"},
                                 std::tuple{&o.tls_key_file, &so.tls_key_pem, "--tls-key"}}) {
    if (file->empty()) continue;
    auto text = server::read_pem_file(*file, flag);
    if (!text) return fail(text.error());
    *pem = std::move(text).value();
  }
  if (!server::is_loopback(so.listen) && so.api_key.empty()) {
    return fail(fmt::format(
        "refusing to listen on {} without an API key: pass --api-key-file FILE, or listen on "
        "127.0.0.1",
        so.listen));
  }
  auto path = resolve_model(o.llm);
  if (!path) return fail(path.error());
  auto model = o.backend.load(*path);
  if (!model) return fail(model.error());
  auto backend = o.backend.make(*model, so.max_sessions, so.max_context);
  if (!backend) return fail(backend.error());
  const auto* vllm = dynamic_cast<const vllm::VllmVerifier*>(backend->get());
  if (vllm) {
    std::fprintf(stderr, "hlm serve: verifying on vLLM model %s at %s\n", vllm->model_id().c_str(),
                 fmt::format("{}", fmt::join(o.backend.vllm.urls, ", ")).c_str());
  }
  auto cost = o.cost.resolve(**model, vllm != nullptr, so.threads);
  if (!cost) return fail(cost.error());
  set_cloud_cost(so, *cost);
  auto srv = server::Server::start(*model, so, std::move(backend).value());
  if (!srv) return fail(srv.error());
  server::Server& s = **srv;
  const auto& cfg = (*model)->config();
  std::fprintf(
      stderr,
      "hlm serve: listening on %s (model %s, %d-token vocabulary, %d sessions x %d "
      "tokens, %d threads, cloud cost %s%s%s%s)\n",
      s.address().c_str(), cfg.name.empty() ? path->c_str() : cfg.name.c_str(), cfg.n_vocab,
      so.max_sessions, so.max_context, so.threads, cost->name().c_str(),
      so.tls_cert_pem.empty() ? "" : ", TLS", so.api_key.empty() ? "" : ", API key required",
      so.rate_limit > 0 ? fmt::format(", {} req/s per client", so.rate_limit).c_str() : "");
  if (!server::is_loopback(so.listen) && so.tls_cert_pem.empty()) {
    std::fprintf(stderr,
                 "hlm serve: warning: %s is plaintext: the API key and every token travel "
                 "unencrypted (pass --tls-cert and --tls-key)\n",
                 so.listen.c_str());
  }
  if (s.metrics_port()) {
    const std::string host = server::host_of(so.metrics_listen);
    std::fprintf(stderr, "hlm serve: metrics at http://%s:%d/metrics\n", host.c_str(),
                 s.metrics_port());
    if (!server::is_loopback(so.metrics_listen)) {
      std::fprintf(stderr, "hlm serve: warning: /metrics on %s is readable without a key\n",
                   so.metrics_listen.c_str());
    }
  }
  std::fflush(stderr);
  std::thread([&s, stop_signals] {
    std::fprintf(stderr, "hlm serve: %s, shutting down\n", stop_signals.wait());
    s.stop();
  }).detach();
  s.wait();
  s.stop();
  std::fprintf(stderr, "hlm serve: stopped after %llu verifications\n",
               static_cast<unsigned long long>(s.metrics().verifications.load()));
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, Commands& commands) {
  auto* sub = app.add_subcommand(
      "serve", "Serve the cloud LLM to devices over gRPC (hlm run --cloud HOST:PORT)");
  auto o = std::make_shared<ServeOptions>();
  sub->add_option("--llm", o->llm,
                  "Cloud model: a GGUF path or a known name (with --backend vllm: its vocabulary, "
                  "which vLLM's model must share)")
      ->capture_default_str();
  o->backend.add(sub);
  o->cost.add(sub);
  sub->add_option("--listen", o->server.listen,
                  "host:port to listen on (port 0 picks one); non-loopback needs --api-key-file")
      ->capture_default_str();
  sub->add_option("--max-sessions", o->server.max_sessions,
                  "Concurrent sessions (one KV sequence each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  sub->add_option("--max-context", o->server.max_context, "Tokens per session")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 20));
  sub->add_option("--api-key-file", o->api_key_file,
                  "File whose first line is the API key clients must send (Bearer)");
  o->threads.add(sub);
  sub->add_option("--idle-timeout", o->server.idle_timeout_s,
                  "Seconds after which an idle session is closed")
      ->capture_default_str()
      ->check(finite_positive());
  sub->add_option("--metrics-listen", o->server.metrics_listen,
                  "host:port for Prometheus metrics at /metrics (e.g. 127.0.0.1:7071)");
  sub->add_option("--tls-cert", o->tls_cert_file,
                  "PEM certificate chain: serve gRPC over TLS (with --tls-key)");
  sub->add_option("--tls-key", o->tls_key_file, "PEM private key of --tls-cert");
  sub->add_option("--max-batch", o->server.max_batch, "Verifications per engine forward")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  sub->add_option("--batch-window-ms", o->batch_window_ms,
                  "Longest wait for more requests before a forward")
      ->capture_default_str()
      ->check(finite_range(0, 100));
  sub->add_option("--batch-gather", o->server.batch_gather,
                  "Wait up to this fraction of the last forward for the devices it served "
                  "(0: take only what is queued)")
      ->capture_default_str()
      ->check(finite_range(0, 4));
  sub->add_option("--max-drafts", o->server.max_drafts, "Drafts per request (spec(k) sends k)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  sub->add_option("--rate-limit", o->server.rate_limit,
                  "Requests per second per client address (0: unlimited)")
      ->capture_default_str()
      ->check(finite_non_negative());
  sub->add_option("--rate-burst", o->server.rate_burst,
                  "Burst size of the per-client limit (default: 2 s of --rate-limit)")
      ->check(finite_non_negative());
  commands.on(sub, [o] { return serve(*o); });
}

}  // namespace hlm::apps
