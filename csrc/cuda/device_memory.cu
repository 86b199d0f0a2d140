// Device memory (see device_memory.hpp).
#include "device_memory.hpp"

#include <algorithm>
#include <functional>
#include <new>
#include <numeric>
#include <utility>

#include "cuda_calls.hpp"

namespace fastlstm::cuda {
namespace {

void* allocate(int device, size_t bytes) {
  DeviceGuard guard(device);
  void* data = nullptr;
  const cudaError_t status = cudaMalloc(&data, std::max<size_t>(bytes, 1));
  if (status == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    throw std::bad_alloc();
  }
  check(status, "cudaMalloc");
  return data;
}

// Frees on the device that holds `data`, leaving the caller's current device as it was.
void free_on(int device, void* data) noexcept {
  int previous = 0;
  const bool switch_device = cudaGetDevice(&previous) == cudaSuccess && previous != device;
  if (switch_device) (void)cudaSetDevice(device);
  (void)cudaFree(data);
  if (switch_device) (void)cudaSetDevice(previous);
}

template <typename T>
void release_tensor(T* data, Device device) {
  free_on(device.index, data);
}

}  // namespace

DeviceMemory::DeviceMemory(int device, size_t bytes) : data_(allocate(device, bytes)), bytes_(bytes), device_(device) {}

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
  free_on(device_, data_);
  data_ = nullptr;
  bytes_ = 0;
}

bool Buffer::reserve(int device, size_t bytes) {
  if (memory_.data() && bytes <= memory_.bytes()) return false;
  memory_ = DeviceMemory();  // the old buffer goes first: both may not fit
  memory_ = DeviceMemory(device, std::max<size_t>(bytes, 256));
  return true;
}

template <typename T>
Tensor<T> device_tensor(std::vector<int64_t> shape, int device) {
  const int64_t count = std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
  T* data = static_cast<T*>(allocate(device, sizeof(T) * static_cast<size_t>(count)));
  return Tensor<T>(std::move(shape), data, Device::cuda(device), &release_tensor<T>);
}

template Tensor<float> device_tensor<float>(std::vector<int64_t>, int);
template Tensor<double> device_tensor<double>(std::vector<int64_t>, int);

}  // namespace fastlstm::cuda
