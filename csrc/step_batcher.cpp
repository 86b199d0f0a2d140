// StepBatcher: a queue of single-stream steps, run by one thread as StreamPool steps.
#include "fastlstm/step_batcher.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "arguments.hpp"
#include "fork_safety.hpp"

namespace fastlstm {

using arguments::invalid;

namespace {
// Emptied batches kept for reuse (their buffers keep their capacity): enough for the batch
// running, the one filling and a few behind it; more are freed, so that a burst does not stay.
constexpr size_t kSpareBatches = 4;
}  // namespace

template <typename T>
void StepBatcher<T>::Batch::clear() {
  ids.clear();
  inputs.clear();
  done.clear();
}

template <typename T>
StepBatcher<T>::StepBatcher(StreamPool<T>& pool, int64_t max_batch, std::chrono::microseconds max_delay)
    : pool_(pool),
      max_batch_(max_batch),
      max_delay_(max_delay),
      input_size_(pool.model().config().input_size),
      output_size_(pool.model().config().output_size()),
      fork_generation_(fork_generation()) {
  if (max_batch < 1) invalid("max_batch: must be >= 1, got " + std::to_string(max_batch));
  if (max_delay.count() < 0) invalid("max_delay: must be >= 0, got " + std::to_string(max_delay.count()) + " us");
  next_batch_.assign(static_cast<size_t>(pool.capacity()), 0);
  outputs_.reserve(static_cast<size_t>(std::min(max_batch, pool.capacity()) * output_size_));
  thread_ = std::thread([this] { run(); });
}

template <typename T>
StepBatcher<T>::~StepBatcher() {
  close(true);
}

template <typename T>
void StepBatcher<T>::submit(StreamId id, const T* x_t, Completion done) {
  if (fork_generation() != fork_generation_) {
    throw Error("StepBatcher: its thread stayed in the parent process (fork); make a new batcher in the child");
  }
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closing_) throw BatcherClosed("StepBatcher: closed, it takes no more steps");
    Batch& batch = batch_for(id);
    if (batch.size() == 0) batch.first_submitted = std::chrono::steady_clock::now();  // its deadline's start
    batch.ids.push_back(id);
    batch.inputs.insert(batch.inputs.end(), x_t, x_t + input_size_);
    batch.done.push_back(std::move(done));
    ++pending_;
    // The thread waits for the first step, then for a batch's worth or the first one's deadline.
    wake = pending_ == 1 || pending_ == max_batch_;
  }
  if (wake) arrived_.notify_one();
}

template <typename T>
typename StepBatcher<T>::Batch& StepBatcher<T>::batch_for(StreamId id) {
  // An open stream's id is its pool slot modulo the capacity (StreamPool): two open streams never
  // share a slot. An unknown id may share an open one's and wait a batch; it fails all the same.
  uint64_t& next = next_batch_[static_cast<size_t>(id >= 0 ? id % pool_.capacity() : 0)];
  uint64_t number = std::max(next, head_);
  const auto full = [this](const Batch& batch) { return static_cast<int64_t>(batch.size()) >= max_batch_; };
  while (number - head_ < queued_.size() && full(*queued_[number - head_])) ++number;
  if (number - head_ == queued_.size()) {
    if (spare_.empty()) {
      queued_.push_back(std::make_unique<Batch>());
    } else {
      queued_.push_back(std::move(spare_.back()));
      spare_.pop_back();
    }
  }
  next = number + 1;
  return *queued_[number - head_];
}

template <typename T>
std::future<std::vector<T>> StepBatcher<T>::submit(StreamId id, const T* x_t) {
  auto promise = std::make_shared<std::promise<std::vector<T>>>();
  std::future<std::vector<T>> result = promise->get_future();
  const int64_t width = output_size_;
  submit(id, x_t, [promise, width](const T* output, std::exception_ptr error) {
    if (error) {
      promise->set_exception(error);
    } else {
      promise->set_value(std::vector<T>(output, output + width));
    }
  });
  return result;
}

template <typename T>
void StepBatcher<T>::close(bool drain) {
  std::lock_guard<std::mutex> serial(close_mutex_);
  if (!thread_.joinable()) return;
  if (fork_generation() != fork_generation_) {  // a child: the thread and its lock are the parent's
    thread_.detach();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
    drain_ = drain;
  }
  arrived_.notify_one();
  thread_.join();
}

