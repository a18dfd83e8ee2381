// ThreadPool: a fixed set of workers that run ParallelFor ranges; passed in, never global,
// so several engines can run side by side. Workers spin briefly before sleeping because a
// decode step issues hundreds of short parallel loops.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
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

  // Splits [0, n) into one contiguous chunk per thread (chunks rounded to `grain`) and calls
  // fn(begin, end, worker_index) for each; returns when all are done. Not reentrant.
  void parallel_for(size_t n, size_t grain,
                    const std::function<void(size_t, size_t, int)>& fn);

 private:
  void worker_loop(int index);
  void run_chunk(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> remaining_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(size_t, size_t, int)>* job_ = nullptr;
  size_t job_n_ = 0;
  size_t job_grain_ = 1;
};

}  // namespace hlm
