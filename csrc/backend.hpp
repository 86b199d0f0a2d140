#pragma once
// The interface every compute backend implements. The engine (lstm.cpp) validates arguments and
// allocates results; a backend only computes.
#include <cstdint>
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

template <typename T>
struct ForwardRequest {
  StepSizes batch_sizes;
  const int64_t* step_starts = nullptr;  // packed: the first packed row of each step

  const T* input = nullptr;
  RowLayout input_rows;
  int64_t input_feature_stride = 1;

  const StateView<T>* initial_state = nullptr;  // nullptr: zeros

  T* output = nullptr;  // (steps, N, D * H_out) in output_rows' layout, features contiguous
  RowLayout output_rows;
  T* h_n = nullptr;  // (D * num_layers, N, H_out), contiguous
  T* c_n = nullptr;  // (D * num_layers, N, hidden_size), contiguous
};

template <typename T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual int num_threads() const = 0;
  // Rebuilds the backend's prepared copy of the weights. Not called concurrently with forward.
  virtual void prepare(const LstmWeights<T>& weights) = 0;
  virtual void forward(const ForwardRequest<T>& request) = 0;
};

template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(const LstmConfig& config, int num_threads);

}  // namespace fastlstm
