#pragma once
// How the CUDA backend calls the runtime and cuBLAS: every status checked, and the device a call
// needs made current for its scope.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "fastlstm/error.hpp"

namespace fastlstm::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so that the model stays usable
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
  }
}

inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(status));
  }
}

#define FASTLSTM_CUDA_CHECK(call) ::fastlstm::cuda::check((call), #call)

// Makes `device` current for a scope and restores the caller's device after it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    FASTLSTM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) FASTLSTM_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { (void)cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace fastlstm::cuda
