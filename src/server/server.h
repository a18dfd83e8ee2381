// Server: the hlm.v1 gRPC service in front of a cloud backend (the in-process engine or vLLM).
// Verify calls batched across sessions by a BatchScheduler, idle sessions expired, API-key
// authentication, per-client rate limits, bounded messages, and Prometheus metrics over HTTP.
// Made by a factory from an options struct, as Triton's gRPC frontend is.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cloud/batch_verifier.h"
#include "engine/model.h"
#include "method/cost.h"
#include "server/metrics.h"
#include "util/result.h"

namespace hlm::server {

struct ServerOptions {
  std::string listen = "127.0.0.1:7070";  // port 0 picks a free port (see Server::port())
  int max_sessions = 16;
  int max_context = 2048;  // tokens per session
  // Required when `listen` is not a loopback address; clients send "Bearer <key>".
  std::string api_key;
  // TLS: PEM certificate chain and private key; both empty = plaintext.
  std::string tls_cert_pem, tls_key_pem;
  int threads = 0;  // engine threads; 0 = hardware concurrency
  double idle_timeout_s = 300;
  std::string metrics_listen;  // "" = no metrics endpoint
  int max_batch = 32;
  double batch_window_s = 0.0005;
  double batch_gather = 0.25;  // SchedulerOptions::gather_fraction
  int max_drafts = 16;         // per Verify (spec(k) sends k)
  // gRPC receive limit; 0 derives it from the model's vocabulary and max_drafts.
  size_t max_message_bytes = 0;
  double rate_limit = 0;  // requests per second per client address; 0 = unlimited
  double rate_burst = 0;  // bucket size; 0 = 2 s worth of rate_limit
  // Replies report the compute this line models (a cloud cost profile's forward, priced per
  // batch: cloud/costed_verifier.h) instead of the clock.
  std::optional<CostLine> cloud_cost;
  // Reported in Health: the profile's name and the cloud's power while verifying (W).
  std::string cloud_cost_name = "measured";
  std::optional<double> cloud_power_w;
  bool record_batches = false;  // keep each batch's work and measured time (batch_samples())
};

class Server {
 public:
  // Loads nothing: takes the model, validates the options, binds, and starts serving. `backend`
  // computes q; without one, the in-process engine runs `llm`. With one, `llm` gives only the
  // vocabulary devices are checked against.
  static Result<std::unique_ptr<Server>> start(std::shared_ptr<const Model> llm,
                                               ServerOptions options,
                                               std::unique_ptr<BatchVerifier> backend = nullptr);
  ~Server();

  int port() const;
  std::string address() const;  // "127.0.0.1:<port>" style, usable as a client target
  int metrics_port() const;     // 0 without a metrics endpoint
  const Metrics& metrics() const;
  const ServerOptions& options() const;
  // With record_batches: every batch served so far, its work and the backend's measured time.
  std::vector<CostSample> batch_samples() const;

  // Stops accepting, fails queued work, and returns when every handler has finished.
  void stop();
  // Blocks until stop(), called from another thread, has finished.
  void wait();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hlm::server
