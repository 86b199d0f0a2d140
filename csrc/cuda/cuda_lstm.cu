// The CUDA engine (see cuda_lstm.hpp). Per layer:
//  1. one cuBLAS GEMM projects the inputs of every step for both directions at once,
//     gates_x = x [W_ih_fwd; W_ih_rev]^T;
//  2. per step and direction, one GEMM h_{t-1} W_hh^T and one fused kernel that adds both gate
//     pre-activations and the bias, applies sigmoid/tanh and updates c and h in place (with
//     proj_size, one more GEMM projects h). The two directions run on separate streams.
// A forward reads its inputs from staging buffers the engine owns and writes its results there,
// so that the whole time loop, captured once as a CUDA graph, replays for every later call of
// the same shape; only the copies in and out happen per call.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifndef _WIN32
#include <dlfcn.h>
#endif

#include <algorithm>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "cuda_lstm.hpp"
#include "fastlstm/error.hpp"

namespace fastlstm::cuda {
namespace {

constexpr int kMinComputeCapability = 75;  // the oldest architecture compiled (CMakeLists.txt)
constexpr int kThreadsPerBlock = 256;
constexpr size_t kMaxPlans = 64;  // cached graphs per engine; more shapes: start over

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so that the engine stays usable
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
  }
}

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(status));
  }
}

#define FASTLSTM_CHECK(call) check((call), #call)

// Makes `device` current for a scope and restores the caller's device after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FASTLSTM_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) FASTLSTM_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { (void)cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

int compute_capability(int device) {
  cudaDeviceProp properties{};
  FASTLSTM_CHECK(cudaGetDeviceProperties(&properties, device));
  return properties.major * 10 + properties.minor;
}

// ------------------------------------------------------------------------------------ kernels
__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
template <typename T>
__device__ __forceinline__ T sigmoid_(T x) {
  return T(1) / (T(1) + exp_(-x));
}

// One step of one direction for `rows` rows: gates = x_gates + h_gates (+ bias), in torch's
// order i, f, g, o, each `hidden` wide; c and h updated in place. h goes to `h_out` (a row
// stride apart) and, without projection, also to the recurrent state `h_state`.
template <typename T>
__global__ void lstm_cell_kernel(const T* __restrict__ x_gates, int64_t x_gates_stride,
                                 const T* __restrict__ h_gates, const T* __restrict__ bias,
                                 T* __restrict__ c, T* __restrict__ h_state, T* __restrict__ h_out,
                                 int64_t h_out_stride, int64_t rows, int64_t hidden) {
  const int64_t total = rows * hidden;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / hidden, j = i % hidden;
    const T* xg = x_gates + n * x_gates_stride + j;
    const T* hg = h_gates + n * 4 * hidden + j;
    T pre[4];
#pragma unroll
    for (int gate = 0; gate < 4; ++gate) {
      pre[gate] = xg[gate * hidden] + hg[gate * hidden] + (bias ? bias[gate * hidden + j] : T(0));
    }
    const T cell = sigmoid_(pre[1]) * c[i] + sigmoid_(pre[0]) * tanh_(pre[2]);
    c[i] = cell;
    const T h = sigmoid_(pre[3]) * tanh_(cell);
    if (h_state) h_state[i] = h;
    h_out[n * h_out_stride + j] = h;
  }
}

// dst (d0, d1, d2), contiguous = src[a, index[b] (or b), k] with src's strides in elements.
template <typename T>
__global__ void gather_kernel(const T* __restrict__ src, int64_t s0, int64_t s1, int64_t s2,
                              const int64_t* __restrict__ index, T* __restrict__ dst, int64_t d0,
                              int64_t d1, int64_t d2) {
  const int64_t total = d0 * d1 * d2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = i % d2, b = (i / d2) % d1, a = i / (d1 * d2);
    dst[i] = src[a * s0 + (index ? index[b] : b) * s1 + k * s2];
  }
}

unsigned blocks_for(int64_t items) {
  const int64_t blocks = (items + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 1 << 16));
}

// ------------------------------------------------------------------------------------ cuBLAS
cublasStatus_t gemm(cublasHandle_t handle, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                    float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  return cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
}

cublasStatus_t gemm(cublasHandle_t handle, int m, int n, int k, const double* a, int lda, const double* b, int ldb,
                    double* c, int ldc) {
  const double one = 1.0, zero = 0.0;
  return cublasDgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc);
}

int as_int(int64_t value, const char* what) {
  if (value < 0 || value > std::numeric_limits<int>::max()) {
    throw InvalidArgument(std::string(what) + " (" + std::to_string(value) + ") exceeds cuBLAS's 32-bit sizes");
  }
  return static_cast<int>(value);
}

