// Metrics implementation: histograms, the Prometheus exposition, the /metrics endpoint.
#include "server/metrics.h"

#include <fmt/format.h>

#include <memory>

namespace hlm::server {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  counts_[i]++;
  sum_ += v;
  count_++;
}

uint64_t Histogram::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

double Histogram::sum() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sum_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lock(mu_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  cum += counts_.back();
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, cum, name, sum_,
                     name, count_);
}

Metrics::Metrics()
    : batch_size({1, 2, 4, 8, 16, 32, 64}),
      verify_latency({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      forward_time({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      started_(Clock::now()) {}

void Metrics::add_tokens(uint64_t n, Clock::time_point now) {
  tokens_ += n;
  std::lock_guard<std::mutex> lock(mu_);
  recent_.emplace_back(now, n);
  while (!recent_.empty() && now - recent_.front().first > window_) recent_.pop_front();
}

double Metrics::tokens_per_s(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const auto& [t, k] : recent_) {
    if (now - t <= window_) n += k;
  }
  const double span = std::min(std::chrono::duration<double>(window_).count(),
                               std::chrono::duration<double>(now - started_).count());
  return span > 0 ? double(n) / span : 0.0;
}

std::string Metrics::render() const {
  std::string o;
  auto gauge = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  gauge("hlm_sessions", "Open verification sessions.", double(sessions.load()));
  counter("hlm_sessions_opened_total", "Sessions opened.", sessions_opened.load());
  counter("hlm_sessions_expired_total", "Sessions closed for being idle.", sessions_expired.load());
  counter("hlm_verifications_total", "Verify calls answered successfully.", verifications.load());
  counter("hlm_generations_total", "Generate streams started (cloud-only generation).",
          generations.load());
  counter("hlm_stale_verifications_total",
          "Verify calls answered stale: sent by a pipelining device past a draft an earlier reply "
          "replaced; nothing was evaluated.",
          stale.load());
  counter("hlm_batches_total", "Batched engine forwards run for Verify calls and streams.",
          batches.load());
  counter("hlm_drafts_total", "Drafted tokens received for verification.", drafts.load());
  counter("hlm_drafts_accepted_total", "Drafted tokens accepted.", accepted.load());
  counter("hlm_tokens_total", "Tokens committed to session contexts (pending, accepted, next).",
          tokens_total());
  gauge("hlm_tokens_per_second", "Tokens committed per second over the last 10 s.", tokens_per_s());
  o += "# HELP hlm_request_errors_total Requests refused, by gRPC status.\n"
       "# TYPE hlm_request_errors_total counter\n";
  for (auto [code, v] : {std::pair{"INVALID_ARGUMENT", &errors_invalid},
                         {"NOT_FOUND", &errors_not_found},
                         {"FAILED_PRECONDITION", &errors_precondition},
                         {"UNAUTHENTICATED", &errors_unauthenticated},
                         {"RATE_LIMITED", &errors_rate_limited},
                         {"RESOURCE_EXHAUSTED", &errors_exhausted},
                         {"INTERNAL", &errors_internal}}) {
    o += fmt::format("hlm_request_errors_total{{code=\"{}\"}} {}\n", code, v->load());
  }
  batch_size.render(o, "hlm_batch_size",
                    "Verify requests and stream steps served by one engine forward.");
  verify_latency.render(o, "hlm_verify_latency_seconds",
                        "Time from a Verify call's arrival to its reply.");
  forward_time.render(o, "hlm_forward_seconds",
                      "Time per batch: the engine forward and the verdicts on its requests.");
  return o;
}

// ---------------------------------------------------------------------------------------------
// HTTP endpoint

Result<std::unique_ptr<http::Server>> serve_metrics(const std::string& listen,
                                                    const Metrics& metrics) {
  http::ServerOptions o;
  o.listen = listen;
  o.flag = "--metrics-listen";
  o.max_body_bytes = 0;
  return http::Server::start(o, [&metrics](const http::Request& r) -> http::Reply {
    http::Response res;
    res.content_type = "text/plain; charset=utf-8";
    if (r.method != "GET" && r.method != "HEAD") {
      res.status = 405;
      res.body = "only GET is served\n";
    } else if (r.path == "/metrics") {
      res.content_type = kPrometheusContentType;
      res.body = metrics.render();
    } else if (r.path == "/") {
      res.body = "hlm serve: metrics at /metrics\n";
    } else {
      res.status = 404;
      res.body = "not found: try GET /metrics\n";
    }
    return res;
  });
}

}  // namespace hlm::server
