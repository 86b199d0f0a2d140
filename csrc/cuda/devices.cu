// The public CUDA functions (fastlstm/cuda.hpp): devices, and copies between them and the host.
#include "fastlstm/cuda.hpp"

#ifndef _WIN32
#include <dlfcn.h>
#endif

#include "cuda_calls.hpp"
#include "device_memory.hpp"

namespace fastlstm::cuda {
namespace {

constexpr int kMinComputeCapability = 75;  // the oldest architecture compiled (CMakeLists.txt)

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

template <typename T>
bool is_contiguous(const TensorView<const T>& view) {
  int64_t expected = 1;
  for (int d = view.rank - 1; d >= 0; --d) {
    if (view.size(d) != 1 && view.stride(d) != expected) return false;
    expected *= view.size(d);
  }
  return true;
}

}  // namespace

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

std::string device_name(int device) {
  int count = 0;
  FASTLSTM_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (device < 0 || device >= count) {
    throw InvalidArgument("device: index " + std::to_string(device) + " out of range (" + std::to_string(count) +
                          " CUDA device(s))");
  }
  cudaDeviceProp properties{};
  FASTLSTM_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  return std::string(properties.name) + " (sm_" + std::to_string(properties.major) + std::to_string(properties.minor) + ")";
}

Device pointer_device(const void* pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    (void)cudaGetLastError();
    return Device::cpu();
  }
  const bool on_device = attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
  return on_device ? Device::cuda(attributes.device) : Device::cpu();
}

void synchronize_stream(uintptr_t stream) {
  cudaStream_t handle = stream == 1   ? cudaStreamLegacy
                        : stream == 2 ? cudaStreamPerThread
                                      : reinterpret_cast<cudaStream_t>(stream);
  FASTLSTM_CUDA_CHECK(cudaStreamSynchronize(handle));
}

template <typename T>
Tensor<T> copy_to(const TensorView<const T>& from, Device device) {
  if (!is_contiguous(from)) throw InvalidArgument("copy_to: the view must be contiguous");
  std::vector<int64_t> shape(from.shape.begin(), from.shape.begin() + from.rank);
  Tensor<T> copy = device.is_cpu() ? Tensor<T>(shape) : device_tensor<T>(shape, device.index);
  const int64_t count = from.numel();
  if (count > 0) {
    FASTLSTM_CUDA_CHECK(cudaMemcpy(copy.data(), from.data, sizeof(T) * static_cast<size_t>(count), cudaMemcpyDefault));
  }
  return copy;
}

template Tensor<float> copy_to<float>(const TensorView<const float>&, Device);
template Tensor<double> copy_to<double>(const TensorView<const double>&, Device);

}  // namespace fastlstm::cuda
