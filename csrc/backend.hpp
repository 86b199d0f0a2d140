#pragma once
// The interface every compute backend implements (the CPU's in cpu/, CUDA's in cuda/). The engine
// (lstm.cpp) validates arguments, allocates results and chooses the backend of the model's device
// (make_backend); a backend only computes and moves memory of its device.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "fastlstm/config.hpp"
#include "fastlstm/lstm.hpp"
#include "fastlstm/weights.hpp"

namespace fastlstm {

// Where the rows of each time step live in a buffer: row n of step t starts at element
// offset(t) + n * row_stride. Padded batches have a time stride; packed ones list the first
// packed row of every step.
struct RowLayout {
  int64_t time_stride = 0;
  int64_t row_stride = 0;
  const int64_t* step_starts = nullptr;  // packed: index of the first row of each step
  int64_t origin = 0;                    // subtracted: a buffer that starts at a later step

  int64_t offset(int64_t t) const {
    return (step_starts ? step_starts[t] * row_stride : t * time_stride) - origin;
  }
};

// The active rows of every step: a padded batch has all N at every step; a packed one shrinks.
struct StepSizes {
  int64_t steps = 0;
  int64_t batch = 0;                // N: the rows of step 0
  const int64_t* sizes = nullptr;   // packed: non-increasing, sizes[0] == batch; nullptr: all N
  int64_t operator[](int64_t t) const { return sizes ? sizes[t] : batch; }
};

// A forward pass. Every buffer is in host memory or on the backend's device, as its Device says
// (the initial state's views carry their own).
template <typename T>
struct ForwardRequest {
  StepSizes batch_sizes;
  const int64_t* step_starts = nullptr;  // packed: the first packed row of each step
  // Packed: state row n of the packed batch is the caller's row sorted_indices[n], in h_0/c_0
  // and in h_n/c_n (a permutation of 0..N-1). nullptr: the rows are in the packed order.
  const int64_t* sorted_indices = nullptr;

  const T* input = nullptr;
  RowLayout input_rows;
  int64_t input_feature_stride = 1;
  Device input_device{};

  const StateView<T>* initial_state = nullptr;  // nullptr: zeros

  T* output = nullptr;  // (steps, N, D * H_out) in output_rows' layout, features contiguous
  RowLayout output_rows;
  Device output_device{};
  T* h_n = nullptr;  // (D * num_layers, N, H_out), contiguous
  T* c_n = nullptr;  // (D * num_layers, N, hidden_size), contiguous
  Device final_state_device{};  // of h_n and c_n: a stream's state stays on the model's device

  // A stream pool's step (CPU backend only): state row n is row state_rows[n] of h_0 and c_0 and
  // of h_n and c_n, which hold state_capacity rows per layer (the pool's slots) instead of N.
  const int64_t* state_rows = nullptr;
  int64_t state_capacity = 0;

  // Where state row n of layer row `index` (layer * D + direction) lies in h_n or c_n.
  int64_t final_state_row(int64_t index, int64_t n) const {
    return state_rows ? index * state_capacity + state_rows[n] : index * batch_sizes.batch + n;
  }
};

// A backend's calls never overlap: the engine serialises them on the model's lock.
template <typename T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const { return Device::cpu(); }
  virtual int num_threads() const = 0;
  // Forward passes whose time loop replayed a captured graph (device backends).
  virtual int64_t graph_replays() const { return 0; }
  // Rebuilds the backend's prepared copy of the weights.
  virtual void prepare(const LstmWeights<T>& weights) = 0;
  virtual void forward(const ForwardRequest<T>& request) = 0;

  // Memory on device(): what results and stream states that live there are made of. A device
  // backend overrides these three; the defaults serve host memory.
  // Contiguous and uninitialised.
  virtual Tensor<T> allocate(std::vector<int64_t> shape) { return Tensor<T>(std::move(shape)); }
  // `to` = `from` (same shape; `to` contiguous), each in host memory or on device().
  virtual void copy(const TensorView<const T>& from, const TensorView<T>& to) {
    int64_t shape[3] = {1, 1, 1}, strides[3] = {0, 0, 0};  // padded to rank 3 with leading units
    for (int d = 0; d < from.rank; ++d) {
      shape[3 - from.rank + d] = from.size(d);
      strides[3 - from.rank + d] = from.stride(d);
    }
    T* out = to.data;
    for (int64_t i = 0; i < shape[0]; ++i) {
      for (int64_t j = 0; j < shape[1]; ++j) {
        for (int64_t k = 0; k < shape[2]; ++k) *out++ = from.data[i * strides[0] + j * strides[1] + k * strides[2]];
      }
    }
  }
  // Zeros a contiguous view on device().
  virtual void fill_zero(const TensorView<T>& to) { std::fill_n(to.data, to.numel(), T(0)); }
};

// The CPU's threads (options.num_threads, resolved), and how it holds the (already rounded)
// weight matrices (weight_format, int8_input_bits).
template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(const LstmConfig& config, const LstmOptions& options);
// Throws Error in a build without CUDA, or when the device cannot be used.
template <typename T>
std::unique_ptr<Backend<T>> make_cuda_backend(const LstmConfig& config, const LstmOptions& options);

}  // namespace fastlstm
