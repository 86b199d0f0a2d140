#pragma once
// The LSTM cell update of a gate block: c = sigmoid(f) * c + sigmoid(i) * tanh(g),
// h = sigmoid(o) * tanh(c), on Eigen's vectorised sigmoid and tanh.
#include <Eigen/Core>

#include "work_split.hpp"

namespace fastlstm::cpu {

// The cell update of one gate block for one row: gates hold [i | f | g | o], each `Width` wide
// (Eigen::Dynamic: `width`). Full blocks use the fixed size, which Eigen unrolls into a few
// packets with no loop: this runs N * H / kBlock times per step.
template <typename T, int Width>
inline void update_cell_block(const T* gates, Eigen::Index width, T* cell, T* hidden) {
  using Array = Eigen::Array<T, Width, 1>;
  using ConstMap = Eigen::Map<const Array>;
  Eigen::Map<Array> c(cell, width);
  c = ConstMap(gates + width, width).logistic() * c +
      ConstMap(gates, width).logistic() * ConstMap(gates + 2 * width, width).tanh();
  Eigen::Map<Array>(hidden, width) = ConstMap(gates + 3 * width, width).logistic() * c.tanh();
}

template <typename T>
inline void update_cell(const T* gates, Eigen::Index width, T* cell, T* hidden) {
  if (width == kBlock) {
    update_cell_block<T, static_cast<int>(kBlock)>(gates, width, cell, hidden);
  } else {
    update_cell_block<T, Eigen::Dynamic>(gates, width, cell, hidden);
  }
}

// The same with peepholes (ONNX's LSTM with P): peepholes[0..width) are p_i, and p_f and p_o
// follow at `stride` and 2 * stride: i and f see p * c_{t-1}, o sees p * c_t.
template <typename T, int Width>
inline void update_cell_block_with_peepholes(const T* gates, Eigen::Index width, const T* peepholes, Eigen::Index stride,
                                             T* cell, T* hidden) {
  using Array = Eigen::Array<T, Width, 1>;
  using ConstMap = Eigen::Map<const Array>;
  Eigen::Map<Array> c(cell, width);
  const ConstMap p_i(peepholes, width), p_f(peepholes + stride, width), p_o(peepholes + 2 * stride, width);
  c = (ConstMap(gates + width, width) + p_f * c).logistic() * c +
      (ConstMap(gates, width) + p_i * c).logistic() * ConstMap(gates + 2 * width, width).tanh();
  Eigen::Map<Array>(hidden, width) = (ConstMap(gates + 3 * width, width) + p_o * c).logistic() * c.tanh();
}

template <typename T>
inline void update_cell_with_peepholes(const T* gates, Eigen::Index width, const T* peepholes, Eigen::Index stride,
                                       T* cell, T* hidden) {
  if (width == kBlock) {
    update_cell_block_with_peepholes<T, static_cast<int>(kBlock)>(gates, width, peepholes, stride, cell, hidden);
  } else {
    update_cell_block_with_peepholes<T, Eigen::Dynamic>(gates, width, peepholes, stride, cell, hidden);
  }
}

}  // namespace fastlstm::cpu
