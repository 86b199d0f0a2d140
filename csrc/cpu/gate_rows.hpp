#pragma once
// The CPU backend's copy of a weight matrix in the gate-interleaved row order (work_split.hpp),
// packed a thread's range of rows at a time. Part of cpu_backend.cpp's translation unit.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "fastlstm/lstm.hpp"
#include "packed_gemm.hpp"

namespace fastlstm::cpu {
namespace {

// A copy of a weight matrix with its rows reordered (the gate-interleaved order), then packed a
// range of rows at a time: its values, or, where the model holds int8 codes, the codes and the
// rows' scales.
template <typename T>
class GateRows {
 public:
  GateRows(int64_t rows, int64_t cols) : rows_(rows), cols_(cols) {}

  // Row `src` of `parameter` as row `dst` of the copy.
  void copy_row(const Parameter<T>& parameter, int64_t src, int64_t dst) {
    if (!parameter.codes.empty()) {
      if (codes_.empty()) {
        codes_.resize(static_cast<size_t>(rows_ * cols_));
        scales_.resize(static_cast<size_t>(rows_));
      }
      std::copy_n(parameter.codes.data() + src * cols_, cols_, codes_.data() + dst * cols_);
      scales_[static_cast<size_t>(dst)] = parameter.scales[static_cast<size_t>(src)];
      return;
    }
    if (values_.empty()) values_.resize(static_cast<size_t>(rows_ * cols_));
    std::copy_n(parameter.values.data() + src * cols_, cols_, values_.data() + dst * cols_);
  }

  // Rows [first, first + count) into `packed`.
  void pack(PackedWeights<T>& packed, int64_t first, int64_t count, int64_t typical_n, WeightFormat format,
            int activation_bits) const {
    if constexpr (std::is_same_v<T, float>) {
      if (!codes_.empty()) {
        packed.pack_codes(codes_.data() + first * cols_, scales_.data() + first, count, cols_, cols_, activation_bits);
        return;
      }
    }
    packed.pack(values_.data() + first * cols_, count, cols_, cols_, typical_n, format, nullptr, activation_bits);
  }

  // Rows [first, first + count) of `parameter` itself (rows in torch's order) into `packed`.
  static void pack_rows(const Parameter<T>& parameter, PackedWeights<T>& packed, int64_t first, int64_t count,
                        int64_t typical_n, WeightFormat format, int activation_bits) {
    const int64_t cols = parameter.spec.shape[1];
    if constexpr (std::is_same_v<T, float>) {
      if (!parameter.codes.empty()) {
        packed.pack_codes(parameter.codes.data() + first * cols, parameter.scales.data() + first, count, cols, cols,
                          activation_bits);
        return;
      }
    }
    packed.pack(parameter.values.data() + first * cols, count, cols, cols, typical_n, format, nullptr, activation_bits);
  }

 private:
  int64_t rows_, cols_;
  AlignedVector<T> values_;
  std::vector<int8_t> codes_;
  std::vector<float> scales_;
};

}  // namespace
}  // namespace fastlstm::cpu
