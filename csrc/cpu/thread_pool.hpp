#pragma once
// A persistent pool whose threads all run one task together and meet at barriers: the shape of
// an LSTM time loop, where every step needs the whole h of the step before.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace fastlstm::cpu {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread, which takes part as thread 0.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Runs task(thread_index) on every thread and returns when all are done. One run at a time.
  template <typename Task>
  void run(Task& task) {
    run_impl(&task, [](void* ctx, int thread) { (*static_cast<Task*>(ctx))(thread); });
  }

  // Blocks until every thread of the current task has arrived. Only valid inside run().
  void barrier();

 private:
  using TaskFn = void (*)(void*, int);
  void run_impl(void* ctx, TaskFn fn);
  void worker_loop(int thread);

  int size_;
  std::vector<std::thread> workers_;
  void* task_ctx_ = nullptr;
  TaskFn task_fn_ = nullptr;
  std::atomic<unsigned> generation_{0};   // bumped once per task
  std::atomic<int> unfinished_{0};        // workers still running the current task
  std::atomic<int> barrier_arrived_{0};
  std::atomic<unsigned> barrier_generation_{0};
  std::atomic<bool> stopping_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

}  // namespace fastlstm::cpu