// Row-major y (rows x out) = x (rows x in, row stride ldx) W^T, W (out x in, row-major).
template <typename T>
void project(cublasHandle_t handle, int64_t rows, int64_t out, int64_t in, const T* w, const T* x, int64_t ldx,
             T* y, int64_t ldy) {
  if (rows == 0) return;
  check(gemm(handle, as_int(out, "gate rows"), as_int(rows, "rows"), as_int(in, "input width"), w,
             as_int(in, "input width"), x, as_int(ldx, "row stride"), y, as_int(ldy, "row stride")),
        "cublasGemm");
}

// A device buffer that grows on demand; reports whether its address changed.
class Buffer {
 public:
  template <typename T>
  T* as() const {
    return static_cast<T*>(memory_.data());
  }
  bool reserve(int device, size_t bytes) {
    if (bytes <= memory_.bytes() && memory_.data()) return false;
    memory_ = DeviceMemory();
    memory_ = DeviceMemory(device, std::max<size_t>(bytes, 256));
    return true;
  }

 private:
  DeviceMemory memory_;
};

template <typename T>
bool is_contiguous(const TensorView<const T>& view) {
  int64_t expected = 1;
  for (int d = view.rank - 1; d >= 0; --d) {
    if (view.size(d) != 1 && view.stride(d) != expected) return false;
    expected *= view.size(d);
  }
  return true;
}

std::string shape_string(const int64_t* shape, int rank) {
  std::string s = "(";
  for (int d = 0; d < rank; ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + (rank == 1 ? ",)" : ")");
}

template <typename T>
void check_shape(const TensorView<const T>& view, std::initializer_list<int64_t> expected, const char* name) {
  const std::vector<int64_t> want(expected);
  bool ok = view.rank == static_cast<int>(want.size());
  for (int d = 0; ok && d < view.rank; ++d) ok = view.size(d) == want[static_cast<size_t>(d)];
  if (!ok) {
    throw InvalidArgument(std::string(name) + ": expected shape " + shape_string(want.data(), static_cast<int>(want.size())) +
                          ", got " + shape_string(view.shape.data(), view.rank));
  }
  if (!view.data && view.numel() > 0) throw InvalidArgument(std::string(name) + ": null data pointer");
}

// The runtime reports a missing driver as an insufficient one; tell them apart.
bool driver_present() {
#ifdef _WIN32
  return true;
#else
  void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (driver) dlclose(driver);
  return driver != nullptr;
#endif
}

}  // namespace

// ------------------------------------------------------------------------------------ devices
int device_count(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    if (reason) {
      *reason = std::string("CUDA is not usable: ") + cudaGetErrorString(status);
      if (status == cudaErrorInsufficientDriver && !driver_present()) {
        *reason = "no NVIDIA driver is installed (libcuda.so.1 not found)";
      }
    }
    return 0;
  }
  if (count == 0) {
    if (reason) *reason = "no CUDA device is visible to this process";
    return 0;
  }
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, 0) == cudaSuccess &&
      properties.major * 10 + properties.minor < kMinComputeCapability) {
    if (reason) {
      *reason = std::string(properties.name) + " has compute capability " + std::to_string(properties.major) + "." +
                std::to_string(properties.minor) + "; fastlstm's CUDA backend needs 7.5 or newer";
    }
    return 0;
  }
  if (reason) reason->clear();
  return count;
}

int pointer_device(const void* pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  const bool on_device = attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
  return on_device ? attributes.device : -1;
}

std::string device_name(int device) {
  int count = 0;
  FASTLSTM_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    throw InvalidArgument("device: index " + std::to_string(device) + " out of range (" + std::to_string(count) +
                          " CUDA device(s))");
  }
  cudaDeviceProp properties{};
  FASTLSTM_CHECK(cudaGetDeviceProperties(&properties, device));
  return std::string(properties.name) + " (sm_" + std::to_string(properties.major) + std::to_string(properties.minor) + ")";
}

DeviceMemory::DeviceMemory(int device, size_t bytes) : bytes_(bytes), device_(device) {
  DeviceGuard guard(device);
  const cudaError_t status = cudaMalloc(&data_, std::max<size_t>(bytes, 1));
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw std::bad_alloc();
  }
  check(status, "cudaMalloc");
}

DeviceMemory::~DeviceMemory() { release(); }

DeviceMemory::DeviceMemory(DeviceMemory&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)), device_(other.device_) {}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

