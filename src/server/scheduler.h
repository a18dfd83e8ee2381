// BatchScheduler: continuous batching of Verify calls. Handlers submit requests from many
// sessions; one thread takes what is queued (up to max_batch) and serves it with ONE
// BatchVerifier::verify_batch() call, then hands each caller its own result. A bad request
// fails alone and never holds up the others.
//
// Streamed generations (policy llm) join the same forwards: each active stream adds one
// draft-less step per forward and its token goes into the stream's bounded buffer. A stream
// whose buffer is full (its reader is slow) sits out until the reader catches up, so a slow
// reader pauses only its own generation and never makes a forward wait.
//
// Gathering: devices served by one forward come back a round trip later, at slightly different
// times. Taking only what is queued would split them into alternating large and small batches,
// so the scheduler waits for the sessions it served in the last two forwards, up to a fraction
// of the last forward's duration (Triton's "max queue delay", made relative to the forward):
// a lone device never waits, and a busy server trades a few percent of latency for full batches.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cloud/batch_verifier.h"
#include "server/metrics.h"

namespace hlm::server {

struct SchedulerOptions {
  int max_batch = 32;
  // After the first request arrives, wait at most this long for others before the forward
  // (0: take only what is queued already).
  double window_s = 0.0005;
  // While sessions served by the last two forwards are still missing, wait up to this fraction
  // of the last forward's duration for them, counted from when the scheduler was free to start
  // (0 disables gathering).
  double gather_fraction = 0.25;
};

// When the batch headed by the oldest queued request (arrived at `front_arrived`) should start,
// given the sessions queued, the sessions the last two forwards served, when the last forward
// ended and how long it took. Pure, so the gathering rule can be tested without a clock.
std::chrono::steady_clock::time_point gather_deadline(
    const SchedulerOptions& options, std::chrono::steady_clock::time_point front_arrived,
    const std::vector<SessionId>& queued, const std::vector<SessionId>& served_last,
    const std::vector<SessionId>& served_before, std::chrono::steady_clock::time_point last_done,
    double last_forward_s);

class BatchScheduler;

// One generation driven by a BatchScheduler: the scheduler appends tokens, the reader takes
// them. Thread-safe.
class TokenStream {
 public:
  // Waits up to `timeout` for tokens and appends them to `out`. Returns false once the stream
  // has ended and every token has been taken; status() then says whether it failed.
  bool take(std::vector<GeneratedToken>& out, std::chrono::steady_clock::duration timeout);
  // Stops the generation: the scheduler drops the stream before its next forward.
  void cancel();
  Status status() const;

 private:
  friend class BatchScheduler;
  TokenStream(BatchScheduler& owner, SessionId session, int max_tokens, bool stop_at_eog,
              size_t capacity)
      : owner_(owner),
        session_(session),
        remaining_(max_tokens),
        stop_at_eog_(stop_at_eog),
        capacity_(capacity) {}
  // Under the owner's mutex.
  bool ready() const { return !ended_ && buffer_.size() < capacity_; }

  BatchScheduler& owner_;
  const SessionId session_;
  int remaining_;
  const bool stop_at_eog_;
  const size_t capacity_;
  std::condition_variable cv_;  // the reader waits on it, with the owner's mutex
  std::deque<GeneratedToken> buffer_;
  bool ended_ = false;
  Status status_ = ok_status();
};

class BatchScheduler {
 public:
  BatchScheduler(BatchVerifier& cloud, Metrics& metrics, SchedulerOptions options);
  ~BatchScheduler();  // stops: queued requests fail with "server shutting down"

  // Queues one request. The caller guarantees at most one request per session in flight.
  std::future<Result<VerifyReply>> submit(VerifyRequest request);
  // Starts generating into an open session (no Verify may use it meanwhile): one token per
  // forward until max_tokens, an end-of-generation token (with stop_at_eog) or cancel(), with at
  // most `buffer` tokens waiting for the reader.
  std::shared_ptr<TokenStream> stream(SessionId session, int max_tokens, bool stop_at_eog,
                                      size_t buffer = 16);
  void stop();

 private:
  friend class TokenStream;
  struct Job {
    VerifyRequest request;
    std::promise<Result<VerifyReply>> promise;
    std::chrono::steady_clock::time_point arrived;
  };
  void loop();
  // gather_deadline() for the current queue.
  std::chrono::steady_clock::time_point deadline() const;

  BatchVerifier& cloud_;
  Metrics& metrics_;
  SchedulerOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::vector<std::shared_ptr<TokenStream>> streams_;  // active generations
  size_t next_stream_ = 0;  // round-robin start when streams do not all fit a batch
  bool stop_ = false;
  // Sessions of the previous and the latest forward, and how long the latest forward took.
  std::vector<SessionId> served_before_, served_last_;
  double last_forward_s_ = 0;
  std::chrono::steady_clock::time_point last_done_{};  // when the last forward ended
  std::thread thread_;
};

// A cloud backend as a Verifier whose verify() calls from many threads share forwards
// through a BatchScheduler (for `hlm api` with --llm: concurrent requests are verified in one
// batched forward, as `hlm serve` does for devices).
class ScheduledVerifier : public Verifier {
 public:
  ScheduledVerifier(BatchVerifier& cloud, SchedulerOptions options = {})
      : cloud_(cloud), scheduler_(cloud, metrics_, options) {}
  Result<SessionId> open(const SessionParams& params) override { return cloud_.open(params); }
  Result<VerifyReply> verify(const VerifyRequest& request) override {
    return scheduler_.submit(request).get();
  }
  Status close(SessionId session) override { return cloud_.close(session); }
  Status generate(const GenerateRequest& request, const TokenSink& sink) override;
  const Metrics& metrics() const { return metrics_; }

 private:
  BatchVerifier& cloud_;
  Metrics metrics_;
  BatchScheduler scheduler_;
};

// A generation through `scheduler`: opens the session on `cloud`, streams its tokens into
// `sink` (with the prompt's evaluation billed to the first), and closes the session however it
// ends. `cancelled` is polled while waiting for tokens (a client hang-up, a deadline, shutdown);
// it ends the generation with an error saying so.
Status stream_generate(BatchVerifier& cloud, BatchScheduler& scheduler,
                       const GenerateRequest& request, const TokenSink& sink,
                       const std::function<bool()>& cancelled = {});

}  // namespace hlm::server