template <typename T>
int64_t StepBatcher<T>::batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_;
}

template <typename T>
int64_t StepBatcher<T>::steps() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return steps_;
}

template <typename T>
void StepBatcher<T>::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (std::unique_ptr<Batch> batch = take_batch(lock)) {
    lock.unlock();
    run_batch(*batch);
    batch->clear();  // outside the lock: a completion's state may do anything as it is destroyed
    lock.lock();
    ++batches_;
    if (spare_.size() < kSpareBatches) spare_.push_back(std::move(batch));
  }
}

template <typename T>
std::unique_ptr<typename StepBatcher<T>::Batch> StepBatcher<T>::take_batch(std::unique_lock<std::mutex>& lock) {
  arrived_.wait(lock, [this] { return closing_ || pending_ > 0; });
  if (pending_ > 0 && !closing_) {
    // The first batch holds the oldest step: it runs at that step's deadline, or at once when a
    // batch's worth waits (then the first batch is full, or its streams' later steps wait behind it).
    const auto deadline = queued_.front()->first_submitted + max_delay_;
    arrived_.wait_until(lock, deadline, [this] { return closing_ || pending_ >= max_batch_; });
  }
  if (pending_ == 0) return nullptr;  // closing, nothing left
  if (closing_ && !drain_) {
    std::deque<std::unique_ptr<Batch>> dropped;
    dropped.swap(queued_);
    pending_ = 0;
    lock.unlock();
    const auto error = std::make_exception_ptr(BatcherClosed("StepBatcher: closed before this step ran"));
    for (auto& batch : dropped) fail_all(*batch, error);
    dropped.clear();
    lock.lock();
    return nullptr;
  }
  std::unique_ptr<Batch> batch = std::move(queued_.front());
  queued_.pop_front();
  ++head_;
  pending_ -= static_cast<int64_t>(batch->size());
  steps_ += static_cast<int64_t>(batch->size());
  return batch;
}

template <typename T>
void StepBatcher<T>::run_batch(Batch& batch) {
  // Usually every stream is open and the batch runs as it is. When the step names a stream that
  // is not (closed since it was submitted), its step fails alone and the rest run.
  for (bool check = false;; check = true) {
    if (check) drop_unknown(batch);
    if (batch.size() == 0) return;
    const auto count = static_cast<int64_t>(batch.size());
    outputs_.resize(static_cast<size_t>(count * output_size_));
    try {
      pool_.step(batch.ids.data(), count, TensorView<const T>(batch.inputs.data(), {count, input_size_}),
                 TensorView<T>(outputs_.data(), {count, output_size_}));
    } catch (const UnknownStream&) {
      continue;  // find it, fail it, run the rest
    } catch (...) {
      fail_all(batch, std::current_exception());
      return;
    }
    for (size_t i = 0; i < batch.size(); ++i) batch.done[i](outputs_.data() + i * static_cast<size_t>(output_size_), nullptr);
    return;
  }
}

template <typename T>
void StepBatcher<T>::drop_unknown(Batch& batch) {
  const auto width = static_cast<size_t>(input_size_);
  size_t kept = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!pool_.contains(batch.ids[i])) {
      batch.done[i](nullptr, std::make_exception_ptr(UnknownStream(batch.ids[i])));
      continue;
    }
    if (kept != i) {
      batch.ids[kept] = batch.ids[i];
      std::copy_n(batch.inputs.begin() + static_cast<std::ptrdiff_t>(i * width), width,
                  batch.inputs.begin() + static_cast<std::ptrdiff_t>(kept * width));
      batch.done[kept] = std::move(batch.done[i]);
    }
    ++kept;
  }
  batch.ids.resize(kept);
  batch.inputs.resize(kept * width);
  batch.done.resize(kept);
}

template <typename T>
void StepBatcher<T>::fail_all(Batch& batch, const std::exception_ptr& error) {
  for (Completion& done : batch.done) done(nullptr, error);
  batch.clear();
}

template class StepBatcher<float>;
template class StepBatcher<double>;

}  // namespace fastlstm
