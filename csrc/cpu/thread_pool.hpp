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

  static constexpr size_t kLine = 64;
  // The generation a worker finished last, on a line of its own: only that worker writes it.
  struct alignas(kLine) Done {
    std::atomic<unsigned> generation{0};
  };

  int size_;
  std::vector<std::thread> workers_;
  // What the caller writes and the workers poll, what each worker writes and the caller polls,
  // and the barrier's counters sit on separate cache lines, so that handing a task over moves
  // one line to the workers and joining one line per worker back, nothing written by both sides.
  alignas(kLine) void* task_ctx_ = nullptr;
  TaskFn task_fn_ = nullptr;
  std::atomic<unsigned> generation_{0};  // bumped once per task
  std::atomic<bool> stopping_{false};
  std::vector<Done> done_;  // per worker (index thread - 1)
  alignas(kLine) std::atomic<int> barrier_arrived_{0};
  std::atomic<unsigned> barrier_generation_{0};
  alignas(kLine) std::atomic<int> sleepers_{0};  // workers waiting on wake_, not spinning
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

}  // namespace fastlstm::cpu
