#include "thread_pool.hpp"

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "fastlstm/error.hpp"
#include "../fork_safety.hpp"

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
// hold up the very thread it waits for. A few microseconds of spinning at ~20-60 ns a pause.
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
constexpr size_t kLine = 64;

}  // namespace

struct ThreadPool::Crew {
  // The generation a worker finished last, on a line of its own: only that worker writes it.
  struct alignas(kLine) Done {
    std::atomic<unsigned> generation{0};
  };

  explicit Crew(int size) : size(size), done(static_cast<size_t>(size - 1)) {}
  // Starts the workers; on failure stops those that started and throws Error naming the cause.
  void start();
  void stop();

  int size;
  std::vector<std::thread> workers;
  // What the caller writes and the workers poll, what each worker writes and the caller polls,
  // and the barrier's counters sit on separate cache lines, so that handing a task over moves
  // one line to the workers and joining one line per worker back, nothing written by both sides.
  alignas(kLine) void* task_ctx = nullptr;
  TaskFn task_fn = nullptr;
  std::atomic<unsigned> generation{0};  // bumped once per task
  std::atomic<bool> stopping{false};
  std::vector<Done> done;  // per worker (index thread - 1)
  alignas(kLine) std::atomic<int> barrier_arrived{0};
  std::atomic<unsigned> barrier_generation{0};
  alignas(kLine) std::atomic<int> sleepers{0};  // workers waiting on wake, not spinning
  std::mutex sleep_mutex;
  std::condition_variable wake;
};

void ThreadPool::Crew::start() {
  workers.reserve(static_cast<size_t>(size - 1));
  for (int thread = 1; thread < size; ++thread) {
    try {
      workers.emplace_back([this, thread] { worker_loop(*this, thread); });
    } catch (const std::exception& error) {  // std::system_error, or std::bad_alloc for its state
      stop();
      throw Error("cannot start thread " + std::to_string(thread + 1) + " of the " + std::to_string(size) +
                  " asked for (num_threads): " + error.what());
    }
  }
}

void ThreadPool::Crew::stop() {
  {
    std::lock_guard<std::mutex> lock(sleep_mutex);
    stopping.store(true);
    generation.fetch_add(1);
  }
  wake.notify_all();
  for (auto& worker : workers) worker.join();
  workers.clear();
}

ThreadPool::ThreadPool(int num_threads) : size_(num_threads < 1 ? 1 : num_threads) {
  crew_fork_generation_ = fork_generation();
  if (size_ == 1) return;
  auto crew = std::make_unique<Crew>(size_);
  crew->start();
  crew_ = crew.release();
}

ThreadPool::~ThreadPool() {
  if (!crew_) return;
  if (fork_generation() != crew_fork_generation_) return;  // a parent's crew: abandoned (see crew_)
  crew_->stop();
  delete crew_;
}

void ThreadPool::run_impl(void* ctx, TaskFn fn) {
  if (size_ == 1) {
    fn(ctx, 0);
    return;
  }
  const unsigned forks = fork_generation();
  if (forks != crew_fork_generation_) {
    auto crew = std::make_unique<Crew>(size_);
    crew->start();
    crew_ = crew.release();  // the parent's crew is abandoned, not destroyed
    crew_fork_generation_ = forks;
  }
  Crew& crew = *crew_;
  crew.task_ctx = ctx;
  crew.task_fn = fn;
  // Spinning workers see the new generation by themselves; the mutex and the notify are for
  // sleeping ones only (both seq_cst: either this sees a sleeper, or that sleeper sees the
  // generation before it waits).
  const unsigned generation = crew.generation.fetch_add(1, std::memory_order_seq_cst) + 1;
  if (crew.sleepers.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(crew.sleep_mutex); }
    crew.wake.notify_all();
  }
  fn(ctx, 0);
  for (const Crew::Done& done : crew.done) {
    spin_until([&] { return done.generation.load(std::memory_order_acquire) == generation; });
  }
}

void ThreadPool::worker_loop(Crew& crew, int thread) {
  unsigned seen = 0;
  for (;;) {
    int spins = 0;
    while (crew.generation.load(std::memory_order_acquire) == seen && spins < kSpinsBeforeSleep) {
      cpu_relax();
      ++spins;
    }
    if (crew.generation.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(crew.sleep_mutex);
      crew.sleepers.fetch_add(1, std::memory_order_seq_cst);
      crew.wake.wait(lock, [&] { return crew.generation.load(std::memory_order_seq_cst) != seen; });
      crew.sleepers.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = crew.generation.load(std::memory_order_acquire);
    if (crew.stopping.load()) return;
    crew.task_fn(crew.task_ctx, thread);
    crew.done[static_cast<size_t>(thread) - 1].generation.store(seen, std::memory_order_release);
  }
}

void ThreadPool::barrier() {
  if (size_ == 1) return;
  Crew& crew = *crew_;
  const unsigned generation = crew.barrier_generation.load(std::memory_order_acquire);
  if (crew.barrier_arrived.fetch_add(1, std::memory_order_acq_rel) == size_ - 1) {
    crew.barrier_arrived.store(0, std::memory_order_relaxed);
    crew.barrier_generation.fetch_add(1, std::memory_order_release);
  } else {
    spin_until([&] { return crew.barrier_generation.load(std::memory_order_acquire) != generation; });
  }
}

}  // namespace fastlstm::cpu
