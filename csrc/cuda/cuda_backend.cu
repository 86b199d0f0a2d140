// The CUDA backend. Per layer:
//  1. one cuBLAS GEMM projects the inputs of every step for both directions at once,
//     gates_x = x [W_ih_fwd; W_ih_rev]^T;
//  2. per step and direction, one GEMM h_{t-1} W_hh^T and one fused kernel that adds both gate
//     pre-activations and the bias, applies sigmoid/tanh and updates c and h in place (with
//     proj_size, one more GEMM projects h). The two directions run on separate streams.
// A forward stages its operands into buffers the backend owns (rows time-major, or in the packed
// order) and takes its results from there, so that the time loop, captured once as a CUDA graph,
// replays for every later call of the same shape; only the copies in and out happen per call.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

#include "../backend.hpp"
#include "cuda_calls.hpp"
#include "device_memory.hpp"
#include "fastlstm/cuda.hpp"
#include "fastlstm/error.hpp"
#include "graph_plans.hpp"
#include "kernels.cuh"
#include "staging.hpp"

namespace fastlstm::cuda {
namespace {

constexpr int kMinComputeCapability = 75;  // the oldest architecture compiled (CMakeLists.txt)

int compute_capability(int device) {
  cudaDeviceProp properties{};
  FASTLSTM_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  return properties.major * 10 + properties.minor;
}

// The shape of one forward: what a captured graph depends on.
struct Shape {
  int64_t steps = 0, batch = 0, rows = 0;
  std::vector<int64_t> batch_sizes, step_starts;  // packed batches only

  bool packed() const { return !batch_sizes.empty(); }
  int64_t size(int64_t t) const { return packed() ? batch_sizes[static_cast<size_t>(t)] : batch; }
  int64_t first_row(int64_t t) const { return packed() ? step_starts[static_cast<size_t>(t)] : t * batch; }
  std::vector<int64_t> key() const {
    std::vector<int64_t> key{steps, batch};
    key.insert(key.end(), batch_sizes.begin(), batch_sizes.end());
    return key;
  }
};

template <typename T>
Shape shape_of(const ForwardRequest<T>& request) {
  Shape s;
  s.steps = request.batch_sizes.steps;
  s.batch = request.batch_sizes.batch;
  s.rows = s.steps * s.batch;
  if (request.batch_sizes.sizes) {
    s.batch_sizes.assign(request.batch_sizes.sizes, request.batch_sizes.sizes + s.steps);
    s.step_starts.assign(request.step_starts, request.step_starts + s.steps);
    s.rows = s.step_starts.back() + s.batch_sizes.back();
  }
  return s;
}

template <typename T>
class CudaBackend final : public Backend<T> {
 public:
  CudaBackend(const LstmConfig& config, const LstmOptions& options)
      : config_(config), options_(options), device_(options.device.index) {
    try {
      create();
    } catch (...) {
      release();  // a destructor does not run for a half-built object
      throw;
    }
  }
  ~CudaBackend() override { release(); }

  Device device() const override { return Device::cuda(device_); }
  int num_threads() const override { return options_.num_threads; }
  int64_t graph_replays() const override { return graph_replays_; }

  // Same buffers, new contents: captured graphs stay valid.
  void prepare(const LstmWeights<T>& weights) override {
    DeviceGuard guard(device_);
    for (int64_t l = 0; l < config_.num_layers; ++l) {
      Layer& layer = layers_[static_cast<size_t>(l)];
      const int64_t width = config_.layer_input_size(l);
      for (int64_t d = 0; d < D(); ++d) {
        upload(layer.w_ih.template as<T>() + d * 4 * H() * width, weights.find(l, d, ParameterKind::weight_ih)->values);
        upload(layer.w_hh[d].template as<T>(), weights.find(l, d, ParameterKind::weight_hh)->values);
        if (config_.bias) {
          const auto& b_ih = weights.find(l, d, ParameterKind::bias_ih)->values;
          const auto& b_hh = weights.find(l, d, ParameterKind::bias_hh)->values;
          std::vector<T> bias(b_ih.size());
          for (size_t i = 0; i < bias.size(); ++i) bias[i] = b_ih[i] + b_hh[i];
          upload(layer.bias[d].template as<T>(), bias);
          FASTLSTM_CUDA_CHECK(cudaStreamSynchronize(streams_[0]));  // `bias` is about to go away
        }
        if (config_.proj_size > 0) upload(layer.w_hr[d].template as<T>(), weights.find(l, d, ParameterKind::weight_hr)->values);
      }
    }
    FASTLSTM_CUDA_CHECK(cudaStreamSynchronize(streams_[0]));
  }

