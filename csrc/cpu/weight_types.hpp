#pragma once
// The 16-bit formats in which the float kernels (simd_gemm.hpp) can hold weights: IEEE half
// precision (float16) and bfloat16, stored as their bit patterns. Each converts from float with
// round-to-nearest-even (float16 through F16C, which every AVX2 core has) and back exactly.
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <immintrin.h>

namespace fastlstm::cpu {

struct BFloat16 {
  uint16_t bits;

  static BFloat16 from_float(float value) {
    uint32_t x;
    std::memcpy(&x, &value, sizeof(x));
    if ((x & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((x >> 16) | 0x40u)};  // a quiet NaN
    x += 0x7fffu + ((x >> 16) & 1u);  // to nearest, ties to even
    return {static_cast<uint16_t>(x >> 16)};
  }
  float to_float() const {
    const uint32_t x = uint32_t(bits) << 16;
    float value;
    std::memcpy(&value, &x, sizeof(value));
    return value;
  }
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
