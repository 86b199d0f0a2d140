#pragma once
// The 16-bit formats in which the float kernels (simd_gemm.hpp) can hold weights: IEEE half
// precision (float16) and bfloat16, stored as their bit patterns. Each converts from float with
// round-to-nearest-even (bfloat16 as weight_format.hpp does; float16 through F16C, which every
// AVX2 core has, bit for bit as weight_format.hpp does, tested) and back exactly.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <immintrin.h>

#include "../weight_format.hpp"

namespace fastlstm::cpu {

struct BFloat16 {
  uint16_t bits;

  static BFloat16 from_float(float value) { return {weight_format::to_bfloat16(value)}; }
  float to_float() const { return weight_format::from_bfloat16(bits); }
};

#if defined(__F16C__)
struct Float16 {
  uint16_t bits;

  static Float16 from_float(float value) { return {_cvtss_sh(value, _MM_FROUND_TO_NEAREST_INT)}; }
  float to_float() const { return _cvtsh_ss(bits); }
};
#endif

// A weight of type W from a float: itself for float, rounded for the 16-bit formats.
template <typename W>
W to_weight(float value) {
  if constexpr (std::is_same_v<W, float>) {
    return value;
  } else {
    return W::from_float(value);
  }
}

}  // namespace fastlstm::cpu
