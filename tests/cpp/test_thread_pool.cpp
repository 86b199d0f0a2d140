// The CPU backend's thread pool (csrc/cpu/thread_pool.hpp): every thread runs every task once,
// barriers hold every thread, and workers that went to sleep between tasks (idle longer than
// their spin) are woken by the next one, however the two race; the pool survives fork() and
// reports threads it cannot start.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "cpu/thread_pool.hpp"
#include "in_child.hpp"
#include "fastlstm/error.hpp"

using fastlstm::cpu::ThreadPool;

TEST_CASE("thread pool: each task runs once on every thread") {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    std::vector<int> runs(static_cast<size_t>(threads), 0);
    for (int task = 0; task < 2000; ++task) {
      auto body = [&](int thread) { ++runs[static_cast<size_t>(thread)]; };
      pool.run(body);
    }
    for (int count : runs) CHECK(count == 2000);
  }
}

TEST_CASE("thread pool: no thread passes a barrier before all have reached it") {
  ThreadPool pool(3);
  std::atomic<int> arrived{0};
  std::atomic<int> early{0};
  for (int task = 0; task < 200; ++task) {
    auto body = [&](int) {
      for (int round = 1; round <= 10; ++round) {
        arrived.fetch_add(1);
        pool.barrier();
        if (arrived.load() < 3 * round) early.fetch_add(1);
        pool.barrier();  // nobody arrives at the next round while others still check this one
      }
    };
    arrived = 0;
    pool.run(body);
  }
  CHECK(early.load() == 0);
}

TEST_CASE("thread pool: workers asleep between tasks wake for the next one") {
  // Idle gaps around the workers' spin (~50-100 us before they sleep), so that some tasks find
  // them spinning, some asleep and some on the way to sleep: a lost wake-up would hang here.
  ThreadPool pool(3);
  std::mt19937 engine(7);
  std::uniform_int_distribution<int> gap_us(0, 400);
  std::atomic<int> runs{0};
  for (int task = 0; task < 300; ++task) {
    std::this_thread::sleep_for(std::chrono::microseconds(gap_us(engine)));
    auto body = [&](int) { runs.fetch_add(1); };
    pool.run(body);
  }
  CHECK(runs.load() == 900);
}

TEST_CASE("thread pool: destroyed while its workers sleep") {
  for (int repeat = 0; repeat < 20; ++repeat) {
    ThreadPool pool(2);
    std::atomic<int> runs{0};
    auto body = [&](int) { runs.fetch_add(1); };
    pool.run(body);
    std::this_thread::sleep_for(std::chrono::milliseconds(repeat % 2 ? 2 : 0));
    CHECK(runs.load() == 2);
  }
}

#if defined(__linux__)
namespace {

using fastlstm_test::in_child;

bool runs_on_every_thread(ThreadPool& pool) {
  std::vector<std::atomic<int>> runs(static_cast<size_t>(pool.size()));
  for (int task = 0; task < 50; ++task) {
    auto body = [&](int thread) {
      runs[static_cast<size_t>(thread)].fetch_add(1);
      pool.barrier();
    };
    pool.run(body);
  }
  return std::all_of(runs.begin(), runs.end(), [](const std::atomic<int>& count) { return count == 50; });
}

}  // namespace

TEST_CASE("thread pool: in a forked child it starts new workers, and the parent's keep working") {
  ThreadPool pool(3);
  REQUIRE(runs_on_every_thread(pool));
  CHECK(in_child([&] { return runs_on_every_thread(pool) && in_child([&] { return runs_on_every_thread(pool); }); }));
  CHECK(runs_on_every_thread(pool));
  CHECK(in_child([] {
    ThreadPool fresh(2);  // a pool built in a child
    return runs_on_every_thread(fresh);
  }));
}

#if !defined(FASTLSTM_SANITIZE)  // the sanitizers' own allocations fail under the limit first
TEST_CASE("thread pool: a thread that cannot start is an Error naming the cause, after the others are joined") {
  CHECK(in_child([] {
    struct rlimit limit {};
    const long pages = [] {
      long size = 0;
      if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(statm, "%ld", &size) != 1) size = 0;
        std::fclose(statm);
      }
      return size;
    }();
    limit.rlim_cur = static_cast<rlim_t>(pages) * static_cast<rlim_t>(::sysconf(_SC_PAGESIZE)) + (256u << 20);
    limit.rlim_max = RLIM_INFINITY;
    if (::setrlimit(RLIMIT_AS, &limit) != 0) return false;
    try {
      ThreadPool pool(1000);  // 8 MB of stack each: the limit stops them
      return false;
    } catch (const fastlstm::Error& error) {
      if (std::string(error.what()).find("cannot start thread") == std::string::npos) return false;
    }
    ThreadPool pool(2);  // the process goes on
    return runs_on_every_thread(pool);
  }));
}
#endif
#endif
