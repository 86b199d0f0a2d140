#pragma once
// Device memory the CUDA backend owns: raw allocations, workspace buffers that grow, and Tensors
// on a device (results and stream states).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastlstm/tensor.hpp"

namespace fastlstm::cuda {

// Memory on one device, freed with cudaFree (which waits for the device, so that no consumer's
// stream, e.g. torch's after torch.from_dlpack, can still be reading it). Move-only.
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
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

// A workspace buffer that grows on demand.
class Buffer {
 public:
  template <typename T>
  T* as() const {
    return memory_.as<T>();
  }
  // At least `bytes`; true when the buffer moved (what was captured over it is stale).
  bool reserve(int device, size_t bytes);

 private:
  DeviceMemory memory_;
};

// A contiguous, uninitialised Tensor on `device`.
template <typename T>
Tensor<T> device_tensor(std::vector<int64_t> shape, int device);

}  // namespace fastlstm::cuda
