// ThreadPool: a fixed set of workers that run ParallelFor ranges; passed in, never global,
// so several engines can run side by side. A decode step issues hundreds of short parallel
// loops, so idle workers spin briefly (with pause) before yielding and then sleeping, and the
// range is handed out in grain-aligned chunks claimed dynamically: a worker that is late
// (descheduled on a busy machine) never holds up the caller, which takes the chunks itself.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace hlm {

class ThreadPool {
 public:
  // n_threads counts the calling thread: 1 means run everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Splits [0, n) into contiguous chunks whose boundaries are multiples of `grain` (a few per
  // thread) and calls fn(begin, end, worker_index) for each, on the calling thread (index 0)
  // and the workers; returns when all are done. Calls with the same worker_index never overlap
  // within one caller's loop. Callers on several threads (concurrent generations sharing the
  // cores) take turns loop by loop. Not reentrant.
  void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn);

 private:
  void worker_loop(int index);
  // Claims and runs chunks of generation `gen` until none are left.
  void run_chunks(uint32_t gen, int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  // Ticket: generation (high 32 bits) | chunk count (16 bits) | next unclaimed chunk (16 bits).
  // Claims are compare-and-swap on the whole word, so a late worker can never claim a chunk of
  // a newer loop than the one it woke for.
  alignas(64) std::atomic<uint64_t> ticket_{0};
  alignas(64) std::atomic<uint32_t> done_{0};  // chunks finished in the current generation
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex call_mu_;  // one caller's loop at a time
  std::mutex mu_;
  std::condition_variable cv_;
  // Current loop, written by the caller before it publishes the ticket.
  const std::function<void(size_t, size_t, int)>* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_chunk_ = 1;  // elements per chunk (a multiple of the grain)
};

}  // namespace hlm
