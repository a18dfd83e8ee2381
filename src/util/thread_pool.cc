// ThreadPool implementation: generation counter + spin-then-sleep workers.
#include "util/thread_pool.h"

#include <algorithm>

namespace hlm {

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunk(int index) {
  const size_t n_chunks = static_cast<size_t>(n_threads_);
  size_t units = (job_n_ + job_grain_ - 1) / job_grain_;
  size_t per = (units + n_chunks - 1) / n_chunks;
  size_t begin = std::min(job_n_, static_cast<size_t>(index) * per * job_grain_);
  size_t end = std::min(job_n_, begin + per * job_grain_);
  if (begin < end) (*job_)(begin, end, index);
}

void ThreadPool::parallel_for(size_t n, size_t grain,
                              const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  if (n_threads_ == 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  remaining_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  run_chunk(0);
  while (remaining_.load(std::memory_order_acquire) != 0) {
  }
  job_ = nullptr;
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin for a short while: the next loop of a decode step usually starts within microseconds.
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < 200000; ++spin) {
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_.load() != seen; });
      g = generation_.load();
    }
    seen = g;
    if (stop_.load()) return;
    run_chunk(index);
    remaining_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace hlm
