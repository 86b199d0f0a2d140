#pragma once
// Steps that arrive one at a time, from many threads, run as batches: a StepBatcher queues each
// stream's next input and, on a thread of its own, steps the queued streams of a StreamPool
// together, once max_batch of them wait or the oldest has waited max_delay.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "fastlstm/error.hpp"
#include "fastlstm/stream_pool.hpp"

namespace fastlstm {

// A request that the batcher did not run: submitted after close(), or pending at close(false).
class BatcherClosed : public Error {
 public:
  using Error::Error;
};

// Order: the steps of one stream run in the order they were submitted, one per batch; streams
// run together in the order their requests arrived. A request whose stream is not open when its
// batch runs fails with UnknownStream; the others of the batch run.
// Thread safety: submit() from any number of threads. Fork: the batcher's thread does not follow
// a fork; in the child, submit() throws Error (make a new batcher there).
template <typename T>
class StepBatcher {
 public:
  // Called once per request on the batcher's thread: with its output row (H_out values, valid
  // during the call) and nullptr, or with nullptr and the error that failed it. Must not throw.
  using Completion = std::function<void(const T* output, std::exception_ptr error)>;

  // Steps streams of `pool`, which must outlive the batcher, at most max_batch (>= 1) at once.
  // Throws InvalidArgument for max_batch < 1 or a negative max_delay.
  StepBatcher(StreamPool<T>& pool, int64_t max_batch, std::chrono::microseconds max_delay);
  // close(true).
  ~StepBatcher();
  StepBatcher(const StepBatcher&) = delete;
  StepBatcher& operator=(const StepBatcher&) = delete;

  StreamPool<T>& pool() const { return pool_; }
  int64_t max_batch() const { return max_batch_; }
  std::chrono::microseconds max_delay() const { return max_delay_; }

  // Queues one step of stream `id` on x_t (H_in values, copied before this returns); `done` runs
  // when it has run or failed. Throws BatcherClosed after close(), Error in a forked child.
  void submit(StreamId id, const T* x_t, Completion done);
  // The same, its output (H_out values) as a future; a failed step's future holds its error.
  std::future<std::vector<T>> submit(StreamId id, const T* x_t);

  // Stops taking requests and waits for the batcher's thread: drain = true runs every queued
  // request first; false fails them with BatcherClosed. Later calls do nothing.
  void close(bool drain = true);

  // Batches run so far, and the steps in them.
  int64_t batches() const;
  int64_t steps() const;

 private:
  struct Request {
    StreamId id;
    std::vector<T> input;
    Completion done;
    std::chrono::steady_clock::time_point submitted;
  };

  void run();                                   // the batcher's thread
  bool take_batch(std::unique_lock<std::mutex>& lock);  // into batch_; false when closed and empty
  bool first_in_batch(StreamId id);  // whether the batch in the making has no step of `id` yet
  void run_batch();
  void fail_all(std::deque<Request>& requests, const std::exception_ptr& error);

  StreamPool<T>& pool_;
  const int64_t max_batch_;
  const std::chrono::microseconds max_delay_;
  const int64_t input_size_, output_size_;
  const unsigned fork_generation_;

  mutable std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<Request> queue_;  // guarded by mutex_
  std::vector<std::vector<T>> spare_inputs_;  // guarded by mutex_: input buffers to reuse
  bool closing_ = false, drain_ = true;
  int64_t batches_ = 0, steps_ = 0;

  // The batch in hand (the batcher's thread only): its requests (once run, their input buffers go
  // back to spare_inputs_), ids, inputs and outputs, and the requests it leaves queued.
  std::deque<Request> batch_, waiting_;
  std::vector<uint64_t> stamps_;  // per pool slot: the batch that took a step of its stream
  uint64_t stamp_ = 0;
  std::vector<StreamId> ids_;
  std::vector<T> inputs_, outputs_;

  std::mutex close_mutex_;  // one close() at a time
  std::thread thread_;
};

}  // namespace fastlstm
