#pragma once
// The engine's checks of what callers pass, each written once: views, states, padded batches,
// and the requests the backend receives for them. Every size is counted with checked arithmetic.
// Used by lstm.cpp only.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backend.hpp"
#include "checked_size.hpp"
#include "fastlstm/error.hpp"
#include "fastlstm/lstm.hpp"
#include "shape_string.hpp"

namespace fastlstm::arguments {

[[noreturn]] inline void invalid(const std::string& message) { throw InvalidArgument(message); }

// The offset, in elements, of a non-empty view's last element from its first.
template <typename T>
int64_t last_offset(const TensorView<const T>& view) {
  int64_t last = 0;
  for (int d = 0; d < view.rank; ++d) {
    last += (view.shape[static_cast<size_t>(d)] - 1) * view.strides[static_cast<size_t>(d)];
  }
  return last;
}

// Extents and strides non-negative, and the memory the view spans countable: every offset into
// it is then computed without overflow.
template <typename T>
void check_view(const TensorView<const T>& view, const char* name) {
  if (view.rank < 0 || view.rank > TensorView<const T>::kMaxRank) {
    invalid(std::string(name) + ": rank must be in [0, " + std::to_string(TensorView<const T>::kMaxRank) + "]");
  }
  int64_t numel = 1, last = 0;
  for (int d = 0; d < view.rank; ++d) {
    const int64_t extent = view.shape[static_cast<size_t>(d)], stride = view.strides[static_cast<size_t>(d)];
    if (extent < 0) invalid(std::string(name) + ": negative extent");
    if (stride < 0) invalid(std::string(name) + ": negative stride");
    numel = checked_mul(numel, extent, name);
    if (extent > 0) last = checked_add(last, checked_mul(extent - 1, stride, name), name);
  }
  if (!view.data && numel > 0) invalid(std::string(name) + ": null data pointer");
}

// Memory a model reads or writes: host memory, or the model's device.
inline void check_device(const Device& device, const Device& model, const char* name) {
  if (device.is_cpu() || device == model) return;
  invalid(std::string(name) + ": is on " + device.str() + "; expected host memory or " + model.str() +
          " (the model's device)");
}

// Memory only the host reads (weights).
inline void check_host(const Device& device, const char* name) {
  if (!device.is_cpu()) invalid(std::string(name) + ": is on " + device.str() + "; expected host memory");
}

// A sorted_indices vector: a permutation of 0..batch-1.
inline void check_permutation(const std::vector<int64_t>& indices, int64_t batch, const char* name) {
  if (static_cast<int64_t>(indices.size()) != batch) {
    invalid(std::string(name) + ": expected " + std::to_string(batch) + " entries, got " +
            std::to_string(indices.size()));
  }
  std::vector<bool> seen(static_cast<size_t>(batch), false);
  for (int64_t index : indices) {
    if (index < 0 || index >= batch || seen[static_cast<size_t>(index)]) {
      invalid(std::string(name) + ": must be a permutation of 0.." + std::to_string(batch - 1));
    }
    seen[static_cast<size_t>(index)] = true;
  }
}

// The bytes [first, last] that a non-empty, checked view spans.
template <typename T>
std::pair<uintptr_t, uintptr_t> span_of(const TensorView<const T>& view) {
  const auto first = reinterpret_cast<uintptr_t>(view.data);
  return {first, first + static_cast<uintptr_t>(last_offset(view)) * sizeof(T) + sizeof(T) - 1};
}

// The states a call returns, (D * num_layers, batch, max(H_out, hidden_size)), must be countable:
// a batch that is small next to the input's steps can still be large next to the layers.
// Streams step forward in time: a model with a direction that runs backwards needs the whole
// sequence first. `what` names the caller (streaming, stream_pool).
inline void check_streamable(const LstmConfig& config, const std::string& what) {
  if (config.bidirectional) {
    invalid(what + " needs a unidirectional model: the reverse direction of a bidirectional LSTM needs the whole "
                   "sequence");
  }
  if (config.reverse) invalid(what + " needs a model that runs forward: a reverse LSTM needs the whole sequence");
}

inline void check_state_size(const LstmConfig& config, int64_t batch, const char* name) {
  checked_mul(checked_mul(config.num_directions() * config.num_layers, batch, name), config.hidden_size, name);
}

template <typename T>
void check_state(const StateView<T>& state, const LstmConfig& config, int64_t batch, const Device& model) {
  const int64_t layers = config.num_directions() * config.num_layers;
  const std::vector<int64_t> h_shape{layers, batch, config.output_size()};
  const std::vector<int64_t> c_shape{layers, batch, config.hidden_size};
  auto check = [&model](const TensorView<const T>& view, const std::vector<int64_t>& expected, const char* name) {
    check_view(view, name);
    check_device(view.device, model, name);
    bool ok = view.rank == 3;
    for (int d = 0; ok && d < 3; ++d) ok = view.shape[static_cast<size_t>(d)] == expected[static_cast<size_t>(d)];
    if (!ok) {
      invalid(std::string(name) + ": expected shape " + shape_string(expected) + ", got " + shape_string(view));
    }
  };
  check(state.h, h_shape, "h_0");
  check(state.c, c_shape, "c_0");
}


// The steps of a packed batch: where each starts among the rows, and how many rows there are.
inline std::pair<std::vector<int64_t>, int64_t> packed_steps(const std::vector<int64_t>& batch_sizes) {
  if (batch_sizes.empty()) invalid("batch_sizes: must not be empty");
  std::vector<int64_t> step_starts(batch_sizes.size());
  int64_t total = 0;
  for (size_t t = 0; t < batch_sizes.size(); ++t) {
    if (batch_sizes[t] < 1 || (t > 0 && batch_sizes[t] > batch_sizes[t - 1])) {
      invalid("batch_sizes: must be positive and non-increasing, got " + std::to_string(batch_sizes[t]) +
              " at step " + std::to_string(t));
    }
    step_starts[t] = total;
    total = checked_add(total, batch_sizes[t], "batch_sizes");
  }
  return {std::move(step_starts), total};
}

// A padded batch (L, N, H_in), or (N, L, H_in) with batch_first: its steps and rows, validated.
struct PaddedInput {
  int64_t steps = 0;
  int64_t batch = 0;
};

template <typename T>
PaddedInput check_padded_input(const TensorView<const T>& input, const LstmConfig& cfg, const Device& model,
                               const char* name) {
  check_view(input, name);
  check_device(input.device, model, name);
  if (input.rank != 3) {
    invalid(std::string(name) + ": expected 3 dimensions " + (cfg.batch_first ? "(N, L, H_in)" : "(L, N, H_in)") +
            ", got " + std::to_string(input.rank));
  }
  if (input.shape[2] != cfg.input_size) {
    invalid(std::string(name) + ": expected size(-1) == input_size = " + std::to_string(cfg.input_size) +
            ", got " + std::to_string(input.shape[2]));
  }
  PaddedInput shape{input.shape[cfg.batch_first ? 1 : 0], input.shape[cfg.batch_first ? 0 : 1]};
  if (shape.steps < 1) invalid(std::string(name) + ": the sequence length must be at least 1, got 0");
  checked_mul(checked_mul(shape.steps, shape.batch, name), cfg.num_directions() * 4 * cfg.hidden_size, name);
  return shape;
}

// The request for a padded batch, its output written to `output` (contiguous) in the input's
// layout convention.
template <typename T>
ForwardRequest<T> padded_request(const TensorView<const T>& input, PaddedInput shape, const LstmConfig& cfg,
                                 Tensor<T>& output) {
  const int time_dim = cfg.batch_first ? 1 : 0, batch_dim = cfg.batch_first ? 0 : 1;
  const int64_t out_width = cfg.num_directions() * cfg.output_size();
  ForwardRequest<T> request;
  request.batch_sizes = {shape.steps, shape.batch, nullptr};
  request.input = input.data;
  request.input_rows.time_stride = input.strides[static_cast<size_t>(time_dim)];
  request.input_rows.row_stride = input.strides[static_cast<size_t>(batch_dim)];
  request.input_feature_stride = input.strides[2];
  request.input_device = input.device;
  request.output = output.data();
  request.output_device = output.device();
  request.output_rows.row_stride = cfg.batch_first ? shape.steps * out_width : out_width;
  request.output_rows.time_stride = cfg.batch_first ? out_width : shape.batch * out_width;
  return request;
}

template <typename T>
std::vector<int64_t> output_shape(PaddedInput shape, const LstmConfig& cfg) {
  const int64_t out_width = cfg.num_directions() * cfg.output_size();
  return cfg.batch_first ? std::vector<int64_t>{shape.batch, shape.steps, out_width}
                         : std::vector<int64_t>{shape.steps, shape.batch, out_width};
}

}  // namespace fastlstm::arguments
