#include "thread_pool.hpp"

namespace fastlstm::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins briefly (cheap when the wait is short, as between time steps), then yields the core:
// when two pool threads share one core (a busy machine, a restricted CPU set) a long spin would
// hold up the very thread it waits for. `pause` costs ~20-60 ns (Zen 3 vs Intel), so this is a
// few microseconds of spinning.
constexpr int kSpinsBeforeYield = 128;
template <typename Done>
void spin_until(Done done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < kSpinsBeforeYield) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

constexpr int kSpinsBeforeSleep = 2000;  // ~50-100 us: covers the gap between streaming calls

}  // namespace

ThreadPool::ThreadPool(int num_threads)
    : size_(num_threads < 1 ? 1 : num_threads), done_(static_cast<size_t>(size_ - 1)) {
  workers_.reserve(static_cast<size_t>(size_ - 1));
  for (int thread = 1; thread < size_; ++thread) {
    workers_.emplace_back([this, thread] { worker_loop(thread); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(sleep_mutex_);
    stopping_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::run_impl(void* ctx, TaskFn fn) {
  if (size_ == 1) {
    fn(ctx, 0);
    return;
  }
  task_ctx_ = ctx;
  task_fn_ = fn;
  // Spinning workers see the new generation by themselves; the mutex and the notify are for
  // sleeping ones only (both seq_cst: either this sees a sleeper, or that sleeper sees the
  // generation before it waits).
  const unsigned generation = generation_.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(sleep_mutex_); }
    wake_.notify_all();
  }
  fn(ctx, 0);
  for (const Done& done : done_) {
    spin_until([&] { return done.generation.load(std::memory_order_acquire) == generation; });
  }
}

void ThreadPool::worker_loop(int thread) {
  unsigned seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinsBeforeSleep) {
      cpu_relax();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(sleep_mutex_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_.load()) return;
    task_fn_(task_ctx_, thread);
    done_[static_cast<size_t>(thread) - 1].generation.store(seen, std::memory_order_release);
  }
}

void ThreadPool::barrier() {
  if (size_ == 1) return;
  const unsigned generation = barrier_generation_.load(std::memory_order_acquire);
  if (barrier_arrived_.fetch_add(1, std::memory_order_acq_rel) == size_ - 1) {
    barrier_arrived_.store(0, std::memory_order_relaxed);
    barrier_generation_.fetch_add(1, std::memory_order_release);
  } else {
    spin_until([&] { return barrier_generation_.load(std::memory_order_acquire) != generation; });
  }
}

}  // namespace fastlstm::cpu
