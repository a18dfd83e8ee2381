// Tests for ThreadPool: every index visited exactly once, for any thread count and grain.
#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace hlm {
namespace {

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (size_t n : {1u, 7u, 64u, 1000u}) {
      for (size_t grain : {1u, 4u, 32u}) {
        std::vector<std::atomic<int>> hits(n);
        pool.parallel_for(n, grain, [&](size_t b, size_t e, int w) {
          EXPECT_GE(w, 0);
          EXPECT_LT(w, threads);
          for (size_t i = b; i < e; ++i) hits[i]++;
        });
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
      }
    }
  }
}

TEST(ThreadPool, ManyShortLoops) {
  ThreadPool pool(2);
  std::atomic<long> sum{0};
  for (int it = 0; it < 2000; ++it) {
    pool.parallel_for(10, 1, [&](size_t b, size_t e, int) { sum += static_cast<long>(e - b); });
  }
  EXPECT_EQ(sum.load(), 20000);
}

TEST(ThreadPool, ChunksAlignedToGrainAndWorkersNeverOverlap) {
  for (int threads : {2, 3, 8}) {
    ThreadPool pool(threads);
    for (size_t n : {16u, 100u, 576u, 1536u, 49152u}) {
      std::vector<std::atomic<int>> busy(threads);
      std::atomic<size_t> covered{0};
      std::atomic<bool> ok{true};
      pool.parallel_for(n, 16, [&](size_t b, size_t e, int w) {
        if (b % 16 != 0 || (e != n && e % 16 != 0) || b >= e) ok = false;
        if (busy[w].fetch_add(1) != 0) ok = false;
        covered += e - b;
        busy[w].fetch_sub(1);
      });
      EXPECT_TRUE(ok.load()) << "threads " << threads << " n " << n;
      EXPECT_EQ(covered.load(), n);
    }
  }
}

// More threads than cores (the test machine has few): loops must still finish promptly, and
// the pool must shut down cleanly while workers are asleep or spinning.
TEST(ThreadPool, OversubscribedAndIdle) {
  ThreadPool pool(6);
  std::atomic<long> sum{0};
  for (int it = 0; it < 500; ++it) {
    pool.parallel_for(96, 16, [&](size_t b, size_t e, int) { sum += static_cast<long>(e - b); });
  }
  EXPECT_EQ(sum.load(), 500 * 96);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // workers go to sleep
  pool.parallel_for(96, 16, [&](size_t b, size_t e, int) { sum += static_cast<long>(e - b); });
  EXPECT_EQ(sum.load(), 501 * 96);
}

// Several threads share one pool (concurrent API requests): each caller's loops cover its own
// range exactly once, and no worker index runs two chunks of one loop at the same time.
TEST(ThreadPool, ConcurrentCallersTakeTurns) {
  ThreadPool pool(3);
  std::vector<std::thread> callers;
  std::vector<long> sums(4, 0);
  std::atomic<bool> overlap{false};
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&, c] {
      std::vector<std::atomic<int>> busy(3);
      for (int it = 0; it < 300; ++it) {
        std::atomic<long> sum{0};
        pool.parallel_for(64 + size_t(c), 4, [&](size_t b, size_t e, int w) {
          if (busy[size_t(w)].fetch_add(1) != 0) overlap = true;
          sum += static_cast<long>(e - b);
          busy[size_t(w)].fetch_sub(1);
        });
        sums[size_t(c)] += sum.load();
      }
    });
  }
  for (auto& t : callers) t.join();
  for (int c = 0; c < 4; ++c) EXPECT_EQ(sums[size_t(c)], 300L * (64 + c));
  EXPECT_FALSE(overlap.load());
}

}  // namespace
}  // namespace hlm