  void forward(const ForwardRequest<T>& request) override {
    const Shape s = shape_of(request);
    if (s.steps == 0 || s.batch == 0) return;
    DeviceGuard guard(device_);
    reserve(s);
    cudaStream_t stream = streams_[0];
    if (reads_device_memory(request)) order_after_legacy_stream();
    const int64_t states = D() * config_.num_layers;
    const int64_t* sorted = nullptr;
    const int64_t* unsorted = nullptr;
    if (request.sorted_indices) {
      upload_permutation(request.sorted_indices, s.batch);
      sorted = indices_.as<int64_t>();
      unsorted = sorted + s.batch;
    }
    stager_.stage(input_operand(request, s), x_stage_.as<T>(), input_host_, nullptr);
    if (const StateView<T>* initial = request.initial_state) {
      stager_.stage(Strided<T>::of(initial->h), h_state_.as<T>(), h_host_, sorted);
      stager_.stage(Strided<T>::of(initial->c), c_state_.as<T>(), c_host_, sorted);
    } else {
      FASTLSTM_CUDA_CHECK(cudaMemsetAsync(h_state_.as<T>(), 0, bytes(states * s.batch * P()), stream));
      FASTLSTM_CUDA_CHECK(cudaMemsetAsync(c_state_.as<T>(), 0, bytes(states * s.batch * H()), stream));
    }
    run(s);
    deliver_output(request, s);
    const bool to_host = request.final_state_device.is_cpu();
    stager_.unstage(Strided<T>::contiguous(h_state_.as<T>(), device(), {states, s.batch, P()}), request.h_n, to_host,
                    h_final_, unsorted);
    stager_.unstage(Strided<T>::contiguous(c_state_.as<T>(), device(), {states, s.batch, H()}), request.c_n, to_host,
                    c_final_, unsorted);
    FASTLSTM_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  Tensor<T> allocate(std::vector<int64_t> shape) override { return device_tensor<T>(std::move(shape), device_); }

  void copy(const TensorView<const T>& from, const TensorView<T>& to) override {
    if (from.device.is_cpu() && to.device.is_cpu()) return Backend<T>::copy(from, to);
    DeviceGuard guard(device_);
    const Strided<T> source = Strided<T>::of(from);
    if (!to.device.is_cpu()) {
      stager_.stage(source, to.data, copy_host_, nullptr);
    } else {  // from the device to the host
      stager_.unstage(source, to.data, true, copy_device_);
    }
    FASTLSTM_CUDA_CHECK(cudaStreamSynchronize(streams_[0]));
  }

  void fill_zero(const TensorView<T>& to) override {
    if (to.device.is_cpu()) return Backend<T>::fill_zero(to);
    DeviceGuard guard(device_);
    FASTLSTM_CUDA_CHECK(cudaMemsetAsync(to.data, 0, bytes(to.numel()), streams_[0]));
    FASTLSTM_CUDA_CHECK(cudaStreamSynchronize(streams_[0]));
  }

 private:
  struct Layer {
    DeviceMemory w_ih;              // (D * 4H, input width): both directions, stacked
    DeviceMemory w_hh[2], w_hr[2];  // (4H, H_out), (H_out, H)
    DeviceMemory bias[2];           // b_ih + b_hh, (4H); empty without bias
  };

  int64_t D() const { return config_.num_directions(); }
  int64_t H() const { return config_.hidden_size; }
  int64_t P() const { return config_.output_size(); }
  static size_t bytes(int64_t count) { return sizeof(T) * static_cast<size_t>(count); }

  void create() {
    std::string reason;
    const int count = device_count(&reason);
    if (count == 0) throw Error(reason);
    if (device_ >= count) {
      throw InvalidArgument("device: index " + std::to_string(device_) + " out of range (" + std::to_string(count) +
                            " CUDA device(s))");
    }
    DeviceGuard guard(device_);
    const int capability = compute_capability(device_);
    if (capability < kMinComputeCapability) {
      throw InvalidArgument("device: " + device_name(device_) + " is older than sm_75, the oldest architecture "
                            "fastlstm's CUDA backend is built for");
    }
    // cuBLAS's recommended workspace: 32 MiB on Hopper and later, 4 MiB before. Set explicitly so
    // that graph capture never allocates.
    const size_t workspace = capability >= 90 ? (32u << 20) : (4u << 20);
    for (int s = 0; s < 2; ++s) {
      FASTLSTM_CUDA_CHECK(cudaStreamCreateWithFlags(&streams_[s], cudaStreamNonBlocking));
      FASTLSTM_CUDA_CHECK(cublasCreate(&blas_[s]));
      FASTLSTM_CUDA_CHECK(cublasSetStream(blas_[s], streams_[s]));
      blas_workspace_[s] = DeviceMemory(device_, workspace);
      FASTLSTM_CUDA_CHECK(cublasSetWorkspace(blas_[s], blas_workspace_[s].data(), workspace));
      // Full FP32 (no TF32) unless the user asked for TF32.
      FASTLSTM_CUDA_CHECK(
          cublasSetMathMode(blas_[s], options_.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    }
    for (cudaEvent_t* event : {&fork_, &join_, &legacy_done_}) {
      FASTLSTM_CUDA_CHECK(cudaEventCreateWithFlags(event, cudaEventDisableTiming));
    }
    stager_ = Stager<T>(device_, streams_[0]);
    allocate_weights();
  }

  void release() noexcept {
    int previous = 0;
    const bool switch_device = cudaGetDevice(&previous) == cudaSuccess && previous != device_;
    if (switch_device) (void)cudaSetDevice(device_);
    graphs_.drop();
    for (int s = 0; s < 2; ++s) {
      if (blas_[s]) (void)cublasDestroy(blas_[s]);
      if (streams_[s]) (void)cudaStreamDestroy(streams_[s]);
      blas_[s] = nullptr;
      streams_[s] = nullptr;
    }
    for (cudaEvent_t* event : {&fork_, &join_, &legacy_done_}) {
      if (*event) (void)cudaEventDestroy(*event);
      *event = nullptr;
    }
    layers_.clear();
    if (switch_device) (void)cudaSetDevice(previous);
  }

  void allocate_weights() {
    layers_.resize(static_cast<size_t>(config_.num_layers));
    for (int64_t l = 0; l < config_.num_layers; ++l) {
      Layer& layer = layers_[static_cast<size_t>(l)];
      layer.w_ih = DeviceMemory(device_, bytes(D() * 4 * H() * config_.layer_input_size(l)));
      for (int64_t d = 0; d < D(); ++d) {
        layer.w_hh[d] = DeviceMemory(device_, bytes(4 * H() * P()));
        if (config_.bias) layer.bias[d] = DeviceMemory(device_, bytes(4 * H()));
        if (config_.proj_size > 0) layer.w_hr[d] = DeviceMemory(device_, bytes(P() * H()));
      }
    }
  }

  void upload(T* device_data, const std::vector<T>& host) {
    FASTLSTM_CUDA_CHECK(
        cudaMemcpyAsync(device_data, host.data(), bytes(static_cast<int64_t>(host.size())), cudaMemcpyHostToDevice,
                        streams_[0]));
  }

  // sorted_indices and their inverse, one after the other.
  void upload_permutation(const int64_t* sorted, int64_t batch) {
    permutation_.assign(static_cast<size_t>(2 * batch), 0);
    for (int64_t n = 0; n < batch; ++n) {
      permutation_[static_cast<size_t>(n)] = sorted[n];
      permutation_[static_cast<size_t>(batch + sorted[n])] = n;
    }
    FASTLSTM_CUDA_CHECK(cudaMemcpyAsync(indices_.as<int64_t>(), permutation_.data(),
                                        sizeof(int64_t) * permutation_.size(), cudaMemcpyHostToDevice, streams_[0]));
  }

  static bool reads_device_memory(const ForwardRequest<T>& request) {
    const StateView<T>* initial = request.initial_state;
    return !request.input_device.is_cpu() || !request.output_device.is_cpu() ||
           !request.final_state_device.is_cpu() ||
           (initial && (!initial->h.device.is_cpu() || !initial->c.device.is_cpu()));
  }

  // The caller's device memory is ready once the legacy default stream's work is (cuda.hpp).
  void order_after_legacy_stream() {
    FASTLSTM_CUDA_CHECK(cudaEventRecord(legacy_done_, cudaStreamLegacy));
    FASTLSTM_CUDA_CHECK(cudaStreamWaitEvent(streams_[0], legacy_done_, 0));
  }

  Strided<T> input_operand(const ForwardRequest<T>& request, const Shape& s) const {
    const int64_t I = config_.input_size;
    if (s.packed()) {  // packed rows follow one another: (1, rows, I)
      return Strided<T>{request.input, request.input_device, {1, s.rows, I},
                        {0, request.input_rows.row_stride, request.input_feature_stride}};
    }
    return Strided<T>{request.input, request.input_device, {s.steps, s.batch, I},
                      {request.input_rows.time_stride, request.input_rows.row_stride, request.input_feature_stride}};
  }

  // The staged output rows (time-major, or packed) into the request's layout: the same layout,
  // a step's rows a row stride apart, or batch-major (N, L, W).
  void deliver_output(const ForwardRequest<T>& request, const Shape& s) {
    const int64_t width = D() * P();
    const RowLayout& rows = request.output_rows;
    const T* staged = out_stage_.as<T>();
    const bool same_layout = rows.row_stride == width && (s.packed() || s.steps == 1 || rows.time_stride == s.batch * width);
    if (same_layout) {
      FASTLSTM_CUDA_CHECK(cudaMemcpyAsync(request.output, staged, bytes(s.rows * width), cudaMemcpyDefault, streams_[0]));
    } else if (s.steps == 1) {
      FASTLSTM_CUDA_CHECK(cudaMemcpy2DAsync(request.output, bytes(rows.row_stride), staged, bytes(width), bytes(width),
                                            static_cast<size_t>(s.batch), cudaMemcpyDefault, streams_[0]));
    } else if (rows.row_stride == s.steps * width && rows.time_stride == width) {
      const Strided<T> time_major{staged, device(), {s.batch, s.steps, width}, {width, s.batch * width, 1}};
      stager_.unstage(time_major, request.output, request.output_device.is_cpu(), out_final_);
    } else {
      throw Error("CUDA backend: an output layout the engine does not make");
    }
  }

  // Grows the workspace for `s`; graphs captured over moved buffers are dropped.
  void reserve(const Shape& s) {
    const int64_t states = config_.num_layers * D();
    bool moved = false;
    moved |= x_stage_.reserve(device_, bytes(s.rows * config_.input_size));
    moved |= out_stage_.reserve(device_, bytes(s.rows * D() * P()));
    for (int64_t b = 0; b < 2; ++b) {
      if (b < config_.num_layers - 1) moved |= layer_out_[b].reserve(device_, bytes(s.rows * D() * P()));
    }
    moved |= gates_.reserve(device_, bytes(s.rows * D() * 4 * H()));
    for (int64_t d = 0; d < D(); ++d) {
      moved |= h_gates_[d].reserve(device_, bytes(s.batch * 4 * H()));
      if (config_.proj_size > 0) moved |= h_cell_[d].reserve(device_, bytes(s.batch * H()));
    }
    moved |= h_state_.reserve(device_, bytes(states * s.batch * P()));
    moved |= c_state_.reserve(device_, bytes(states * s.batch * H()));
    indices_.reserve(device_, sizeof(int64_t) * static_cast<size_t>(2 * s.batch));  // outside the graphs
    if (moved) graphs_.drop();
  }

  // Enqueues the whole time loop of every layer on streams_[0] (and streams_[1] for the reverse
  // direction): the part that a graph captures.
  void enqueue(const Shape& s) {
    const int64_t D_ = D(), H_ = H(), P_ = P(), L = config_.num_layers;
    for (int64_t l = 0; l < L; ++l) {
      const Layer& layer = layers_[static_cast<size_t>(l)];
      const T* in = l == 0 ? x_stage_.as<T>() : layer_out_[(l - 1) % 2].as<T>();
      T* out = l == L - 1 ? out_stage_.as<T>() : layer_out_[l % 2].as<T>();
      const int64_t width = config_.layer_input_size(l);
      project<T>(blas_[0], s.rows, D_ * 4 * H_, width, layer.w_ih.template as<T>(), in, width, gates_.as<T>(), D_ * 4 * H_);
      if (D_ == 2) {
        FASTLSTM_CUDA_CHECK(cudaEventRecord(fork_, streams_[0]));
        FASTLSTM_CUDA_CHECK(cudaStreamWaitEvent(streams_[1], fork_, 0));
      }
      for (int64_t d = 0; d < D_; ++d) enqueue_direction(s, l, d, out);
      if (D_ == 2) {
        FASTLSTM_CUDA_CHECK(cudaEventRecord(join_, streams_[1]));
        FASTLSTM_CUDA_CHECK(cudaStreamWaitEvent(streams_[0], join_, 0));
      }
    }
  }

  // The steps of direction d of layer l, on streams_[d], writing its half of `out`.
  void enqueue_direction(const Shape& s, int64_t l, int64_t d, T* out) {
    const int64_t D_ = D(), H_ = H(), P_ = P();
    const Layer& layer = layers_[static_cast<size_t>(l)];
    T* h = h_state_.as<T>() + (l * D_ + d) * s.batch * P_;
    T* c = c_state_.as<T>() + (l * D_ + d) * s.batch * H_;
    const T* bias = config_.bias ? layer.bias[d].template as<T>() : nullptr;
    for (int64_t i = 0; i < s.steps; ++i) {
      const int64_t t = d == 0 ? i : s.steps - 1 - i;
      const int64_t rows = s.size(t);
      project<T>(blas_[d], rows, 4 * H_, P_, layer.w_hh[d].template as<T>(), h, P_, h_gates_[d].as<T>(), 4 * H_);
      const T* x_gates = gates_.as<T>() + s.first_row(t) * D_ * 4 * H_ + d * 4 * H_;
      T* out_t = out + s.first_row(t) * D_ * P_ + d * P_;
      if (config_.proj_size == 0) {
        lstm_cell_kernel<T><<<blocks_for(rows * H_), kThreadsPerBlock, 0, streams_[d]>>>(
            x_gates, D_ * 4 * H_, h_gates_[d].as<T>(), bias, c, h, out_t, D_ * P_, rows, H_);
        FASTLSTM_CUDA_CHECK(cudaGetLastError());
      } else {
        lstm_cell_kernel<T><<<blocks_for(rows * H_), kThreadsPerBlock, 0, streams_[d]>>>(
            x_gates, D_ * 4 * H_, h_gates_[d].as<T>(), bias, c, nullptr, h_cell_[d].as<T>(), H_, rows, H_);
        FASTLSTM_CUDA_CHECK(cudaGetLastError());
        project<T>(blas_[d], rows, P_, H_, layer.w_hr[d].template as<T>(), h_cell_[d].as<T>(), H_, h, P_);
        FASTLSTM_CUDA_CHECK(cudaMemcpy2DAsync(out_t, bytes(D_ * P_), h, bytes(P_), bytes(P_), static_cast<size_t>(rows),
                                              cudaMemcpyDeviceToDevice, streams_[d]));
      }
    }
  }

  // The time loop: directly on a shape's first run, as a captured graph after that.
  void run(const Shape& s) {
    if (graphs_.run(s.key(), streams_[0], options_.cuda_graphs, [&] { enqueue(s); })) ++graph_replays_;
  }

  LstmConfig config_;
  LstmOptions options_;
  int device_ = 0;
  cudaStream_t streams_[2] = {nullptr, nullptr};
  cublasHandle_t blas_[2] = {nullptr, nullptr};
  DeviceMemory blas_workspace_[2];
  cudaEvent_t fork_ = nullptr, join_ = nullptr, legacy_done_ = nullptr;
  std::vector<Layer> layers_;
  Stager<T> stager_;
  // Captured by the graphs: x_stage_ .. c_state_. Outside them: the staging of what the caller passes.
  Buffer x_stage_, out_stage_, layer_out_[2], gates_, h_gates_[2], h_cell_[2], h_state_, c_state_;
  Buffer input_host_, h_host_, c_host_, out_final_, h_final_, c_final_, indices_, copy_host_, copy_device_;
  std::vector<int64_t> permutation_;
  GraphPlans graphs_;
  int64_t graph_replays_ = 0;
};

}  // namespace
}  // namespace fastlstm::cuda

namespace fastlstm {

template <typename T>
std::unique_ptr<Backend<T>> make_cuda_backend(const LstmConfig& config, const LstmOptions& options) {
  return std::make_unique<cuda::CudaBackend<T>>(config, options);
}

template std::unique_ptr<Backend<float>> make_cuda_backend<float>(const LstmConfig&, const LstmOptions&);
template std::unique_ptr<Backend<double>> make_cuda_backend<double>(const LstmConfig&, const LstmOptions&);

}  // namespace fastlstm
