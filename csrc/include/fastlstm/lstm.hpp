#pragma once
// The LSTM engine: owns the weights, prepares them for the backend of its device (the CPU, or a
// CUDA GPU), and runs forward passes with torch.nn.LSTM's semantics (eval mode).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fastlstm/config.hpp"
#include "fastlstm/device.hpp"
#include "fastlstm/tensor.hpp"
#include "fastlstm/weights.hpp"

namespace fastlstm {

class ForkSafeMutex;
template <typename T>
class Backend;
template <typename T>
struct ForwardRequest;

// Initial (h_0, c_0): h (D * num_layers, N, H_out) and c (D * num_layers, N, hidden_size), each
// in host memory or on the model's device.
template <typename T>
struct StateView {
  TensorView<const T> h;
  TensorView<const T> c;
};

// What a forward pass returns, shaped as torch returns it, where the input was: in host memory
// for input in host memory, on the model's device for input there.
template <typename T>
struct LstmOutput {
  Tensor<T> output;  // (L, N, D * H_out), or (N, L, D * H_out) with batch_first; packed: (rows, D * H_out)
  Tensor<T> h_n;     // (D * num_layers, N, H_out): row layer * D + direction
  Tensor<T> c_n;     // (D * num_layers, N, hidden_size)
};

// Thread safety: every const method may be called from many threads at once on one model;
// concurrent forward passes are serialised on the model's thread pool and workspace.
// set_parameter/set_weights wait for running forward passes and block new ones while they run;
// parameter() and copy_weights() read a consistent snapshot meanwhile.
// Fork safety (POSIX): fork() waits for the forward passes under way, and a model works in the
// child (its thread pool starts new threads there) and keeps working in the parent.
// The most threads a model may run on: more than any machine's cores (each thread of a pool
// runs at every step, so threads beyond the cores only wait).
constexpr int kMaxThreads = 1024;

// How a model holds its weight matrices (weight_ih, weight_hh, weight_hr; biases stay in T).
// The 16-bit formats round every weight to nearest (ties to even) when it is set: the model then
// computes, in float, with exactly those values, and on CPUs with AVX-512 reads them from memory
// at half the bytes. int8 holds each matrix row r as integers q in [-128, 127] times a scale
// s_r (Parameter::scales; a weight's value is q * s_r), and multiplies them by activations
// (x_t, h_{t-1}, the projection's input) quantized when they are used: each activation row a to
// rint(a * 127 / max|a|), in [-127, 127], with the scale max|a| / 127; the products accumulate
// in int32, the gates, cells and states stay float. The model's input (what layer 0's weight_ih
// multiplies) is quantized to LstmOptions::int8_input_bits: 16 by default (levels 32767), where
// 8 bits leave features with outliers coarse; 8 runs that product at twice the rate. They take
// float models on the CPU.
enum class WeightFormat { native, float16, bfloat16, int8 };

// "float32"/"float64" for native (by T), "float16", "bfloat16", "int8".
template <typename T>
const char* weight_format_name(WeightFormat format);

// Where and how a model runs.
struct LstmOptions {
  Device device{};  // Device::cuda(n): a build with FASTLSTM_CUDA=ON and a GPU (fastlstm/cuda.hpp)
  int num_threads = 0;  // the CPU's threads: 0 uses every core; at most kMaxThreads
  WeightFormat weight_format = WeightFormat::native;
  int int8_input_bits = 16;  // int8: the bits of the model's input, 16 or 8 (see WeightFormat)
  bool allow_tf32 = false;  // CUDA: TF32 tensor-core GEMMs, faster from Ampere on, ~1e-3 accurate
  bool cuda_graphs = true;  // CUDA: the time loop replays as a CUDA graph from a shape's second run
};

template <typename T>
class Lstm {
 public:
  // A model with zero weights. num_threads = 0 uses every core of the machine. Throws
  // InvalidArgument for an invalid config (see LstmConfig::validate) or num_threads outside
  // [0, kMaxThreads], Error when the threads cannot be started, or when the device cannot be
  // used (a CUDA device in a build without CUDA, none present, an index out of range). The
  // weights are prepared for the backend when first used or set, so setting them straight after
  // construction costs one preparation, not two.
  explicit Lstm(const LstmConfig& config, int num_threads = 0);
  Lstm(const LstmConfig& config, const LstmOptions& options);
  // A model over `weights` (prepared for the backend once, here); throws as above.
  Lstm(LstmWeights<T> weights, int num_threads = 0);
  Lstm(LstmWeights<T> weights, const LstmOptions& options);
  ~Lstm();
  // Movable, not copyable; a moved-from model may only be destroyed or assigned to.
  Lstm(Lstm&&) noexcept;
  Lstm& operator=(Lstm&&) noexcept;

