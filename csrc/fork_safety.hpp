#pragma once
// What makes a model usable on both sides of fork(). A forked child has only the thread that
// called fork: the pool's workers, and any thread that held a lock, stay behind in the parent.
// So the forking thread takes every model's lock before the fork (waiting for the forward passes
// under way to end) and releases it on both sides after; a child finds every model idle and
// unlocked, and each thread pool sees from fork_generation() that its workers are gone and starts
// new ones before its next task. fork() waits, at most, for the longest forward pass running.
#include <mutex>

namespace fastlstm {

// How many forks lie between the process that loaded fastlstm and this one: bumped in the child
// of every fork. Cheap (one relaxed load): the pool reads it at every task.
unsigned fork_generation();

// A mutex that every fork() takes before it forks and releases in the parent and the child after,
// so that no child inherits it locked. Lock it only around work that ends by itself (a forward
// pass): fork() waits for it. Not movable: the fork handlers hold its address.
class ForkSafeMutex {
 public:
  ForkSafeMutex();
  ~ForkSafeMutex();
  ForkSafeMutex(const ForkSafeMutex&) = delete;
  ForkSafeMutex& operator=(const ForkSafeMutex&) = delete;

  void lock() { mutex_.lock(); }
  void unlock() { mutex_.unlock(); }
  bool try_lock() { return mutex_.try_lock(); }

 private:
  std::mutex mutex_;
};

}  // namespace fastlstm
