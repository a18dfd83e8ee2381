// The scheduler's gathering rule (gather_deadline) on hand-made queues and times.
#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <thread>

#include "device/device.h"
#include "engine/model_writer.h"
#include "method/policy.h"

namespace hlm::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

SchedulerOptions options() {
  SchedulerOptions o;
  o.max_batch = 32;
  o.window_s = 0.0005;
  o.gather_fraction = 0.25;
  return o;
}

const Clock::time_point t0 = Clock::time_point() + std::chrono::hours(1);

TEST(Gathering, ALoneDeviceNeverWaits) {
  // One session, served last time and queued again: everyone expected is here.
  EXPECT_EQ(gather_deadline(options(), t0, {7}, {7}, {7}, t0 - milliseconds(1), 0.040), t0);
}

TEST(Gathering, WaitsForTheSessionsJustServedCountedFromWhenTheServerWasFree) {
  // Group B (3, 4) queued during the forward that served group A (1, 2); A has not come back.
  // The wait runs from the forward's end, not from B's arrival 30 ms earlier, so A can join.
  const Clock::time_point done = t0 + milliseconds(30);
  const auto d = gather_deadline(options(), t0, {3, 4}, {1, 2}, {3, 4}, done, 0.040);
  EXPECT_EQ(d, done + milliseconds(10));
  // Once A is back, the batch starts at once.
  EXPECT_EQ(gather_deadline(options(), t0, {3, 4, 1, 2}, {1, 2}, {3, 4}, done, 0.040), t0);
}

TEST(Gathering, DisabledFullOrFreshQueuesUseOnlyTheWindow) {
  const auto window = t0 + std::chrono::microseconds(500);
  SchedulerOptions off = options();
  off.gather_fraction = 0;
  EXPECT_EQ(gather_deadline(off, t0, {3}, {1, 2}, {3}, t0, 0.040), window);
  SchedulerOptions small = options();
  small.max_batch = 2;
  EXPECT_EQ(gather_deadline(small, t0, {3, 4}, {1, 2}, {3, 4}, t0, 0.040), window);
  // A request that arrives after the server went idle waits from its own arrival.
  const Clock::time_point done = t0 - milliseconds(100);
  EXPECT_EQ(gather_deadline(options(), t0, {3}, {1}, {3}, done, 0.040), t0 + milliseconds(10));
}

// Generations on several threads verify through one ScheduledVerifier: their verifications
// share forwards, and each output equals the same generation run alone.
TEST(ScheduledVerifier, ConcurrentGenerationsShareForwardsAndKeepTheirOutputs) {
  const TinyPair pair = make_tiny_pair(2).value();
  ThreadPool pool(2);
  CloudVerifier cloud(pair.llm, pool, CloudOptions{6, 256});
  SchedulerOptions o = options();
  o.window_s = 0.002;
  ScheduledVerifier scheduled(cloud, o);
  auto run = [&](Verifier& v, int i) {
    RunConfig c;
    c.policy = parse_policy("hlm").value();
    c.sampling.seed = 100 + uint64_t(i);
    c.max_tokens = 24;
    c.n_ctx = 256;
    const std::vector<int32_t> prompt = {1, 60 + i, 70, 80};
    auto r = Device(pair.slm, pool, c).generate(prompt, &v);
    EXPECT_TRUE(r) << r.error().message;
    return r ? r->tokens : std::vector<int32_t>{};
  };
  std::vector<std::vector<int32_t>> alone(6), together(6);
  for (int i = 0; i < 6; ++i) {
    ThreadPool p1(1);
    CloudVerifier own(pair.llm, p1, CloudOptions{1, 256});
    alone[size_t(i)] = run(own, i);
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i)
    threads.emplace_back([&, i] { together[size_t(i)] = run(scheduled, i); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(together, alone);
  const Metrics& m = scheduled.metrics();
  EXPECT_GT(m.batch_size.sum(), double(m.batches.load())) << "some forwards should serve several";
}

}  // namespace
}  // namespace hlm::server
