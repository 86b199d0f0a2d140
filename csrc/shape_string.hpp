#pragma once
// Shapes in error messages, written as Python writes tuples: (2, 3), (4,).
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "fastlstm/tensor.hpp"

namespace fastlstm {

inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t d = 0; d < shape.size(); ++d) out << (d ? ", " : "") << shape[d];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

template <typename T>
std::string shape_string(const TensorView<T>& view) {
  return shape_string(std::vector<int64_t>(view.shape.begin(), view.shape.begin() + view.rank));
}

}  // namespace fastlstm
