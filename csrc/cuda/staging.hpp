#pragma once
// How the CUDA backend moves operands between the caller's memory (host, or its device, any
// strides) and its own contiguous buffers, in the order of one stream. Included by
// cuda_backend.cu only: what it defines keeps internal linkage.
#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "cuda_calls.hpp"
#include "device_memory.hpp"
#include "fastlstm/tensor.hpp"
#include "kernels.cuh"

namespace fastlstm::cuda {
namespace {

// An operand of up to three dimensions (leading ones padded with extent 1), strides in elements,
// in host memory or on the backend's device.
template <typename T>
struct Strided {
  const T* data = nullptr;
  Device device{};
  std::array<int64_t, 3> shape{1, 1, 1};
  std::array<int64_t, 3> strides{0, 0, 0};

  static Strided of(const TensorView<const T>& view) {
    Strided s{view.data, view.device};
    for (int d = 0; d < view.rank; ++d) {
      s.shape[static_cast<size_t>(3 - view.rank + d)] = view.size(d);
      s.strides[static_cast<size_t>(3 - view.rank + d)] = view.stride(d);
    }
    return s;
  }
  static Strided contiguous(const T* data, Device device, std::array<int64_t, 3> shape) {
    return Strided{data, device, shape, {shape[1] * shape[2], shape[2], 1}};
  }
  int64_t count() const { return shape[0] * shape[1] * shape[2]; }
  // The elements from the first to the last, both included (count() > 0).
  int64_t span() const {
    int64_t last = 0;
    for (size_t d = 0; d < 3; ++d) last += (shape[d] - 1) * strides[d];
    return last + 1;
  }
  bool is_contiguous() const {
    int64_t expected = 1;
    for (int d = 2; d >= 0; --d) {
      if (shape[static_cast<size_t>(d)] != 1 && strides[static_cast<size_t>(d)] != expected) return false;
      expected *= shape[static_cast<size_t>(d)];
    }
    return true;
  }
};

template <typename T>
class Stager {
 public:
  Stager() = default;
  Stager(int device, cudaStream_t stream) : device_(device), stream_(stream) {}

  // dst (contiguous, the operand's shape, on the device) = the operand, its rows (dimension 1)
  // picked by `index` when given. Host memory goes over in one transfer of the span it covers,
  // through `host_copy` unless it is contiguous and needs no picking.
  void stage(const Strided<T>& from, T* dst, Buffer& host_copy, const int64_t* index) {
    const int64_t count = from.count();
    if (count == 0) return;
    Strided<T> source = from;
    if (from.device.is_cpu()) {
      if (!index && from.is_contiguous()) return copy(dst, from.data, count, cudaMemcpyHostToDevice);
      host_copy.reserve(device_, bytes(from.span()));
      copy(host_copy.as<T>(), from.data, from.span(), cudaMemcpyHostToDevice);
      source.data = host_copy.as<T>();
    }
    if (!index && source.is_contiguous()) return copy(dst, source.data, count, cudaMemcpyDeviceToDevice);
    gather(source, index, dst);
  }

  // dst (contiguous; host memory when to_host, else the device) = `from` on the device, its rows
  // picked by `index` when given; strided reads go through `staging` on their way to the host.
  void unstage(const Strided<T>& from, T* dst, bool to_host, Buffer& staging, const int64_t* index = nullptr) {
    const int64_t count = from.count();
    if (count == 0) return;
    if (!index && from.is_contiguous()) return copy(dst, from.data, count, cudaMemcpyDefault);
    T* target = dst;
    if (to_host) {
      staging.reserve(device_, bytes(count));
      target = staging.as<T>();
    }
    gather(from, index, target);
    if (to_host) copy(dst, target, count, cudaMemcpyDeviceToHost);
  }

 private:
  static size_t bytes(int64_t count) { return sizeof(T) * static_cast<size_t>(count); }

  void copy(T* dst, const T* src, int64_t count, cudaMemcpyKind kind) {
    FASTLSTM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes(count), kind, stream_));
  }

  void gather(const Strided<T>& from, const int64_t* index, T* dst) {
    gather_kernel<T><<<blocks_for(from.count()), kThreadsPerBlock, 0, stream_>>>(
        from.data, from.strides[0], from.strides[1], from.strides[2], index, dst, from.shape[0], from.shape[1],
        from.shape[2]);
    FASTLSTM_CUDA_CHECK(cudaGetLastError());
  }

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace
}  // namespace fastlstm::cuda
