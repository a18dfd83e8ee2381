// BatchScheduler: continuous batching of Verify calls. Handlers submit requests from many
// sessions; one thread takes whatever is queued (up to max_batch, after at most a tiny window
// for stragglers) and serves it with ONE CloudVerifier::verify_batch() forward, then hands each
// caller its own result. A bad request fails alone and never holds up the others.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "cloud/cloud_verifier.h"
#include "server/metrics.h"

namespace hlm::server {

struct SchedulerOptions {
  int max_batch = 32;
  // After the first request arrives, wait at most this long for others before the forward
  // (0: take only what is queued already).
  double window_s = 0.0005;
};

class BatchScheduler {
 public:
  BatchScheduler(CloudVerifier& cloud, Metrics& metrics, SchedulerOptions options);
  ~BatchScheduler();  // stops: queued requests fail with "server shutting down"

  // Queues one request. The caller guarantees at most one request per session in flight.
  std::future<Result<VerifyReply>> submit(VerifyRequest request);
  void stop();

 private:
  struct Job {
    VerifyRequest request;
    std::promise<Result<VerifyReply>> promise;
    std::chrono::steady_clock::time_point arrived;
  };
  void loop();

  CloudVerifier& cloud_;
  Metrics& metrics_;
  SchedulerOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hlm::server
