#pragma once
// CUDA devices, in a build with FASTLSTM_CUDA=ON (this header is installed only then). A model runs
// on a GPU when made with LstmOptions::device = Device::cuda(n); its calls take views of host
// memory or of that device's memory (TensorView::device says which) and return results where the
// input is. Device memory a call reads must be ready once the work queued so far on the legacy
// default stream is: synchronise work on other streams first (synchronize_stream).
#include <cstdint>
#include <string>

#include "fastlstm/device.hpp"
#include "fastlstm/tensor.hpp"

namespace fastlstm::cuda {

// The CUDA devices this process can use; 0, with the reason in `reason`, when it can use none
// (no driver, no device, a device older than the architectures fastlstm is built for).
int device_count(std::string* reason = nullptr);
// "NVIDIA H100 80GB HBM3 (sm_90)". Throws InvalidArgument for an index out of range.
std::string device_name(int device);
// The device that holds `pointer` (device or managed memory), or the CPU for host memory.
Device pointer_device(const void* pointer);
// Waits for the work queued on a CUDA stream, named as __cuda_array_interface__ names one
// (1: the legacy default stream, 2: the per-thread default stream, else a cudaStream_t).
void synchronize_stream(uintptr_t stream);

// A contiguous copy of `from` (contiguous, host memory or a CUDA device) on `device`. Throws
// InvalidArgument for a strided view, Error for a CUDA error, std::bad_alloc when out of memory.
template <typename T>
Tensor<T> copy_to(const TensorView<const T>& from, Device device);

extern template Tensor<float> copy_to<float>(const TensorView<const float>&, Device);
extern template Tensor<double> copy_to<double>(const TensorView<const double>&, Device);

}  // namespace fastlstm::cuda
