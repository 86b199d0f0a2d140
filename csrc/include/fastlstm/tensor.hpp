#pragma once
// Non-owning strided views (how callers hand their buffers to fastlstm without a copy) and the
// owning Tensor that fastlstm returns results in. Neither synchronises anything: share one between
// threads only for reading.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace fastlstm {

// A view of at most three dimensions over memory someone else owns. Strides are in elements,
// not bytes, and must be non-negative.
template <typename T>
struct TensorView {
  static constexpr int kMaxRank = 3;

  T* data = nullptr;
  int rank = 0;
  std::array<int64_t, kMaxRank> shape{};
  std::array<int64_t, kMaxRank> strides{};

  TensorView() = default;
  // A contiguous (row-major) view.
  TensorView(T* data_, std::initializer_list<int64_t> shape_) : data(data_), rank(0) {
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
    return view;
  }
};

// An owning, contiguous (row-major), 64-byte-aligned array. Move-only: results are handed over,
// not copied. Construction throws std::bad_alloc when the memory cannot be had; the elements are
// left uninitialised.
template <typename T>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape) : shape_(std::move(shape)) {
    size_t bytes = sizeof(T) * static_cast<size_t>(numel());
    bytes = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    if (bytes == 0) bytes = kAlignment;  // N = 0 still gets a valid, unique pointer
    data_.reset(static_cast<T*>(std::aligned_alloc(kAlignment, bytes)));
    if (!data_) throw std::bad_alloc();
  }

  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t extent : shape_) n *= extent;
    return n;
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  TensorView<T> view() {
    TensorView<T> v;
    v.data = data();
    v.rank = static_cast<int>(shape_.size());
    int64_t stride = 1;
    for (int d = v.rank - 1; d >= 0; --d) {
      v.shape[static_cast<size_t>(d)] = shape_[static_cast<size_t>(d)];
      v.strides[static_cast<size_t>(d)] = stride;
      stride *= shape_[static_cast<size_t>(d)];
    }
    return v;
  }

 private:
  static constexpr size_t kAlignment = 64;
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::vector<int64_t> shape_;
  std::unique_ptr<T, Free> data_;
};

}  // namespace fastlstm
