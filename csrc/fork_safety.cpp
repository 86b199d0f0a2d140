#include "fork_safety.hpp"

#include <atomic>
#include <set>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FASTLSTM_HAS_FORK 1
#endif

namespace fastlstm {
namespace {

std::atomic<unsigned> forks{0};

// Every live ForkSafeMutex, guarded by registry_mutex(). Both are leaked on purpose: a model
// destroyed during static destruction still unregisters safely.
std::mutex& registry_mutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}
std::set<ForkSafeMutex*>& registry() {
  static auto* mutexes = new std::set<ForkSafeMutex*>;
  return *mutexes;
}

#if defined(FASTLSTM_HAS_FORK)
// The registry's lock is taken first and released last: no mutex joins or leaves it meanwhile.
// A thread holding a model's lock never waits for the registry's, so the order cannot deadlock.
void before_fork() {
  registry_mutex().lock();
  for (ForkSafeMutex* mutex : registry()) mutex->lock();
}

void after_fork() {
  for (ForkSafeMutex* mutex : registry()) mutex->unlock();
  registry_mutex().unlock();
}

void after_fork_in_child() {
  forks.fetch_add(1, std::memory_order_relaxed);
  after_fork();
}
#endif

void install_fork_handlers() {
#if defined(FASTLSTM_HAS_FORK)
  static const bool installed = pthread_atfork(before_fork, after_fork, after_fork_in_child) == 0;
  (void)installed;
#endif
}

}  // namespace

unsigned fork_generation() {
  install_fork_handlers();
  return forks.load(std::memory_order_relaxed);
}

ForkSafeMutex::ForkSafeMutex() {
  install_fork_handlers();
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().insert(this);
}

ForkSafeMutex::~ForkSafeMutex() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().erase(this);
}

}  // namespace fastlstm
