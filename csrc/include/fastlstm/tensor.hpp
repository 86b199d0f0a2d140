#pragma once
// Non-owning strided views (how callers hand their buffers to fastlstm without a copy) and the
// owning Tensor that fastlstm returns results in, each in host memory or on a device (Device).
// Neither synchronises anything: share one between threads only for reading.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "fastlstm/device.hpp"

namespace fastlstm {

// A view of at most three dimensions over memory someone else owns, on `device` (host memory
// by default). Strides are in elements, not bytes, and must be non-negative.
template <typename T>
struct TensorView {
  static constexpr int kMaxRank = 3;

  T* data = nullptr;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};
  std::array<int64_t, kMaxRank> strides{};
  Device device{};

  TensorView() = default;
  // A contiguous (row-major) view.
  TensorView(T* data_, std::initializer_list<int64_t> shape_, Device device_ = Device::cpu())
      : data(data_), rank(0), device(device_) {
    for (int64_t extent : shape_) shape[static_cast<size_t>(rank++)] = extent;
    int64_t stride = 1;
    for (int d = rank - 1; d >= 0; --d) {
      strides[static_cast<size_t>(d)] = stride;
      stride *= shape[static_cast<size_t>(d)];
    }
  }

  int64_t size(int dim) const { return shape[static_cast<size_t>(dim)]; }
  int64_t stride(int dim) const { return strides[static_cast<size_t>(dim)]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < rank; ++d) n *= shape[static_cast<size_t>(d)];
    return n;
  }
  operator TensorView<const T>() const {
    TensorView<const T> view;
    view.data = data;
    view.rank = rank;
    view.shape = shape;
    view.strides = strides;
    view.device = device;
    return view;
  }
};

// An owning, contiguous (row-major) array. Move-only: results are handed over, not copied.
// In host memory (64-byte aligned) unless a device backend made it; its data() is then device
// memory, which host code must not dereference. The elements are left uninitialised.
template <typename T>
class Tensor {
 public:
  // How memory that a backend allocated is given back.
  using Release = void (*)(T* data, Device device);

  Tensor() = default;
  // Host memory; throws std::bad_alloc when it cannot be had.
  explicit Tensor(std::vector<int64_t> shape) : shape_(std::move(shape)) {
    size_t bytes = sizeof(T) * static_cast<size_t>(numel());
    bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    if (bytes == 0) bytes = kAlignment;  // N = 0 still gets a valid, unique pointer
    data_ = Owned(static_cast<T*>(std::aligned_alloc(kAlignment, bytes)), Free{&free_host, Device::cpu()});
    if (!data_) throw std::bad_alloc();
  }
  // Takes over `data`, memory on `device` of numel(shape) elements, given back with `release`.
  Tensor(std::vector<int64_t> shape, T* data, Device device, Release release)
      : shape_(std::move(shape)), data_(data, Free{release, device}) {}

  const std::vector<int64_t>& shape() const { return shape_; }
  Device device() const { return data_.get_deleter().device; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t extent : shape_) n *= extent;
    return n;
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  TensorView<T> view() { return view_of<T>(data()); }
  TensorView<const T> view() const { return view_of<const T>(data()); }

 private:
  template <typename U>
  TensorView<U> view_of(U* data) const {
    TensorView<U> v;
    v.data = data;
    v.device = device();
    v.rank = static_cast<int>(shape_.size());
    int64_t stride = 1;
    for (int d = v.rank - 1; d >= 0; --d) {
      v.shape[static_cast<size_t>(d)] = shape_[static_cast<size_t>(d)];
      v.strides[static_cast<size_t>(d)] = stride;
      stride *= shape_[static_cast<size_t>(d)];
    }
    return v;
  }

  static constexpr size_t kAlignment = 64;
  static void free_host(T* data, Device) { std::free(data); }
  struct Free {
    Release release = &free_host;
    Device device{};
    void operator()(T* p) const { release(p, device); }
  };
  using Owned = std::unique_ptr<T, Free>;
  std::vector<int64_t> shape_;
  Owned data_;
};

}  // namespace fastlstm
