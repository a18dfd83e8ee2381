// BatchScheduler implementation.
#include "server/scheduler.h"

#include <algorithm>
#include <vector>

namespace hlm::server {

BatchScheduler::BatchScheduler(CloudVerifier& cloud, Metrics& metrics, SchedulerOptions options)
    : cloud_(cloud), metrics_(metrics), options_(options) {
  if (options_.max_batch < 1) options_.max_batch = 1;
  thread_ = std::thread([this] { loop(); });
}

BatchScheduler::~BatchScheduler() { stop(); }

void BatchScheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (Job& j : queue_) j.promise.set_value(make_error("the server is shutting down"));
  queue_.clear();
}

std::future<Result<VerifyReply>> BatchScheduler::submit(VerifyRequest request) {
  Job job{std::move(request), {}, std::chrono::steady_clock::now()};
  auto f = job.promise.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      job.promise.set_value(make_error("the server is shutting down"));
      return f;
    }
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return f;
}

std::chrono::steady_clock::time_point gather_deadline(
    const SchedulerOptions& options, std::chrono::steady_clock::time_point front_arrived,
    const std::vector<SessionId>& queued, const std::vector<SessionId>& served_last,
    const std::vector<SessionId>& served_before, std::chrono::steady_clock::time_point last_done,
    double last_forward_s) {
  using Clock = std::chrono::steady_clock;
  const auto span = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const auto window = front_arrived + span(options.window_s);
  if (options.gather_fraction <= 0 || int(queued.size()) >= options.max_batch) return window;
  // Everyone expected is here when each session of the last two forwards has a request queued.
  const auto all_queued = [&](const std::vector<SessionId>& sessions) {
    return std::all_of(sessions.begin(), sessions.end(), [&](SessionId id) {
      return std::find(queued.begin(), queued.end(), id) != queued.end();
    });
  };
  if (all_queued(served_last) && all_queued(served_before)) return front_arrived;
  // Counted from when the scheduler was free, not from the front's arrival: requests that
  // queued during the last forward must still give the sessions it just served time to return,
  // or two groups of devices keep alternating in half-size batches.
  const auto free_since = std::max(front_arrived, last_done);
  return std::max(window, free_since + span(options.gather_fraction * last_forward_s));
}

std::chrono::steady_clock::time_point BatchScheduler::deadline() const {
  std::vector<SessionId> queued;
  queued.reserve(queue_.size());
  for (const Job& j : queue_) queued.push_back(j.request.session);
  return gather_deadline(options_, queue_.front().arrived, queued, served_last_, served_before_,
                         last_done_, last_forward_s_);
}

void BatchScheduler::loop() {
  using Clock = std::chrono::steady_clock;
  std::vector<Job> batch;
  std::vector<VerifyRequest> requests;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      // Re-evaluated on every arrival: the wait ends as soon as everyone expected is queued.
      for (auto until = deadline(); Clock::now() < until; until = deadline()) {
        cv_.wait_until(lock, until);
        if (stop_) return;
      }
      while (!queue_.empty() && int(batch.size()) < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    requests.clear();
    for (Job& j : batch) requests.push_back(std::move(j.request));
    const auto t_forward = Clock::now();
    std::vector<Result<VerifyReply>> results = cloud_.verify_batch(requests);
    const auto done = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_forward_s_ = std::chrono::duration<double>(done - t_forward).count();
      last_done_ = done;
      served_before_ = std::move(served_last_);
      served_last_.clear();
      for (const VerifyRequest& r : requests) served_last_.push_back(r.session);
    }
    // Stale requests (pipelined past a replaced draft) were answered without a forward.
    size_t stale = 0;
    for (const auto& r : results) stale += r.ok() && r->stale;
    if (stale < batch.size()) {
      metrics_.batches++;
      metrics_.batch_size.observe(double(batch.size() - stale));
      metrics_.forward_time.observe(std::chrono::duration<double>(done - t_forward).count());
    }
    uint64_t tokens = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (results[i].ok() && !results[i]->stale) {
        const VerifyReply& r = results[i].value();
        tokens += requests[i].pending.size() + size_t(r.n_accepted) + (r.has_next ? 1 : 0);
        metrics_.drafts += requests[i].drafts.size();
        metrics_.accepted += uint64_t(r.n_accepted);
      }
      metrics_.verify_latency.observe(
          std::chrono::duration<double>(done - batch[i].arrived).count());
      batch[i].promise.set_value(std::move(results[i]));
    }
    if (tokens) metrics_.add_tokens(tokens, done);
    batch.clear();
  }
}

}  // namespace hlm::server