  const LstmConfig& config() const { return weights_.config(); }
  // The options the model was made with, num_threads resolved to the threads it runs.
  const LstmOptions& options() const { return options_; }
  Device device() const { return options_.device; }
  WeightFormat weight_format() const { return options_.weight_format; }
  int int8_input_bits() const { return options_.int8_input_bits; }
  int num_threads() const { return options_.num_threads; }
  // Forward passes whose time loop replayed a captured CUDA graph; 0 on the CPU.
  int64_t graph_replays() const;
  // The canonical weights. Their storage is stable: pointers stay valid while the model lives.
  // Not synchronised with set_parameter/set_weights: a thread that may race them reads
  // parameter() or copy_weights() instead.
  const LstmWeights<T>& weights() const { return weights_; }
  // A copy of the named parameter, taken while no weight update runs: the old values or the new,
  // never a mix. Throws InvalidArgument for an unknown name.
  Tensor<T> parameter(const std::string& name) const;
  // A copy of all weights, taken as parameter() takes one.
  LstmWeights<T> copy_weights() const;

  // Copies `values` (shape of the named parameter, any strides) into the parameter (rounded to
  // the weight format; int8 takes new row scales, max|row| / 127) and re-prepares the backend.
  // Throws InvalidArgument for an unknown name, a wrong shape, or (int8) a weight that is not
  // finite; the model is unchanged then.
  void set_parameter(const std::string& name, TensorView<const T> values);
  // Sets several parameters at once and re-prepares once. All are validated before any is
  // written: on an error the model is unchanged.
  void set_parameters(const std::vector<std::pair<std::string, TensorView<const T>>>& values);
  // Replaces all weights; the configuration must be the model's. An int8 model keeps the scales
  // of matrices that have them (one per row: their values are taken as q * scale); matrices may
  // come as int8 codes and scales (Parameter::codes), as an int8 model holds them. Throws
  // InvalidArgument for values, codes or scales of the wrong count, and where int8 cannot hold a
  // value (not finite); the model is unchanged then.
  void set_weights(const LstmWeights<T>& weights);

  // A model from the LSTM in a model file (see model_file.hpp: read_model_file), its tensors cast
  // to T. Throws FileError when the file cannot be read, InvalidArgument naming the file and the
  // problem when it is malformed or holds no LSTM under `prefix`. Thread-safe.
  static Lstm load(const std::string& path, const std::string& prefix = "", int num_threads = 0);
  static Lstm load(const std::string& path, const std::string& prefix, const LstmOptions& options);
  // Writes the weights and configuration to a model file (see save_model_file). Throws FileError;
  // blocks forward passes and weight updates while it writes.
  void save(const std::string& path) const;

  // input: (L, N, H_in), or (N, L, H_in) with batch_first, any non-negative strides, in host
  // memory or on the model's device. initial_state: nullptr for zeros. Throws InvalidArgument
  // naming a wrongly shaped argument or one on another device.
  LstmOutput<T> forward(TensorView<const T> input, const StateView<T>* initial_state = nullptr) const;

