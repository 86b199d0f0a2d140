#pragma once
// The 16-bit weight formats' rounding, portable (no F16C), for every core: float to float16 or
// bfloat16 bits, round to nearest with ties to even, and back exactly. The SIMD kernels' own
// conversions (cpu/weight_types.hpp) agree with these bit for bit (tested).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "fastlstm/lstm.hpp"

namespace fastlstm::weight_format {

inline uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

inline uint16_t to_float16(float value) {
  const uint32_t x = bits_of(value);
  const uint32_t sign = (x >> 16) & 0x8000u, magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (magnitude >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // 2^16 and beyond: infinity
  if (magnitude >= 0x38800000u) {  // the normal numbers, from 2^-14: rebias, drop 13 bits to nearest even
    uint32_t h = magnitude - 0x38000000u;
    h = (h + 0x0fffu + ((h >> 13) & 1u)) >> 13;
    return static_cast<uint16_t>(sign | (h >= 0x7c00u ? 0x7c00u : h));  // [65520, 65536) round to infinity
  }
  // Subnormal: a multiple of 2^-24, which is 0.5f's ulp: adding 0.5 rounds to it, ties to even.
  const uint32_t m = bits_of(float_of(magnitude) + 0.5f) - 0x3f000000u;
  return static_cast<uint16_t>(sign | m);
}

inline float from_float16(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return float_of(sign | 0x7f800000u | (mantissa << 13));  // infinity, NaN
  if (exponent == 0) {  // zero, subnormal: mantissa * 2^-24
    const float magnitude = float(mantissa) * 5.9604644775390625e-08f;
    return sign ? -magnitude : magnitude;
  }
  return float_of(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline uint16_t to_bfloat16(float value) {
  uint32_t x = bits_of(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // a quiet NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

inline float from_bfloat16(uint16_t b) { return float_of(uint32_t(b) << 16); }

// `value` as a 16-bit format holds it (int8 rounds whole rows: round_int8_row).
inline float round(float value, WeightFormat format) {
  switch (format) {
    case WeightFormat::float16: return from_float16(to_float16(value));
    case WeightFormat::bfloat16: return from_bfloat16(to_bfloat16(value));
    case WeightFormat::native:
    case WeightFormat::int8: break;
  }
  return value;
}

// int8: the scale of a row of n finite weights, max|row| / 127 rounded up to 17 significant
// bits, so that q * scale is an exact float for every |q| <= 127 and a row rounded once rounds
// to itself again (its largest weight is then 127 * scale exactly). 0 for a row of zeros.
inline float int8_row_scale(const float* row, int64_t n) {
  float largest = 0.0f;
  for (int64_t k = 0; k < n; ++k) largest = std::max(largest, std::fabs(row[k]));
  uint32_t bits = bits_of(largest / 127.0f);
  if (bits & 0x7fu) bits = (bits | 0x7fu) + 1u;  // round up: |row| / scale stays <= 127
  return float_of(bits);
}

// The integer that holds `value` in a row of `scale`: round(value / scale) (to nearest, ties to
// even), within [-128, 127]; 0 where the scale is 0.
inline int8_t to_int8(float value, float scale) {
  if (scale == 0.0f) return 0;
  return static_cast<int8_t>(std::clamp(std::nearbyint(value / scale), -128.0f, 127.0f));
}

// A row's values as int8 holds them with `scale`: to_int8(value, scale) * scale.
inline void round_int8_row(float* row, int64_t n, float scale) {
  for (int64_t k = 0; k < n; ++k) row[k] = float(to_int8(row[k], scale)) * scale;
}

}  // namespace fastlstm::weight_format