void DeviceMemory::release() noexcept {
  if (!data_) return;
  int previous = 0;
  const bool switch_device = cudaGetDevice(&previous) == cudaSuccess && previous != device_;
  if (switch_device) (void)cudaSetDevice(device_);
  (void)cudaFree(data_);
  if (switch_device) (void)cudaSetDevice(previous);
  data_ = nullptr;
  bytes_ = 0;
}

template <typename T>
DeviceArray<T>::DeviceArray(int device, std::vector<int64_t> shape) : shape_(std::move(shape)) {
  memory_ = std::make_shared<DeviceMemory>(device, sizeof(T) * static_cast<size_t>(numel()));
}

template <typename T>
int64_t DeviceArray<T>::numel() const {
  return std::accumulate(shape_.begin(), shape_.end(), int64_t{1}, std::multiplies<int64_t>());
}

template <typename T>
DeviceArray<T> DeviceArray<T>::reshaped(std::vector<int64_t> shape) const {
  DeviceArray<T> view;
  view.shape_ = std::move(shape);
  if (view.numel() != numel()) throw InvalidArgument("reshape: the new shape has a different number of elements");
  view.memory_ = memory_;
  return view;
}

template <typename T>
void DeviceArray<T>::copy_to_host(T* host) const {
  if (numel() == 0) return;
  DeviceGuard guard(device());
  FASTLSTM_CHECK(cudaMemcpy(host, data(), sizeof(T) * static_cast<size_t>(numel()), cudaMemcpyDeviceToHost));
}

// ------------------------------------------------------------------------------------ engine
template <typename T>
struct CudaLstm<T>::Impl {
  struct Layer {
    DeviceMemory w_ih;                 // (D * 4H, input width): both directions, stacked
    DeviceMemory w_hh[2], w_hr[2];     // (4H, H_out), (H_out, H)
    DeviceMemory bias[2];              // b_ih + b_hh, (4H); empty without bias
  };

  // The shape of one forward: what a captured graph depends on.
  struct Shape {
    bool packed = false, batch_major = false;
    int64_t steps = 0, batch = 0, rows = 0;
    std::vector<int64_t> batch_sizes, step_starts;

    int64_t size(int64_t t) const { return packed ? batch_sizes[static_cast<size_t>(t)] : batch; }
    // The row of (t, n = 0) in a buffer of this shape's row order, and the distance between n and n + 1.
    int64_t first_row(int64_t t, bool major) const {
      return packed ? step_starts[static_cast<size_t>(t)] : major ? t : t * batch;
    }
    int64_t row_step(bool major) const { return major ? steps : 1; }
    std::vector<int64_t> key() const {
      std::vector<int64_t> key{packed, batch_major, steps, batch};
      if (packed) key.insert(key.end(), batch_sizes.begin(), batch_sizes.end());
      return key;
    }
  };

  struct Plan {
    int runs = 0;
    cudaGraphExec_t graph = nullptr;
    bool capture_failed = false;  // then this shape always runs directly
  };

  LstmConfig config;
  CudaOptions options;
  cudaStream_t streams[2] = {nullptr, nullptr};
  cublasHandle_t blas[2] = {nullptr, nullptr};
  DeviceMemory blas_workspace[2];
  cudaEvent_t fork = nullptr, join = nullptr, producer_done = nullptr;
  std::vector<Layer> layers;
  Buffer x_stage, out_stage, layer_out[2], gates, h_gates[2], h_cell[2];
  Buffer h_state, c_state, h_in, c_in, h_final, c_final, indices;
  std::map<std::vector<int64_t>, Plan> plans;
  int64_t graph_launches = 0;  // read by tests: replays that fell back to direct runs would pass unseen

  Impl(const LstmConfig& config_, const CudaOptions& options_) : config(config_), options(options_) {
    try {
      create();
    } catch (...) {
      release();  // a destructor does not run for a half-built object
      throw;
    }
  }

  ~Impl() { release(); }

