// StepBatcher: a queue of single-stream steps, run by one thread as StreamPool steps.
#include "fastlstm/step_batcher.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "arguments.hpp"
#include "fork_safety.hpp"

namespace fastlstm {

using arguments::invalid;

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
  const auto most = static_cast<size_t>(std::min(max_batch, pool.capacity()));
  stamps_.assign(static_cast<size_t>(pool.capacity()), 0);
  ids_.reserve(most);
  inputs_.reserve(most * static_cast<size_t>(input_size_));
  outputs_.reserve(most * static_cast<size_t>(output_size_));
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
  Request request{id, {}, std::move(done), std::chrono::steady_clock::now()};
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closing_) throw BatcherClosed("StepBatcher: closed, it takes no more steps");
    if (!spare_inputs_.empty()) {  // a buffer of a step already run: no allocation once warm
      request.input = std::move(spare_inputs_.back());
      spare_inputs_.pop_back();
    }
    request.input.assign(x_t, x_t + input_size_);
    queue_.push_back(std::move(request));
    // The thread waits for the first request, then for a full batch or the first one's deadline.
    wake = queue_.size() == 1 || static_cast<int64_t>(queue_.size()) >= max_batch_;
  }
  if (wake) arrived_.notify_one();
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
  std::vector<std::vector<T>> recycled;
  while (take_batch(lock)) {
    lock.unlock();
    run_batch();
    // The batch's input buffers serve later submits; the completions go (outside the lock: a
    // completion's state may do anything as it is destroyed).
    for (Request& request : batch_) recycled.push_back(std::move(request.input));
    batch_.clear();
    lock.lock();
    ++batches_;
    while (!recycled.empty() && static_cast<int64_t>(spare_inputs_.size()) < max_batch_) {
      spare_inputs_.push_back(std::move(recycled.back()));
      recycled.pop_back();
    }
    recycled.clear();
  }
}

template <typename T>
bool StepBatcher<T>::take_batch(std::unique_lock<std::mutex>& lock) {
  arrived_.wait(lock, [this] { return closing_ || !queue_.empty(); });
  if (!queue_.empty() && !closing_) {
    const auto deadline = queue_.front().submitted + max_delay_;
    arrived_.wait_until(lock, deadline, [this] {
      return closing_ || static_cast<int64_t>(queue_.size()) >= max_batch_;
    });
  }
  if (queue_.empty()) return false;  // closing, nothing left
  if (closing_ && !drain_) {
    std::deque<Request> dropped;
    dropped.swap(queue_);
    lock.unlock();
    fail_all(dropped, std::make_exception_ptr(BatcherClosed("StepBatcher: closed before this step ran")));
    lock.lock();
    return false;
  }
  // At most one request of each stream, the oldest: a stream's later steps wait for the next
  // batch, so that each runs on the state its predecessor left. The scan stops once the batch is
  // full (what lies beyond stays as it is: the cost is the batch's, not the queue's); the
  // requests it passed over go back to the front, in order.
  ++stamp_;
  batch_.clear();
  waiting_.clear();
  while (!queue_.empty() && static_cast<int64_t>(batch_.size()) < max_batch_) {
    Request& request = queue_.front();
    if (first_in_batch(request.id)) {
      batch_.push_back(std::move(request));
    } else {
      waiting_.push_back(std::move(request));
    }
    queue_.pop_front();
  }
  for (auto it = waiting_.rbegin(); it != waiting_.rend(); ++it) queue_.push_front(std::move(*it));
  waiting_.clear();
  steps_ += static_cast<int64_t>(batch_.size());
  return true;
}

template <typename T>
bool StepBatcher<T>::first_in_batch(StreamId id) {
  // An open stream's id is its pool slot modulo the capacity (StreamPool): two open streams never
  // share a stamp. An unknown id may share an open one's and wait a batch; it fails all the same.
  uint64_t& stamp = stamps_[static_cast<size_t>(id >= 0 ? id % pool_.capacity() : 0)];
  if (stamp == stamp_) return false;
  stamp = stamp_;
  return true;
}

template <typename T>
void StepBatcher<T>::run_batch() {
  // Usually every stream is open and the batch runs as it is. When the step names a stream that
  // is not (closed since it was submitted), its request fails alone and the rest run again.
  for (bool check = false; !batch_.empty(); check = true) {
    ids_.clear();
    inputs_.clear();
    for (auto it = batch_.begin(); it != batch_.end();) {
      if (check && !pool_.contains(it->id)) {
        it->done(nullptr, std::make_exception_ptr(UnknownStream(it->id)));
        it = batch_.erase(it);
        continue;
      }
      ids_.push_back(it->id);
      inputs_.insert(inputs_.end(), it->input.begin(), it->input.end());
      ++it;
    }
    if (batch_.empty()) return;
    const auto count = static_cast<int64_t>(ids_.size());
    outputs_.resize(static_cast<size_t>(count * output_size_));
    try {
      pool_.step(ids_.data(), count, TensorView<const T>(inputs_.data(), {count, input_size_}),
                 TensorView<T>(outputs_.data(), {count, output_size_}));
    } catch (const UnknownStream&) {
      continue;  // find it, fail it, run the rest
    } catch (...) {
      fail_all(batch_, std::current_exception());
      return;
    }
    for (size_t i = 0; i < batch_.size(); ++i) batch_[i].done(outputs_.data() + i * static_cast<size_t>(output_size_), nullptr);
    return;  // batch_ keeps the requests run: run() takes their buffers back
  }
}

template <typename T>
void StepBatcher<T>::fail_all(std::deque<Request>& requests, const std::exception_ptr& error) {
  for (Request& request : requests) request.done(nullptr, error);
  requests.clear();
}

template class StepBatcher<float>;
template class StepBatcher<double>;

}  // namespace fastlstm
