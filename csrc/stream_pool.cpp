// StreamPool: the states of many streams of one model, stepped together in any subset. The
// states lie in the layout of a batch of `capacity` streams; a step of some of them names their
// rows (ForwardRequest::state_rows), and the backend reads and updates them there, as it does a
// stream's own state: nothing is gathered or scattered.
#include "fastlstm/stream_pool.hpp"

#include <algorithm>
#include <mutex>
#include <string>

#include "arguments.hpp"
#include "backend.hpp"
#include "checked_size.hpp"
#include "fork_safety.hpp"

namespace fastlstm {

using arguments::check_state;
using arguments::invalid;

UnknownStream::UnknownStream(StreamId id)
    : InvalidArgument("stream " + std::to_string(id) + ": not an open stream of this pool (never opened, or closed)"),
      id_(id) {}

template <typename T>
StreamPool<T>::StreamPool(const Lstm<T>& model, int64_t capacity) : model_(&model), capacity_(capacity) {
  const LstmConfig& cfg = model.config();
  arguments::check_streamable(cfg, "stream_pool:");
  if (!model.device().is_cpu()) invalid("stream_pool: needs a model on the CPU, got one on " + model.device().str());
  if (capacity < 1) invalid("capacity: must be >= 1, got " + std::to_string(capacity));
  layers_ = cfg.num_layers;
  h_width_ = cfg.output_size();
  c_width_ = cfg.hidden_size;
  const auto states = [&](int64_t width) {
    return static_cast<size_t>(checked_mul(checked_mul(layers_, capacity, "capacity"), width, "capacity"));
  };
  h_.assign(states(h_width_), T(0));
  c_.assign(states(c_width_), T(0));
  ids_.assign(static_cast<size_t>(capacity), -1);
  stamps_.assign(static_cast<size_t>(capacity), 0);
  step_slots_.resize(static_cast<size_t>(capacity));
  free_slots_.resize(static_cast<size_t>(capacity));
  for (int64_t slot = 0; slot < capacity; ++slot) free_slots_[static_cast<size_t>(slot)] = capacity - 1 - slot;
}

template <typename T>
int64_t StreamPool<T>::size() const {
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  return open_;
}

template <typename T>
bool StreamPool<T>::contains(StreamId id) const {
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  return id >= 0 && ids_[static_cast<size_t>(id % capacity_)] == id;
}

template <typename T>
int64_t StreamPool<T>::slot_of(StreamId id) const {
  if (id < 0) throw UnknownStream(id);
  const int64_t slot = id % capacity_;
  if (ids_[static_cast<size_t>(slot)] != id) throw UnknownStream(id);
  return slot;
}

template <typename T>
void StreamPool<T>::check_state_values(const StateView<T>& state) const {
  // A stream's state is a batch of one of the model's (h_0, c_0), in host memory.
  check_state(state, model_->config(), 1, Device::cpu());
}

template <typename T>
void StreamPool<T>::write_state(int64_t slot, const StateView<T>* state) {
  for (int64_t layer = 0; layer < layers_; ++layer) {
    T* h = h_.data() + (layer * capacity_ + slot) * h_width_;
    T* c = c_.data() + (layer * capacity_ + slot) * c_width_;
    if (!state) {
      std::fill_n(h, h_width_, T(0));
      std::fill_n(c, c_width_, T(0));
      continue;
    }
    const TensorView<const T>& from_h = state->h;
    const TensorView<const T>& from_c = state->c;
    for (int64_t k = 0; k < h_width_; ++k) h[k] = from_h.data[layer * from_h.strides[0] + k * from_h.strides[2]];
    for (int64_t k = 0; k < c_width_; ++k) c[k] = from_c.data[layer * from_c.strides[0] + k * from_c.strides[2]];
  }
}

template <typename T>
StreamId StreamPool<T>::open() {
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  return open_locked(nullptr);
}

template <typename T>
StreamId StreamPool<T>::open(const StateView<T>& state) {
  check_state_values(state);
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  return open_locked(&state);
}

template <typename T>
StreamId StreamPool<T>::open_locked(const StateView<T>* state) {
  if (free_slots_.empty()) {
    throw PoolFull("stream_pool: full, all " + std::to_string(capacity_) + " streams are open (close one first)");
  }
  const int64_t slot = free_slots_.back();
  const StreamId id = checked_add(checked_mul(opens_, capacity_, "stream id"), slot, "stream id");
  free_slots_.pop_back();
  ++opens_;
  ids_[static_cast<size_t>(slot)] = id;
  ++open_;
  write_state(slot, state);
  return id;
}

template <typename T>
void StreamPool<T>::close(StreamId id) {
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  const int64_t slot = slot_of(id);
  ids_[static_cast<size_t>(slot)] = -1;
  free_slots_.push_back(slot);
  --open_;
}

template <typename T>
void StreamPool<T>::step(const StreamId* ids, int64_t count, TensorView<const T> input_t, TensorView<T> output_t) {
  if (count < 0) invalid("ids: expected a count >= 0, got " + std::to_string(count));
  ForwardRequest<T> request = model_->step_request(input_t, output_t, count);
  if (count == 0) return;
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  ++stamp_;  // marks the slots of this step: a slot marked twice is a repeated id
  for (int64_t i = 0; i < count; ++i) {
    const int64_t slot = slot_of(ids[i]);
    if (stamps_[static_cast<size_t>(slot)] == stamp_) {
      invalid("ids: stream " + std::to_string(ids[i]) + " appears more than once (a step advances each stream once)");
    }
    stamps_[static_cast<size_t>(slot)] = stamp_;
    step_slots_[static_cast<size_t>(i)] = slot;  // i < capacity: more ids than slots repeat one before
  }
  // The backend reads each stream's initial state before it writes the final one, row by row.
  const StateView<T> states{TensorView<const T>(h_.data(), {layers_, capacity_, h_width_}),
                            TensorView<const T>(c_.data(), {layers_, capacity_, c_width_})};
  request.initial_state = &states;
  request.state_rows = step_slots_.data();
  request.state_capacity = capacity_;
  request.h_n = h_.data();
  request.c_n = c_.data();
  request.final_state_device = Device::cpu();
  model_->run_locked(request);
}

template <typename T>
void StreamPool<T>::step(const std::vector<StreamId>& ids, TensorView<const T> input_t, TensorView<T> output_t) {
  step(ids.data(), static_cast<int64_t>(ids.size()), input_t, output_t);
}

template <typename T>
Tensor<T> StreamPool<T>::step(const std::vector<StreamId>& ids, TensorView<const T> input_t) {
  Tensor<T> output({static_cast<int64_t>(ids.size()), model_->config().output_size()});
  step(ids, input_t, output.view());
  return output;
}

template <typename T>
std::pair<Tensor<T>, Tensor<T>> StreamPool<T>::get_state(StreamId id) const {
  const LstmConfig& cfg = model_->config();
  std::pair<Tensor<T>, Tensor<T>> state{Tensor<T>({cfg.num_layers, 1, cfg.output_size()}),
                                        Tensor<T>({cfg.num_layers, 1, cfg.hidden_size})};
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  const int64_t slot = slot_of(id);
  for (int64_t layer = 0; layer < layers_; ++layer) {
    std::copy_n(h_.data() + (layer * capacity_ + slot) * h_width_, h_width_, state.first.data() + layer * h_width_);
    std::copy_n(c_.data() + (layer * capacity_ + slot) * c_width_, c_width_, state.second.data() + layer * c_width_);
  }
  return state;
}

template <typename T>
void StreamPool<T>::set_state(StreamId id, const StateView<T>& state) {
  check_state_values(state);
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  write_state(slot_of(id), &state);
}

template <typename T>
void StreamPool<T>::reset_state(StreamId id) {
  std::lock_guard<ForkSafeMutex> lock(*model_->mutex_);
  write_state(slot_of(id), nullptr);
}

template class StreamPool<float>;
template class StreamPool<double>;

}  // namespace fastlstm
