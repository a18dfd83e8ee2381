// ThreadPool implementation: generation-tagged chunk tickets, bounded spin (pause) -> yield ->
// condition-variable sleep for idle workers.
#include "util/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace hlm {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

using Clock = std::chrono::steady_clock;

// Idle workers spin this long after a loop (the next loop of a decode step usually starts
// within microseconds), then yield the core for a while, then sleep.
constexpr auto kSpinTime = std::chrono::microseconds(100);
constexpr auto kYieldTime = std::chrono::microseconds(2000);

constexpr int kChunksPerThread = 4;

inline uint32_t ticket_gen(uint64_t t) { return static_cast<uint32_t>(t >> 32); }
inline uint32_t ticket_chunks(uint64_t t) { return static_cast<uint32_t>(t >> 16) & 0xffffu; }
inline uint32_t ticket_next(uint64_t t) { return static_cast<uint32_t>(t) & 0xffffu; }

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  {
    // Bump the generation with no chunks so sleeping and spinning workers wake and exit.
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t t = ticket_.load(std::memory_order_relaxed);
    ticket_.store(static_cast<uint64_t>(ticket_gen(t) + 1) << 32, std::memory_order_seq_cst);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunks(uint32_t gen, int index) {
  uint64_t t = ticket_.load(std::memory_order_acquire);
  for (;;) {
    if (ticket_gen(t) != gen || ticket_next(t) >= ticket_chunks(t)) return;
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
      continue;
    }
    // The chunk is ours; the job fields stay put until it is reported done.
    const size_t begin = static_cast<size_t>(ticket_next(t)) * job_chunk_;
    const size_t end = std::min(job_n_, begin + job_chunk_);
    if (begin < end) (*job_)(begin, end, index);
    done_.fetch_add(1, std::memory_order_acq_rel);
    t = ticket_.load(std::memory_order_acquire);
  }
}

void ThreadPool::parallel_for(size_t n, size_t grain,
                              const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  const size_t units = (n + grain - 1) / grain;
  if (n_threads_ == 1 || units <= 1) {
    fn(0, n, 0);
    return;
  }
  std::lock_guard<std::mutex> caller(call_mu_);
  const size_t max_chunks =
      std::min<size_t>(0xffff, static_cast<size_t>(n_threads_) * kChunksPerThread);
  const size_t n_chunks_wanted = std::min(units, max_chunks);
  const size_t per = (units + n_chunks_wanted - 1) / n_chunks_wanted;  // units per chunk
  const uint32_t n_chunks = static_cast<uint32_t>((units + per - 1) / per);
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = per * grain;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t gen = ticket_gen(ticket_.load(std::memory_order_relaxed)) + 1;
  ticket_.store((static_cast<uint64_t>(gen) << 32) | (static_cast<uint64_t>(n_chunks) << 16),
                std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }
    cv_.notify_all();
  }
  run_chunks(gen, 0);
  // Only chunks already claimed by workers remain; wait for them.
  const auto start = Clock::now();
  int spins = 0;
  while (done_.load(std::memory_order_acquire) != n_chunks) {
    cpu_relax();
    if (++spins >= 256) {
      spins = 0;
      if (Clock::now() - start > kSpinTime) std::this_thread::yield();
    }
  }
  job_ = nullptr;
}

void ThreadPool::worker_loop(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = ticket_gen(ticket_.load(std::memory_order_acquire));
    if (g == seen) {
      const auto start = Clock::now();
      int spins = 0;
      bool yielding = false;
      while (g == seen) {
        if (yielding) {
          std::this_thread::yield();
        } else {
          cpu_relax();
        }
        g = ticket_gen(ticket_.load(std::memory_order_acquire));
        if (g != seen || ++spins < 64) continue;
        spins = 0;
        const auto waited = Clock::now() - start;
        if (waited > kSpinTime) yielding = true;
        if (waited > kYieldTime) {
          std::unique_lock<std::mutex> lock(mu_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          cv_.wait(lock,
                   [&] { return ticket_gen(ticket_.load(std::memory_order_seq_cst)) != seen; });
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
          g = ticket_gen(ticket_.load(std::memory_order_acquire));
        }
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    run_chunks(g, index);
  }
}

}  // namespace hlm