  // A packed batch as torch's PackedSequence holds it: data (sum(batch_sizes), H_in), the rows
  // of step t following those of step t-1; batch_sizes non-increasing, batch_sizes[0] = N.
  // sorted_indices: nullptr, or PackedSequence.sorted_indices (packed row n is the caller's
  // sequence sorted_indices[n]); the state rows then follow the caller's order, as in torch,
  // else the packed order. Throws InvalidArgument for a wrong data width, batch_sizes that are
  // empty, increasing, < 1 or do not sum to the rows, sorted_indices that are not a
  // permutation of 0..N-1, or wrongly shaped initial states.
  LstmOutput<T> forward_packed(TensorView<const T> data, const std::vector<int64_t>& batch_sizes,
                               const StateView<T>* initial_state = nullptr,
                               const std::vector<int64_t>* sorted_indices = nullptr) const;

  // Streaming: the recurrent state of `batch_size` parallel streams, carried across calls, on
  // the model's device.
  struct State {
    Tensor<T> h;  // (num_layers, N, H_out)
    Tensor<T> c;  // (num_layers, N, hidden_size)
    int64_t batch_size() const { return h.shape()[1]; }
  };

  // A zero state. Throws InvalidArgument for a bidirectional or reverse model (its reverse direction needs
  // the whole sequence). Thread safety: one State per stream; many streams may share one model.
  State make_state(int64_t batch_size = 1) const;
  // Sets a state to `values` (the state's shapes, host memory or the model's device), or zeros.
  void set_state(State& state, const StateView<T>& values) const;
  void reset_state(State& state) const;
  // Copies of a state's h and c in host memory.
  std::pair<Tensor<T>, Tensor<T>> read_state(const State& state) const;

  // One time step of every stream: input_t (N, H_in) -> output_t (N, H_out), written into the
  // caller's buffer (features contiguous, any row stride, not overlapping input_t; host memory
  // or the model's device); advances `state`. Allocates nothing once the model has run a step of this size. Throws
  // InvalidArgument for wrong shapes and for buffers that share memory.
  void step(TensorView<const T> input_t, State& state, TensorView<T> output_t) const;
  // The same step, its output (N, H_out) allocated where input_t is.
  Tensor<T> step(TensorView<const T> input_t, State& state) const;

  // Several steps: chunk (L, N, H_in), or (N, L, H_in) with batch_first; returns the output
  // (L, N, H_out), or (N, L, H_out), and advances `state`. Feeding a sequence in chunks gives
  // the same outputs as one forward over the whole sequence.
  Tensor<T> forward(TensorView<const T> chunk, State& state) const;

 private:
  template <typename U>
  friend class StreamPool;  // steps its streams' states under the model's lock

  void check_stream_state(const State& state) const;
  void run_stream(ForwardRequest<T>& request, State& state) const;
  // A step's request: input_t (batch, H_in) -> output_t (batch, H_out), checked.
  ForwardRequest<T> step_request(const TensorView<const T>& input_t, const TensorView<T>& output_t,
                                 int64_t batch) const;
  void prepare() const;                                  // with mutex_ held, or in a constructor
  void round_to_format(Parameter<T>& parameter) const;   // the weight format's values
  void check_given_weights(const LstmWeights<T>& weights) const;  // sizes, codes, scales, int8's values
  void run(const ForwardRequest<T>& request) const;      // a forward pass, under mutex_
  void run_locked(const ForwardRequest<T>& request) const;  // the same, mutex_ already held
  Tensor<T> allocate(std::vector<int64_t> shape, Device device) const;

  LstmWeights<T> weights_;
  LstmOptions options_;
  std::unique_ptr<Backend<T>> backend_;
  std::unique_ptr<ForkSafeMutex> mutex_;  // serialises forward passes and weight updates
  mutable bool prepared_ = false;      // whether backend_ holds weights_ (guarded by mutex_)
};

extern template class Lstm<float>;
extern template class Lstm<double>;

}  // namespace fastlstm
