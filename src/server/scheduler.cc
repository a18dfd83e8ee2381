// BatchScheduler implementation.
#include "server/scheduler.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace hlm::server {

BatchScheduler::BatchScheduler(BatchVerifier& cloud, Metrics& metrics, SchedulerOptions options)
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
  for (auto& st : streams_) {
    st->ended_ = true;
    st->status_ = make_error("the server is shutting down");
    st->cv_.notify_all();
  }
  streams_.clear();
}

std::shared_ptr<TokenStream> BatchScheduler::stream(SessionId session, int max_tokens,
                                                    bool stop_at_eog, size_t buffer) {
  std::shared_ptr<TokenStream> st(
      new TokenStream(*this, session, max_tokens, stop_at_eog, std::max<size_t>(buffer, 1)));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      st->ended_ = true;
      st->status_ = make_error("the server is shutting down");
      return st;
    }
    if (max_tokens < 1) {
      st->ended_ = true;
      return st;
    }
    streams_.push_back(st);
  }
  cv_.notify_one();
  return st;
}

bool TokenStream::take(std::vector<GeneratedToken>& out,
                       std::chrono::steady_clock::duration timeout) {
  std::unique_lock<std::mutex> lock(owner_.mu_);
  cv_.wait_for(lock, timeout, [&] { return ended_ || !buffer_.empty(); });
  const bool was_full = buffer_.size() >= capacity_;
  const bool more = !ended_ || !buffer_.empty();
  out.insert(out.end(), buffer_.begin(), buffer_.end());
  buffer_.clear();
  lock.unlock();
  if (was_full) owner_.cv_.notify_one();  // the stream may join the next forward again
  return more;
}

void TokenStream::cancel() {
  std::lock_guard<std::mutex> lock(owner_.mu_);
  ended_ = true;
  cv_.notify_all();
}

Status TokenStream::status() const {
  std::lock_guard<std::mutex> lock(owner_.mu_);
  return status_;
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
  std::vector<std::shared_ptr<TokenStream>> stepping;  // streams in this forward
  const Tokenizer& tok = cloud_.tokenizer();
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto work = [&] {
        std::erase_if(streams_, [](const auto& st) { return st->ended_; });
        return std::any_of(streams_.begin(), streams_.end(),
                           [](const auto& st) { return st->ready(); });
      };
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || work(); });
      if (stop_) return;
      // Re-evaluated on every arrival: the wait ends as soon as everyone expected is queued.
      // Streams never wait: they are always here.
      if (!queue_.empty()) {
        for (auto until = deadline(); Clock::now() < until; until = deadline()) {
          cv_.wait_until(lock, until);
          if (stop_) return;
        }
      }
      while (!queue_.empty() && int(batch.size()) < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      // Streams fill the rest of the batch, round robin so that none starves.
      work();
      const size_t n = streams_.size();
      for (size_t i = 0; i < n && int(batch.size() + stepping.size()) < options_.max_batch; ++i) {
        auto& st = streams_[(next_stream_ + i) % n];
        if (st->ready()) stepping.push_back(st);
      }
      if (n) next_stream_ = (next_stream_ + 1) % n;
    }
    requests.clear();
    for (Job& j : batch) requests.push_back(std::move(j.request));
    for (const auto& st : stepping) {
      VerifyRequest step;
      step.session = st->session_;
      requests.push_back(step);
    }
    const auto t_forward = Clock::now();
    std::vector<Result<VerifyReply>> results = cloud_.verify_batch(requests);
    const auto done = Clock::now();
    uint64_t tokens = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_forward_s_ = std::chrono::duration<double>(done - t_forward).count();
      last_done_ = done;
      served_before_ = std::move(served_last_);
      served_last_.clear();
      // Only devices come back a round trip later: streams are not waited for.
      for (size_t i = 0; i < batch.size(); ++i) served_last_.push_back(requests[i].session);
      for (size_t i = 0; i < stepping.size(); ++i) {
        TokenStream& st = *stepping[i];
        Result<VerifyReply>& r = results[batch.size() + i];
        if (st.ended_) continue;  // cancelled while the forward ran: the token is dropped
        if (!r) {
          st.ended_ = true;
          st.status_ = r.error();
        } else {
          st.buffer_.push_back(GeneratedToken{r->next, r->t_llm_s});
          tokens++;
          if (--st.remaining_ == 0 || (st.stop_at_eog_ && tok.is_eog(r->next))) st.ended_ = true;
        }
        st.cv_.notify_all();
      }
    }
    stepping.clear();
    // Stale requests (pipelined past a replaced draft) were answered without a forward.
    size_t stale = 0;
    for (const auto& r : results) stale += r.ok() && r->stale;
    if (stale < requests.size()) {
      metrics_.batches++;
      metrics_.batch_size.observe(double(requests.size() - stale));
      metrics_.forward_time.observe(std::chrono::duration<double>(done - t_forward).count());
    }
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

Status ScheduledVerifier::generate(const GenerateRequest& request, const TokenSink& sink) {
  return stream_generate(cloud_, scheduler_, request, sink);
}

Status stream_generate(BatchVerifier& cloud, BatchScheduler& scheduler,
                       const GenerateRequest& request, const TokenSink& sink,
                       const std::function<bool()>& cancelled) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto id = cloud.open_generation(request);
  if (!id) return id.error();
  double prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  auto stream = scheduler.stream(*id, request.max_tokens, request.stop_at_eog);
  Status status = ok_status();
  std::vector<GeneratedToken> got;
  // Short waits, so that a hang-up is noticed promptly even while the cloud is busy.
  const auto poll = std::chrono::milliseconds(20);
  int delivered = 0;
  bool more = true;
  while (more) {
    got.clear();
    more = stream->take(got, poll);
    for (GeneratedToken& g : got) {
      g.t_llm_s += std::exchange(prefill_s, 0.0);
      if (!sink(g)) {
        more = false;
        break;
      }
      delivered++;
    }
    if (more && cancelled && cancelled()) {
      status = make_error("generation cancelled after {} tokens", delivered);
      break;
    }
  }
  stream->cancel();
  if (status.ok()) status = stream->status();
  (void)cloud.close(*id);
  return status;
}

}  // namespace hlm::server