  void create() {
    DeviceGuard guard(options.device);
    const int capability = compute_capability(options.device);
    if (capability < kMinComputeCapability) {
      throw InvalidArgument("device: " + device_name(options.device) + " is older than sm_75, the oldest "
                            "architecture fastlstm's CUDA backend is built for");
    }
    // cuBLAS's recommended workspace: 32 MiB on Hopper and later, 4 MiB before. Set explicitly so
    // that graph capture never allocates.
    const size_t workspace = capability >= 90 ? (32u << 20) : (4u << 20);
    for (int s = 0; s < 2; ++s) {
      FASTLSTM_CHECK(cudaStreamCreateWithFlags(&streams[s], cudaStreamNonBlocking));
      FASTLSTM_CHECK(cublasCreate(&blas[s]));
      FASTLSTM_CHECK(cublasSetStream(blas[s], streams[s]));
      blas_workspace[s] = DeviceMemory(options.device, workspace);
      FASTLSTM_CHECK(cublasSetWorkspace(blas[s], blas_workspace[s].data(), workspace));
      // Default math is full FP32 (no TF32) unless the user asked for TF32.
      FASTLSTM_CHECK(cublasSetMathMode(blas[s], options.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    }
    FASTLSTM_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    FASTLSTM_CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
    FASTLSTM_CHECK(cudaEventCreateWithFlags(&producer_done, cudaEventDisableTiming));
    allocate_weights();
  }

  void release() noexcept {
    int previous = 0;
    const bool switch_device = cudaGetDevice(&previous) == cudaSuccess && previous != options.device;
    if (switch_device) (void)cudaSetDevice(options.device);
    drop_graphs();
    for (int s = 0; s < 2; ++s) {
      if (blas[s]) (void)cublasDestroy(blas[s]);
      if (streams[s]) (void)cudaStreamDestroy(streams[s]);
      blas[s] = nullptr;
      streams[s] = nullptr;
    }
    for (cudaEvent_t* event : {&fork, &join, &producer_done}) {
      if (*event) (void)cudaEventDestroy(*event);
      *event = nullptr;
    }
    layers.clear();
    if (switch_device) (void)cudaSetDevice(previous);
  }

  int64_t D() const { return config.num_directions(); }
  int64_t H() const { return config.hidden_size; }
  int64_t P() const { return config.output_size(); }

  void allocate_weights() {
    const size_t t = sizeof(T);
    layers.resize(static_cast<size_t>(config.num_layers));
    for (int64_t l = 0; l < config.num_layers; ++l) {
      Layer& layer = layers[static_cast<size_t>(l)];
      layer.w_ih = DeviceMemory(options.device, t * static_cast<size_t>(D() * 4 * H() * config.layer_input_size(l)));
      for (int64_t d = 0; d < D(); ++d) {
        layer.w_hh[d] = DeviceMemory(options.device, t * static_cast<size_t>(4 * H() * P()));
        if (config.bias) layer.bias[d] = DeviceMemory(options.device, t * static_cast<size_t>(4 * H()));
        if (config.proj_size > 0) layer.w_hr[d] = DeviceMemory(options.device, t * static_cast<size_t>(P() * H()));
      }
    }
  }

  void upload(const DeviceMemory& memory, const T* host, size_t count) {
    FASTLSTM_CHECK(cudaMemcpyAsync(memory.data(), host, sizeof(T) * count, cudaMemcpyHostToDevice, streams[0]));
  }

  // Same buffers, new contents: captured graphs stay valid.
  void set_weights(const LstmWeights<T>& weights) {
    DeviceGuard guard(options.device);
    for (int64_t l = 0; l < config.num_layers; ++l) {
      Layer& layer = layers[static_cast<size_t>(l)];
      const int64_t width = config.layer_input_size(l);
      for (int64_t d = 0; d < D(); ++d) {
        const auto* w_ih = weights.find(l, d, ParameterKind::weight_ih);
        FASTLSTM_CHECK(cudaMemcpyAsync(static_cast<T*>(layer.w_ih.data()) + d * 4 * H() * width, w_ih->values.data(),
                                       sizeof(T) * w_ih->values.size(), cudaMemcpyHostToDevice, streams[0]));
        const auto* w_hh = weights.find(l, d, ParameterKind::weight_hh);
        upload(layer.w_hh[d], w_hh->values.data(), w_hh->values.size());
        if (config.bias) {
          const auto& b_ih = weights.find(l, d, ParameterKind::bias_ih)->values;
          const auto& b_hh = weights.find(l, d, ParameterKind::bias_hh)->values;
          std::vector<T> bias(b_ih.size());
          for (size_t i = 0; i < bias.size(); ++i) bias[i] = b_ih[i] + b_hh[i];
          upload(layer.bias[d], bias.data(), bias.size());
          FASTLSTM_CHECK(cudaStreamSynchronize(streams[0]));  // `bias` is about to go away
        }
        if (config.proj_size > 0) {
          const auto* w_hr = weights.find(l, d, ParameterKind::weight_hr);
          upload(layer.w_hr[d], w_hr->values.data(), w_hr->values.size());
        }
      }
    }
    FASTLSTM_CHECK(cudaStreamSynchronize(streams[0]));
  }

  void drop_graphs() {
    for (auto& [key, plan] : plans) {
      if (plan.graph) (void)cudaGraphExecDestroy(plan.graph);
      plan.graph = nullptr;
    }
  }

  // Grows the workspace for `shape`; graphs captured over moved buffers are dropped.
  void reserve(const Shape& s) {
    const int dev = options.device;
    const size_t t = sizeof(T);
    const auto n = [](int64_t v) { return static_cast<size_t>(v); };
    const int64_t states = config.num_layers * D();
    bool moved = false;
    moved |= x_stage.reserve(dev, t * n(s.rows * config.input_size));
    moved |= out_stage.reserve(dev, t * n(s.rows * D() * P()));
    for (int64_t b = 0; b < 2; ++b) {
      if (b < config.num_layers - 1) moved |= layer_out[b].reserve(dev, t * n(s.rows * D() * P()));
    }
    moved |= gates.reserve(dev, t * n(s.rows * D() * 4 * H()));
    for (int64_t d = 0; d < D(); ++d) {
      moved |= h_gates[d].reserve(dev, t * n(s.batch * 4 * H()));
      if (config.proj_size > 0) moved |= h_cell[d].reserve(dev, t * n(s.batch * H()));
    }
    moved |= h_state.reserve(dev, t * n(states * s.batch * P()));
    moved |= c_state.reserve(dev, t * n(states * s.batch * H()));
    h_in.reserve(dev, t * n(states * s.batch * P()));  // outside the graphs: may move freely
    c_in.reserve(dev, t * n(states * s.batch * H()));
    h_final.reserve(dev, t * n(states * s.batch * P()));
    c_final.reserve(dev, t * n(states * s.batch * H()));
    indices.reserve(dev, sizeof(int64_t) * n(2 * s.batch));
    if (moved) drop_graphs();
  }

  // Enqueues the whole time loop of every layer on streams[0] (and streams[1] for the reverse
  // direction): the part that a graph captures.
  void enqueue(const Shape& s) {
    const int64_t D_ = D(), H_ = H(), P_ = P(), L = config.num_layers;
    for (int64_t l = 0; l < L; ++l) {
      const Layer& layer = layers[static_cast<size_t>(l)];
      const bool in_major = l == 0 && s.batch_major, out_major = l == L - 1 && s.batch_major;
      const T* in = l == 0 ? x_stage.as<T>() : layer_out[(l - 1) % 2].as<T>();
      T* out = l == L - 1 ? out_stage.as<T>() : layer_out[l % 2].as<T>();
      const int64_t width = config.layer_input_size(l);
      project<T>(blas[0], s.rows, D_ * 4 * H_, width, static_cast<const T*>(layer.w_ih.data()), in, width,
                 gates.as<T>(), D_ * 4 * H_);
      if (D_ == 2) {
        FASTLSTM_CHECK(cudaEventRecord(fork, streams[0]));
        FASTLSTM_CHECK(cudaStreamWaitEvent(streams[1], fork, 0));
      }
      for (int64_t d = 0; d < D_; ++d) {
        T* h = h_state.as<T>() + (l * D_ + d) * s.batch * P_;
        T* c = c_state.as<T>() + (l * D_ + d) * s.batch * H_;
        const T* bias = config.bias ? static_cast<const T*>(layer.bias[d].data()) : nullptr;
        for (int64_t i = 0; i < s.steps; ++i) {
          const int64_t t = d == 0 ? i : s.steps - 1 - i;
          const int64_t rows = s.size(t);
          project<T>(blas[d], rows, 4 * H_, P_, static_cast<const T*>(layer.w_hh[d].data()), h, P_,
                     h_gates[d].as<T>(), 4 * H_);
          const T* x_gates = gates.as<T>() + s.first_row(t, in_major) * D_ * 4 * H_ + d * 4 * H_;
          const int64_t x_gates_stride = s.row_step(in_major) * D_ * 4 * H_;
          T* out_t = out + s.first_row(t, out_major) * D_ * P_ + d * P_;
          const int64_t out_stride = s.row_step(out_major) * D_ * P_;
          if (config.proj_size == 0) {
            lstm_cell_kernel<T><<<blocks_for(rows * H_), kThreadsPerBlock, 0, streams[d]>>>(
                x_gates, x_gates_stride, h_gates[d].as<T>(), bias, c, h, out_t, out_stride, rows, H_);
            FASTLSTM_CHECK(cudaGetLastError());
          } else {
            lstm_cell_kernel<T><<<blocks_for(rows * H_), kThreadsPerBlock, 0, streams[d]>>>(
                x_gates, x_gates_stride, h_gates[d].as<T>(), bias, c, nullptr, h_cell[d].as<T>(), H_, rows, H_);
            FASTLSTM_CHECK(cudaGetLastError());
            project<T>(blas[d], rows, P_, H_, static_cast<const T*>(layer.w_hr[d].data()), h_cell[d].as<T>(), H_, h,
                       P_);
            FASTLSTM_CHECK(cudaMemcpy2DAsync(out_t, sizeof(T) * out_stride, h, sizeof(T) * P_, sizeof(T) * P_, rows,
                                             cudaMemcpyDeviceToDevice, streams[d]));
          }
        }
      }
      if (D_ == 2) {
        FASTLSTM_CHECK(cudaEventRecord(join, streams[1]));
        FASTLSTM_CHECK(cudaStreamWaitEvent(streams[0], join, 0));
      }
    }
  }

  // Runs the time loop: directly on a shape's first run, as a captured graph after that.
  void run(const Shape& s) {
    if (plans.size() >= kMaxPlans && !plans.count(s.key())) {
      drop_graphs();
      plans.clear();
    }
    Plan& plan = plans[s.key()];
    // The first run is direct: it also loads every kernel it uses (lazily loaded modules must not
    // load during a capture).
    if (!options.use_graphs || plan.capture_failed || plan.runs++ == 0) {
      enqueue(s);
      return;
    }
    if (!plan.graph) plan.graph = capture(s);
    if (!plan.graph) {
      plan.capture_failed = true;
      enqueue(s);
      return;
    }
    FASTLSTM_CHECK(cudaGraphLaunch(plan.graph, streams[0]));
    ++graph_launches;
  }

  // The time loop of `s` as an executable graph; nullptr when capturing fails (then it runs
  // directly, as on its first run).
  cudaGraphExec_t capture(const Shape& s) {
    if (cudaStreamBeginCapture(streams[0], cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    cudaGraph_t graph = nullptr;
    bool enqueued = true;
    try {
      enqueue(s);
    } catch (const Error&) {
      enqueued = false;
    }
    const cudaError_t ended = cudaStreamEndCapture(streams[0], &graph);
    cudaGraphExec_t exec = nullptr;
    if (enqueued && ended == cudaSuccess && graph && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) {
      exec = nullptr;
    }
    if (graph) (void)cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    return exec;
  }

  // dst (contiguous, the operand's shape) = the operand, its rows (dim 1) picked by `index`.
  void stage(const Operand<T>& operand, T* dst, Buffer& host_copy, const int64_t* index) {
    const TensorView<const T>& v = operand.view;
    const int64_t count = v.numel();
    if (count == 0) return;
    const T* src = v.data;
    if (operand.memory == Memory::host) {
      if (!is_contiguous(v)) throw InvalidArgument("host operands must be contiguous");
      T* target = index ? host_copy.as<T>() : dst;
      FASTLSTM_CHECK(cudaMemcpyAsync(target, src, sizeof(T) * static_cast<size_t>(count), cudaMemcpyHostToDevice,
                                     streams[0]));
      if (!index) return;
      src = target;
    } else if (!index && is_contiguous(v)) {
      FASTLSTM_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * static_cast<size_t>(count), cudaMemcpyDeviceToDevice,
                                     streams[0]));
      return;
    }
    // Up to rank 3, padded with leading unit dimensions.
    int64_t shape[3] = {1, 1, 1}, strides[3] = {0, 0, 0};
    for (int d = 0; d < v.rank; ++d) {
      shape[3 - v.rank + d] = v.size(d);
      strides[3 - v.rank + d] = operand.memory == Memory::host ? 0 : v.stride(d);
    }
    if (operand.memory == Memory::host) {  // the contiguous copy just made
      strides[2] = 1;
      strides[1] = shape[2];
      strides[0] = shape[1] * shape[2];
    }
    gather_kernel<T><<<blocks_for(count), kThreadsPerBlock, 0, streams[0]>>>(
        src, strides[0], strides[1], strides[2], index, dst, shape[0], shape[1], shape[2]);
    FASTLSTM_CHECK(cudaGetLastError());
  }
};

template <typename T>
CudaLstm<T>::CudaLstm(const LstmConfig& config, const CudaOptions& options) : config_(config), options_(options) {
  config_.validate();
  std::string reason;
  const int count = device_count(&reason);
  if (count == 0) throw Error(reason);
  if (options.device < 0 || options.device >= count) {
    throw InvalidArgument("device: index " + std::to_string(options.device) + " out of range (" +
                          std::to_string(count) + " CUDA device(s))");
  }
  impl_ = std::make_unique<Impl>(config_, options_);
}

template <typename T>
CudaLstm<T>::~CudaLstm() = default;

template <typename T>
uintptr_t CudaLstm<T>::stream_handle() const {
  return reinterpret_cast<uintptr_t>(impl_->streams[0]);
}

template <typename T>
int64_t CudaLstm<T>::graph_launches() {
  std::lock_guard<std::mutex> lock(mutex_);
  return impl_->graph_launches;
}

template <typename T>
void CudaLstm<T>::set_weights(const LstmWeights<T>& weights) {
  if (!weights.config().same_parameters(config_)) throw InvalidArgument("weights: configuration differs from the model's");
  std::lock_guard<std::mutex> lock(mutex_);
  impl_->set_weights(weights);
}

template <typename T>
void CudaLstm<T>::forward(const CudaRequest<T>& request, CudaResult<T>& result) {
  using Shape = typename Impl::Shape;
  const int64_t D = config_.num_directions(), H = config_.hidden_size, P = config_.output_size();
  const int64_t states = D * config_.num_layers;
  const TensorView<const T>& x = request.input.view;

  Shape s;
  s.packed = request.batch_sizes != nullptr;
  if (s.packed) {
    const auto& sizes = *request.batch_sizes;
    if (x.rank != 2 || x.size(1) != config_.input_size) {
      throw InvalidArgument("input: expected packed data (rows, " + std::to_string(config_.input_size) + "), got " +
                            shape_string(x.shape.data(), x.rank));
    }
    if (sizes.empty() || sizes[0] < 1) throw InvalidArgument("batch_sizes: must be non-empty and start >= 1");
    int64_t rows = 0;
    for (size_t t = 0; t < sizes.size(); ++t) {
      if (sizes[t] < 1 || (t > 0 && sizes[t] > sizes[t - 1])) {
        throw InvalidArgument("batch_sizes: must be non-increasing and >= 1");
      }
      s.step_starts.push_back(rows);
      rows += sizes[t];
    }
    if (rows != x.size(0)) {
      throw InvalidArgument("batch_sizes: sum " + std::to_string(rows) + " differs from the data's rows " +
                            std::to_string(x.size(0)));
    }
    s.batch_sizes = sizes;
    s.steps = static_cast<int64_t>(sizes.size());
    s.batch = sizes[0];
    s.rows = rows;
  } else {
    if (x.rank != 3 || x.size(2) != config_.input_size) {
      throw InvalidArgument("input: expected (L, N, " + std::to_string(config_.input_size) + ")" +
                            (config_.batch_first ? " batch-first" : "") + ", got " + shape_string(x.shape.data(), x.rank));
    }
    s.batch_major = config_.batch_first;
    s.steps = config_.batch_first ? x.size(1) : x.size(0);
    s.batch = config_.batch_first ? x.size(0) : x.size(1);
    if (s.steps < 1) throw InvalidArgument("input: the sequence length (L) must be at least 1, got 0");
    s.rows = s.steps * s.batch;
  }
  if (!x.data && x.numel() > 0) throw InvalidArgument("input: null data pointer");
  if ((request.h_0 == nullptr) != (request.c_0 == nullptr)) {
    throw InvalidArgument("hx: h_0 and c_0 must be given together");
  }
  if (request.h_0) {
    check_shape(request.h_0->view, {states, s.batch, P}, "h_0");
    check_shape(request.c_0->view, {states, s.batch, H}, "c_0");
  }
  std::vector<int64_t> order;  // sorted_indices, then their inverse
  if (request.sorted_indices) {
    const auto& sorted = *request.sorted_indices;
    if (static_cast<int64_t>(sorted.size()) != s.batch) {
      throw InvalidArgument("sorted_indices: expected " + std::to_string(s.batch) + " entries, got " +
                            std::to_string(sorted.size()));
    }
    order.assign(static_cast<size_t>(2 * s.batch), -1);
    for (int64_t n = 0; n < s.batch; ++n) {
      const int64_t original = sorted[static_cast<size_t>(n)];
      if (original < 0 || original >= s.batch || order[static_cast<size_t>(s.batch + original)] != -1) {
        throw InvalidArgument("sorted_indices: must be a permutation of 0.." + std::to_string(s.batch - 1));
      }
      order[static_cast<size_t>(n)] = original;
      order[static_cast<size_t>(s.batch + original)] = n;
    }
  }
  const std::vector<int64_t> output_shape =
      s.packed ? std::vector<int64_t>{s.rows, D * P}
               : config_.batch_first ? std::vector<int64_t>{s.batch, s.steps, D * P}
                                     : std::vector<int64_t>{s.steps, s.batch, D * P};

  std::lock_guard<std::mutex> lock(mutex_);
  Impl& impl = *impl_;
  DeviceGuard guard(options_.device);
  cudaStream_t stream = impl.streams[0];
  if (s.batch > 0) {
    impl.reserve(s);
    if (request.producer_stream != 0) {
      cudaStream_t producer = request.producer_stream == 1   ? cudaStreamLegacy
                              : request.producer_stream == 2 ? cudaStreamPerThread
                                                             : reinterpret_cast<cudaStream_t>(request.producer_stream);
      FASTLSTM_CHECK(cudaEventRecord(impl.producer_done, producer));
      FASTLSTM_CHECK(cudaStreamWaitEvent(stream, impl.producer_done, 0));
    }
    const int64_t* sorted = nullptr;
    const int64_t* unsorted = nullptr;
    if (!order.empty()) {
      FASTLSTM_CHECK(cudaMemcpyAsync(impl.indices.template as<int64_t>(), order.data(), sizeof(int64_t) * order.size(),
                                     cudaMemcpyHostToDevice, stream));
      sorted = impl.indices.template as<int64_t>();
      unsorted = sorted + s.batch;
    }
    impl.stage(request.input, impl.x_stage.template as<T>(), impl.h_in, nullptr);
    const size_t h_bytes = sizeof(T) * static_cast<size_t>(states * s.batch * P);
    const size_t c_bytes = sizeof(T) * static_cast<size_t>(states * s.batch * H);
    if (request.h_0) {
      impl.stage(*request.h_0, impl.h_state.template as<T>(), impl.h_in, sorted);
      impl.stage(*request.c_0, impl.c_state.template as<T>(), impl.c_in, sorted);
    } else {
      FASTLSTM_CHECK(cudaMemsetAsync(impl.h_state.template as<T>(), 0, h_bytes, stream));
      FASTLSTM_CHECK(cudaMemsetAsync(impl.c_state.template as<T>(), 0, c_bytes, stream));
    }
    impl.run(s);
    // Final states back in the caller's row order.
    T* h_n = impl.h_state.template as<T>();
    T* c_n = impl.c_state.template as<T>();
    if (unsorted) {
      Operand<T> h_view{TensorView<const T>(h_n, {states, s.batch, P}), Memory::device};
      Operand<T> c_view{TensorView<const T>(c_n, {states, s.batch, H}), Memory::device};
      impl.stage(h_view, impl.h_final.template as<T>(), impl.h_in, unsorted);
      impl.stage(c_view, impl.c_final.template as<T>(), impl.c_in, unsorted);
      h_n = impl.h_final.template as<T>();
      c_n = impl.c_final.template as<T>();
    }
    const size_t out_bytes = sizeof(T) * static_cast<size_t>(s.rows * D * P);
    if (result.to_host) {
      FASTLSTM_CHECK(cudaMemcpyAsync(result.host_output, impl.out_stage.template as<T>(), out_bytes,
                                     cudaMemcpyDeviceToHost, stream));
      FASTLSTM_CHECK(cudaMemcpyAsync(result.host_h_n, h_n, h_bytes, cudaMemcpyDeviceToHost, stream));
      FASTLSTM_CHECK(cudaMemcpyAsync(result.host_c_n, c_n, c_bytes, cudaMemcpyDeviceToHost, stream));
      FASTLSTM_CHECK(cudaStreamSynchronize(stream));
      return;
    }
    DeviceArray<T> output(options_.device, output_shape), h_out(options_.device, {states, s.batch, P}),
        c_out(options_.device, {states, s.batch, H});
    FASTLSTM_CHECK(cudaMemcpyAsync(output.data(), impl.out_stage.template as<T>(), out_bytes,
                                   cudaMemcpyDeviceToDevice, stream));
    FASTLSTM_CHECK(cudaMemcpyAsync(h_out.data(), h_n, h_bytes, cudaMemcpyDeviceToDevice, stream));
    FASTLSTM_CHECK(cudaMemcpyAsync(c_out.data(), c_n, c_bytes, cudaMemcpyDeviceToDevice, stream));
    FASTLSTM_CHECK(cudaStreamSynchronize(stream));
    result.output = std::move(output);
    result.h_n = std::move(h_out);
    result.c_n = std::move(c_out);
    return;
  }
  // N = 0: empty results, nothing to run.
  if (!result.to_host) {
    result.output = DeviceArray<T>(options_.device, output_shape);
    result.h_n = DeviceArray<T>(options_.device, {states, 0, P});
    result.c_n = DeviceArray<T>(options_.device, {states, 0, H});
  }
}

template class DeviceArray<float>;
template class DeviceArray<double>;
template class CudaLstm<float>;
template class CudaLstm<double>;

}  // namespace fastlstm::cuda
