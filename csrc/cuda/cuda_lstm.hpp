#pragma once
// The CUDA engine: torch.nn.LSTM's forward on an NVIDIA GPU, on cuBLAS and fused kernels.
// Declared without CUDA headers so that the Python binding (compiled by the host compiler) only
// converts; everything CUDA lives in cuda_lstm.cu.
//
// Operands are views (pointer, shape, strides in elements) of host or device memory. Results
// come back either into host buffers the caller owns or as DeviceArrays this engine allocates.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fastlstm/config.hpp"
#include "fastlstm/tensor.hpp"
#include "fastlstm/weights.hpp"

namespace fastlstm::cuda {

// Whether CUDA can run here: the number of devices this process sees, or 0 with the reason
// (no driver, no device, a device older than the compiled architectures).
int device_count(std::string* reason = nullptr);
// The device that holds `pointer` (device or managed memory), or -1 for host memory.
int pointer_device(const void* pointer);
// "NVIDIA H100 80GB HBM3 (sm_90)"; throws fastlstm::Error for a bad index.
std::string device_name(int device);

// Device memory, freed with cudaFree (which waits for the device, so that no consumer's stream,
// e.g. torch's after torch.from_dlpack, can still be reading it). Move-only.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(int device, size_t bytes);  // throws std::bad_alloc when the device is out of memory
  ~DeviceMemory();
  DeviceMemory(DeviceMemory&& other) noexcept;
  DeviceMemory& operator=(DeviceMemory&& other) noexcept;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// An owning, contiguous (row-major) array in device memory: what a forward returns on the GPU.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(int device, std::vector<int64_t> shape);
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const;
  T* data() const { return static_cast<T*>(memory_->data()); }
  int device() const { return memory_->device(); }
  // The same memory under another shape with as many elements; throws InvalidArgument otherwise.
  DeviceArray reshaped(std::vector<int64_t> shape) const;
  // Copies the elements into `host` (numel() of them). Throws fastlstm::Error on a CUDA error.
  void copy_to_host(T* host) const;

 private:
  std::vector<int64_t> shape_;
  std::shared_ptr<DeviceMemory> memory_;
};

enum class Memory { host, device };

// An argument: host memory must be row-major contiguous (it is copied to the device in one
// transfer); device memory may have any non-negative strides and is read in place.
template <typename T>
struct Operand {
  TensorView<const T> view;
  Memory memory = Memory::host;
};

template <typename T>
struct CudaRequest {
  // Padded: (L, N, H_in), or (N, L, H_in) with batch_first. Packed: (rows, H_in), the rows of
  // step t after those of step t - 1 (torch's PackedSequence.data).
  Operand<T> input;
  const std::vector<int64_t>* batch_sizes = nullptr;  // packed: non-increasing, sums to rows
  const Operand<T>* h_0 = nullptr;                    // (D * num_layers, N, H_out), or nullptr
  const Operand<T>* c_0 = nullptr;                    // (D * num_layers, N, hidden_size)
  // Packed: h_0/c_0 row n of the sorted batch is the caller's row sorted_indices[n]; h_n/c_n
  // come back in the caller's order. nullptr: the rows are in the caller's order already.
  const std::vector<int64_t>* sorted_indices = nullptr;
  // A CUDA stream (as __cuda_array_interface__ gives it: 1 legacy default, 2 per-thread
  // default, else a cudaStream_t) whose queued work produces the device operands; 0: none.
  uintptr_t producer_stream = 0;
};

// Where results go: host buffers of the right sizes (row-major), or device arrays (allocated).
template <typename T>
struct CudaResult {
  bool to_host = false;
  T* host_output = nullptr;
  T* host_h_n = nullptr;
  T* host_c_n = nullptr;
  DeviceArray<T> output, h_n, c_n;
};

struct CudaOptions {
  int device = 0;
  bool allow_tf32 = false;  // TF32 tensor-core GEMMs: faster on Ampere and later, ~1e-3 accurate
  bool use_graphs = true;   // replay the time loop as a CUDA graph from its second run on
};

// Thread safety: forward and set_weights may be called from many threads; they are serialised
// on the engine's streams and workspace.
template <typename T>
class CudaLstm {
 public:
  // Throws InvalidArgument for an invalid config or device index, fastlstm::Error for CUDA
  // errors (no device, out of memory).
  CudaLstm(const LstmConfig& config, const CudaOptions& options);
  ~CudaLstm();
  CudaLstm(const CudaLstm&) = delete;
  CudaLstm& operator=(const CudaLstm&) = delete;

  const LstmConfig& config() const { return config_; }
  const CudaOptions& options() const { return options_; }
  // The engine's stream (a cudaStream_t), for DLPack producers to order their work before ours.
  uintptr_t stream_handle() const;
  // Forward passes whose time loop ran as a replayed CUDA graph (not directly), so far.
  int64_t graph_launches();

  // Uploads the weights (their config must be this engine's). Throws InvalidArgument otherwise.
  void set_weights(const LstmWeights<T>& weights);

  // Runs a forward pass and waits for it. Throws InvalidArgument naming a wrongly shaped
  // operand, fastlstm::Error for CUDA errors; results are written only on success.
  void forward(const CudaRequest<T>& request, CudaResult<T>& result);

 private:
  struct Impl;
  LstmConfig config_;
  CudaOptions options_;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;
};

extern template class DeviceArray<float>;
extern template class DeviceArray<double>;
extern template class CudaLstm<float>;
extern template class CudaLstm<double>;

}  // namespace fastlstm::cuda
