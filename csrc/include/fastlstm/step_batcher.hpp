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
#include <memory>
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

// Order: a step joins the first batch that has room and no step of its stream yet, after its
// stream's earlier steps: each stream's steps run in the order they were submitted, one per
// batch; within a batch, in the order they arrived. A step whose stream is not open when its
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
  // The steps of one pool step, at most one per stream, in arrival order: their ids, their inputs
  // side by side as the step reads them (written there by submit), their completions.
  struct Batch {
    std::vector<StreamId> ids;
    std::vector<T> inputs;
    std::vector<Completion> done;
    std::chrono::steady_clock::time_point first_submitted;
    size_t size() const { return ids.size(); }
    void clear();
  };

  void run();  // the batcher's thread
  // The next batch to run, once it is full or due; nullptr when closed and nothing is left.
  std::unique_ptr<Batch> take_batch(std::unique_lock<std::mutex>& lock);
  Batch& batch_for(StreamId id);  // the first queued batch that may take the next step of `id`
  void run_batch(Batch& batch);
  void drop_unknown(Batch& batch);  // fails the steps of streams no longer open, keeps the rest
  static void fail_all(Batch& batch, const std::exception_ptr& error);

  StreamPool<T>& pool_;
  const int64_t max_batch_;
  const std::chrono::microseconds max_delay_;
  const int64_t input_size_, output_size_;
  const unsigned fork_generation_;

  mutable std::mutex mutex_;
  std::condition_variable arrived_;
  // Guarded by mutex_: the batches in the order they run (queued_[i] is batch number head_ + i),
  // emptied ones to reuse, and per pool slot 1 + the number of the last batch holding a step of
  // its stream (a stream's next step goes to a later batch: its steps run in order).
  std::deque<std::unique_ptr<Batch>> queued_;
  uint64_t head_ = 0;
  std::vector<std::unique_ptr<Batch>> spare_;
  std::vector<uint64_t> next_batch_;
  int64_t pending_ = 0;  // steps in queued_
  bool closing_ = false, drain_ = true;
  int64_t batches_ = 0, steps_ = 0;

  std::vector<T> outputs_;  // the batcher's thread only

  std::mutex close_mutex_;  // one close() at a time
  std::thread thread_;
};

}  // namespace fastlstm
