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
#include <thread>
#include <vector>

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

// Serves GET /metrics (and GET / with a pointer to it) from `metrics` on a loopback or given
// address; everything else is 404. One request per connection, bounded request size and read
// timeout, so a stuck or hostile peer cannot hold it.
class MetricsHttpServer {
 public:
  ~MetricsHttpServer();
  // "host:port" (port 0 picks a free one).
  static Result<std::unique_ptr<MetricsHttpServer>> start(const std::string& listen,
                                                          const Metrics& metrics);
  int port() const { return port_; }
  void stop();

 private:
  MetricsHttpServer(const Metrics& m) : metrics_(m) {}
  void loop();
  void serve(int fd);

  const Metrics& metrics_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace hlm::server
