// The scheduler's gathering rule (gather_deadline) on hand-made queues and times.
#include "server/scheduler.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace hlm::server
