#pragma once
// A persistent pool whose threads all run one task together and meet at barriers: the shape of
// an LSTM time loop, where every step needs the whole h of the step before.
namespace fastlstm::cpu {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread, which takes part as thread 0. Throws fastlstm::Error
  // naming the cause when a thread cannot be started, after stopping those that did.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Runs task(thread_index) on every thread and returns when all are done. One run at a time.
  // In the child of a fork (whose workers stayed in the parent) it first starts new workers, and
  // throws as the constructor does when it cannot.
  template <typename Task>
  void run(Task& task) {
    run_impl(&task, [](void* ctx, int thread) { (*static_cast<Task*>(ctx))(thread); });
  }

  // Blocks until every thread of the current task has arrived. Only valid inside run().
  void barrier();

 private:
  using TaskFn = void (*)(void*, int);
  struct Crew;
  void run_impl(void* ctx, TaskFn fn);
  static void worker_loop(Crew& crew, int thread);

  int size_;
  // The workers and everything they share. A child of fork() abandons its parent's crew without
  // touching it (its threads do not exist here, a lock in it may be held by one of them) and
  // starts a new one.
  Crew* crew_ = nullptr;
  unsigned crew_fork_generation_ = 0;  // fork_generation() when crew_ started
};

}  // namespace fastlstm::cpu
