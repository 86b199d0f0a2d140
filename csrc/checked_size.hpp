#pragma once
// Size arithmetic that cannot wrap. Every size that comes from a caller or a file (extents,
// batch sizes, offsets, element counts) is multiplied and added through these, so a value whose
// product or sum does not fit is an InvalidArgument naming it, never a wrapped number that passes
// a later check. python/fastlstm/_sizes.py mirrors the rule for the sizes Python computes.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fastlstm/error.hpp"

namespace fastlstm {

// `what` names the size in the message; a C string, so that the checks on a stream's every step
// build no message unless one fails.

// The largest element count any buffer may have: 16-byte elements of it still fit in int64, so
// a count that passes here can be turned into bytes (and then into pointer offsets) without a
// further check.
constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 16;

[[noreturn]] inline void size_overflow(const char* what) {
  throw InvalidArgument(std::string(what) + ": size overflows (more than " + std::to_string(kMaxElements) + " elements)");
}

// a * b, at most kMaxElements. Sizes are non-negative: a negative operand is an error too (the
// callers name negative extents first, with their own message).
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0 || (a != 0 && b > kMaxElements / a)) size_overflow(what);
  return a * b;
}

// a + b, at most kMaxElements; non-negative as above.
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0 || a > kMaxElements - b) size_overflow(what);
  return a + b;
}

// The product of non-negative extents, at most kMaxElements.
inline int64_t checked_numel(const std::vector<int64_t>& shape, const char* what) {
  int64_t n = 1;
  for (int64_t extent : shape) n = checked_mul(n, extent, what);
  return n;
}

}  // namespace fastlstm
