// Metrics: the server's counters and histograms in Prometheus text format (sessions,
// verifications, batch sizes, verification latency, tokens/s), and a minimal HTTP/1.1 server
// that answers GET /metrics on its own socket.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "http/server.h"
#include "util/result.h"

namespace hlm::server {

// A Prometheus histogram with fixed upper bounds (the +Inf bucket is implicit). Thread-safe.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends "# TYPE", the cumulative _bucket lines, _sum and _count.
  void render(std::string& out, const std::string& name, const std::string& help) const;
  uint64_t count() const;
  double sum() const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  using Clock = std::chrono::steady_clock;
  Metrics();

  std::atomic<int64_t> sessions{0};  // gauge: open sessions
  std::atomic<uint64_t> sessions_opened{0}, sessions_expired{0};
  std::atomic<uint64_t> verifications{0};  // successful Verify calls
  std::atomic<uint64_t> generations{0};    // Generate streams started
  std::atomic<uint64_t> stale{0};  // Verify calls answered stale (sent past a replaced draft)
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> drafts{0}, accepted{0};
  std::atomic<uint64_t> errors_invalid{0}, errors_not_found{0}, errors_precondition{0},
      errors_unauthenticated{0}, errors_rate_limited{0}, errors_exhausted{0}, errors_internal{0};
  Histogram batch_size;      // requests per engine forward
  Histogram verify_latency;  // seconds from a Verify's arrival to its reply
  Histogram forward_time;    // seconds per batched verification (engine forward and verdicts)

  // Tokens committed to session contexts by one verification (pending + accepted + next).
  void add_tokens(uint64_t n, Clock::time_point now = Clock::now());
  uint64_t tokens_total() const { return tokens_.load(); }
  // Tokens per second over the last `window` seconds.
  double tokens_per_s(Clock::time_point now = Clock::now()) const;

  std::string render() const;

 private:
  std::atomic<uint64_t> tokens_{0};
  mutable std::mutex mu_;
  std::deque<std::pair<Clock::time_point, uint64_t>> recent_;  // per-verification token counts
  const std::chrono::seconds window_{10};
  const Clock::time_point started_;
};

// The content type of Prometheus' text exposition format.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// Serves GET /metrics (and GET / with a pointer to it) from `metrics` on its own HTTP listener
// ("host:port", port 0 picks one); other paths get 404, other methods 405.
Result<std::unique_ptr<http::Server>> serve_metrics(const std::string& listen,
                                                    const Metrics& metrics);

}  // namespace hlm::server
