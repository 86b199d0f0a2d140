// The engine's streams: states that carry (h, c) across calls, a step or a chunk at a time, on
// the model's device. The rest of the engine is lstm.cpp.
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "arguments.hpp"
#include "backend.hpp"
#include "fork_safety.hpp"
#include "shape_string.hpp"
#include "fastlstm/error.hpp"
#include "fastlstm/lstm.hpp"

namespace fastlstm {

using arguments::check_device;
using arguments::check_padded_input;
using arguments::check_state;
using arguments::check_state_size;
using arguments::check_view;
using arguments::invalid;
using arguments::output_shape;
using arguments::padded_request;
using arguments::PaddedInput;
using arguments::span_of;

template <typename T>
typename Lstm<T>::State Lstm<T>::make_state(int64_t batch_size) const {
  const LstmConfig& cfg = config();
  arguments::check_streamable(cfg, "streaming");
  if (batch_size < 0) invalid("batch_size: must be >= 0, got " + std::to_string(batch_size));
  check_state_size(cfg, batch_size, "batch_size");
  State state{allocate({cfg.num_layers, batch_size, cfg.output_size()}, device()),
              allocate({cfg.num_layers, batch_size, cfg.hidden_size}, device())};
  reset_state(state);
  return state;
}

template <typename T>
void Lstm<T>::check_stream_state(const State& state) const {
  const LstmConfig& cfg = config();
  const auto& h = state.h.shape();
  const auto& c = state.c.shape();
  if (cfg.bidirectional) invalid("streaming needs a unidirectional model");
  if (h.size() != 3 || c.size() != 3 || h[0] != cfg.num_layers || h[2] != cfg.output_size() ||
      c[0] != cfg.num_layers || c[1] != h[1] || c[2] != cfg.hidden_size || state.h.device() != device() ||
      state.c.device() != device()) {
    invalid("state: not a state of this model (make one with make_state)");
  }
}

template <typename T>
void Lstm<T>::set_state(State& state, const StateView<T>& values) const {
  check_stream_state(state);
  check_state(values, config(), state.batch_size(), device());  // a stream's model has one direction
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  backend_->copy(values.h, state.h.view());
  backend_->copy(values.c, state.c.view());
}

template <typename T>
void Lstm<T>::reset_state(State& state) const {
  check_stream_state(state);
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  backend_->fill_zero(state.h.view());
  backend_->fill_zero(state.c.view());
}

template <typename T>
std::pair<Tensor<T>, Tensor<T>> Lstm<T>::read_state(const State& state) const {
  check_stream_state(state);
  std::pair<Tensor<T>, Tensor<T>> copies{Tensor<T>(state.h.shape()), Tensor<T>(state.c.shape())};
  std::lock_guard<ForkSafeMutex> lock(*mutex_);
  backend_->copy(state.h.view(), copies.first.view());
  backend_->copy(state.c.view(), copies.second.view());
  return copies;
}

template <typename T>
void Lstm<T>::run_stream(ForwardRequest<T>& request, State& state) const {
  // The backend reads each layer's initial state before it writes that layer's final one, so
  // the state is updated in place.
  const StateView<T> current{state.h.view(), state.c.view()};
  request.initial_state = &current;
  request.h_n = state.h.data();
  request.c_n = state.c.data();
  request.final_state_device = device();
  run(request);
}

template <typename T>
ForwardRequest<T> Lstm<T>::step_request(const TensorView<const T>& input_t, const TensorView<T>& output_t,
                                        int64_t batch) const {
  const LstmConfig& cfg = config();
  check_view(input_t, "input_t");
  check_device(input_t.device, device(), "input_t");
  check_view(TensorView<const T>(output_t), "output_t");
  check_device(output_t.device, device(), "output_t");
  if (input_t.rank != 2 || input_t.shape[0] != batch || input_t.shape[1] != cfg.input_size) {
    invalid("input_t: expected shape " + shape_string(std::vector<int64_t>{batch, cfg.input_size}) + ", got " +
            shape_string(input_t));
  }
  if (output_t.rank != 2 || output_t.shape[0] != batch || output_t.shape[1] != cfg.output_size()) {
    invalid("output_t: expected shape " + shape_string(std::vector<int64_t>{batch, cfg.output_size()}) +
            ", got " + shape_string(output_t));
  }
  if (batch > 0 && output_t.strides[1] != 1 && cfg.output_size() > 1) {
    invalid("output_t: features must be contiguous");
  }
  // The step writes output rows while other threads still read the input.
  const auto in = span_of(input_t), out = span_of(TensorView<const T>(output_t));
  if (batch > 0 && input_t.device == output_t.device && in.first <= out.second && out.first <= in.second) {
    invalid("input_t and output_t share memory");
  }
  ForwardRequest<T> request;
  request.batch_sizes = {1, batch, nullptr};
  request.input = input_t.data;
  request.input_rows.row_stride = input_t.strides[0];
  request.input_feature_stride = input_t.strides[1];
  request.input_device = input_t.device;
  request.output = output_t.data;
  request.output_rows.row_stride = output_t.strides[0];
  request.output_device = output_t.device;
  return request;
}

template <typename T>
void Lstm<T>::step(TensorView<const T> input_t, State& state, TensorView<T> output_t) const {
  check_stream_state(state);
  ForwardRequest<T> request = step_request(input_t, output_t, state.batch_size());
  if (state.batch_size() == 0) return;
  run_stream(request, state);
}

template <typename T>
Tensor<T> Lstm<T>::step(TensorView<const T> input_t, State& state) const {
  check_stream_state(state);
  check_device(input_t.device, device(), "input_t");
  Tensor<T> output = allocate({state.batch_size(), config().output_size()}, input_t.device);
  step(input_t, state, output.view());
  return output;
}

template <typename T>
Tensor<T> Lstm<T>::forward(TensorView<const T> chunk, State& state) const {
  const LstmConfig& cfg = config();
  check_stream_state(state);
  const PaddedInput shape = check_padded_input(chunk, cfg, device(), "chunk");
  if (shape.batch != state.batch_size()) {
    invalid("chunk: expected batch size " + std::to_string(state.batch_size()) + " (the state's), got " +
            std::to_string(shape.batch));
  }
  Tensor<T> output = allocate(output_shape<T>(shape, cfg), chunk.device);
  if (shape.batch == 0) return output;
  ForwardRequest<T> request = padded_request(chunk, shape, cfg, output);
  run_stream(request, state);
  return output;
}

// The members defined here, for the two types lstm.cpp instantiates the class for.
#define FASTLSTM_INSTANTIATE_STREAMS(T)                                                                  \
  template typename Lstm<T>::State Lstm<T>::make_state(int64_t) const;                                 \
  template void Lstm<T>::check_stream_state(const State&) const;                                       \
  template void Lstm<T>::set_state(State&, const StateView<T>&) const;                                 \
  template void Lstm<T>::reset_state(State&) const;                                                    \
  template std::pair<Tensor<T>, Tensor<T>> Lstm<T>::read_state(const State&) const;                    \
  template void Lstm<T>::run_stream(ForwardRequest<T>&, State&) const;                                 \
  template ForwardRequest<T> Lstm<T>::step_request(const TensorView<const T>&, const TensorView<T>&,   \
                                                   int64_t) const;                                     \
  template void Lstm<T>::step(TensorView<const T>, State&, TensorView<T>) const;                       \
  template Tensor<T> Lstm<T>::step(TensorView<const T>, State&) const;                                 \
  template Tensor<T> Lstm<T>::forward(TensorView<const T>, State&) const;
FASTLSTM_INSTANTIATE_STREAMS(float)
FASTLSTM_INSTANTIATE_STREAMS(double)
#undef FASTLSTM_INSTANTIATE_STREAMS

}  // namespace fastlstm
