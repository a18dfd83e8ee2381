// The scheduler's gathering rule (gather_deadline) on hand-made queues and times; batched
// verification and streamed generations through it equal their unbatched outputs; a slow
// stream reader pauses only its own stream; cancelled streams free their sessions.
#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <thread>

#include "cloud/cloud_verifier.h"
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

GenerateRequest generation(const TinyPair& pair, float temp, uint64_t seed, int max_tokens) {
  GenerateRequest g;
  g.session.vocab_fingerprint = pair.llm->tokenizer().fingerprint();
  g.session.n_vocab = pair.llm->config().n_vocab;
  g.session.sampling = {temp, 0, 1.0f, seed};
  g.session.prompt = {1, 60 + int32_t(seed % 8), 70, 80};
  g.max_tokens = max_tokens;
  return g;
}

std::vector<int32_t> tokens_of(Verifier& v, const GenerateRequest& g) {
  std::vector<int32_t> out;
  auto st = v.generate(g, [&](const GeneratedToken& t) {
    out.push_back(t.token);
    return true;
  });
  EXPECT_TRUE(st) << st.error().message;
  return out;
}

// Streams join the scheduler's forwards; at T = 0 and with seeded sampling each one equals the
// cloud generating for it alone.
TEST(ScheduledVerifier, ConcurrentStreamsEqualGenerationsAlone) {
  const TinyPair pair = make_tiny_pair(2).value();
  ThreadPool pool(2);
  CloudVerifier cloud(pair.llm, pool, CloudOptions{6, 256});
  ScheduledVerifier scheduled(cloud, options());
  std::vector<GenerateRequest> gens;
  for (int i = 0; i < 6; ++i) gens.push_back(generation(pair, i % 2 ? 0.9f : 0.0f, 10 + i, 30));
  std::vector<std::vector<int32_t>> alone(6), together(6);
  for (int i = 0; i < 6; ++i) {
    ThreadPool p1(1);
    CloudVerifier own(pair.llm, p1, CloudOptions{1, 256});
    alone[size_t(i)] = tokens_of(own, gens[size_t(i)]);
    EXPECT_FALSE(alone[size_t(i)].empty());
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] { together[size_t(i)] = tokens_of(scheduled, gens[size_t(i)]); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(together, alone);
  EXPECT_EQ(cloud.n_sessions(), 0);
  const Metrics& m = scheduled.metrics();
  EXPECT_GT(m.batch_size.sum(), double(m.batches.load())) << "some forwards should serve several";
}

TEST(BatchScheduler, ASlowReaderPausesOnlyItsOwnStream) {
  const TinyPair pair = make_tiny_pair(2).value();
  ThreadPool pool(1);
  CloudVerifier cloud(pair.llm, pool, CloudOptions{2, 256});
  Metrics metrics;
  BatchScheduler scheduler(cloud, metrics, options());
  GenerateRequest ga = generation(pair, 0.9f, 1, 30), gb = generation(pair, 0.9f, 2, 30);
  ga.stop_at_eog = gb.stop_at_eog = false;
  const SessionId a = cloud.open_generation(ga).value(), b = cloud.open_generation(gb).value();
  auto slow = scheduler.stream(a, 30, false, 2);
  auto fast = scheduler.stream(b, 30, false, 4);
  std::vector<GeneratedToken> got_b, got_a;
  while (fast->take(got_b, std::chrono::seconds(5))) {
  }
  EXPECT_TRUE(fast->status());
  EXPECT_EQ(got_b.size(), 30u) << "the fast reader gets every token";
  // The slow stream made only what fits its buffer and then waited for its reader.
  ASSERT_TRUE(slow->take(got_a, std::chrono::seconds(5)));
  EXPECT_EQ(got_a.size(), 2u);
  while (slow->take(got_a, std::chrono::seconds(5))) {
  }
  EXPECT_EQ(got_a.size(), 30u);
  // And still the same tokens as generating alone.
  ThreadPool p1(1);
  CloudVerifier own(pair.llm, p1, CloudOptions{1, 256});
  std::vector<int32_t> want = tokens_of(own, ga), have;
  for (const auto& g : got_a) have.push_back(g.token);
  EXPECT_EQ(have, want);
  EXPECT_TRUE(cloud.close(a));
  EXPECT_TRUE(cloud.close(b));
}

TEST(BatchScheduler, CancelledStreamsEndAndFreeTheirSessions) {
  const TinyPair pair = make_tiny_pair(2).value();
  ThreadPool pool(1);
  CloudVerifier cloud(pair.llm, pool, CloudOptions{2, 256});
  Metrics metrics;
  BatchScheduler scheduler(cloud, metrics, options());
  GenerateRequest g = generation(pair, 0.9f, 3, 200);
  g.stop_at_eog = false;
  // The reader stops after three tokens.
  int n = 0;
  auto st = stream_generate(cloud, scheduler, g, [&](const GeneratedToken&) { return ++n < 3; });
  EXPECT_TRUE(st) << st.error().message;
  EXPECT_EQ(n, 3);
  EXPECT_EQ(cloud.n_sessions(), 0);
  // The client goes away (a hang-up, a deadline) while its tokens are being made.
  n = 0;
  st = stream_generate(
      cloud, scheduler, g, [&](const GeneratedToken&) { return ++n > 0; }, [&] { return n >= 5; });
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("cancelled"), std::string::npos) << st.error().message;
  EXPECT_LT(n, 200);
  EXPECT_EQ(cloud.n_sessions(), 0);
  // A request that does not fit is refused before any session opens.
  g.max_tokens = 300;
  st = stream_generate(cloud, scheduler, g, [](const GeneratedToken&) { return true; });
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("max_tokens 300"), std::string::npos) << st.error().message;
  EXPECT_EQ(cloud.n_sessions(), 0);
}

}  // namespace
}  // namespace hlm::server
