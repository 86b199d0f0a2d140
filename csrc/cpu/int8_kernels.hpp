#pragma once
// The micro-kernels of int8 products (quantized_weights.hpp), one scheme per instruction set.
// Each multiplies a panel of int8 weights (`Vectors` registers of kLanes rows) by `Cols` columns
// of quantized activations, a group of kGroup depth values per 32-bit lane, accumulating exactly
// in int32, then writes C = base + float(acc) * row_scale * column_scale.
//  - Vnni512 (AVX-512 VNNI): vpdpbusd takes unsigned activations: they are stored as q + 128 and
//    each accumulator starts from -128 * (the row's sum over the depth block), which cancels the
//    offset exactly. Products of u8 and s8 are summed in 32 bits without saturation.
//  - Madd256 (AVX2): vpmaddwd on int16: the weights widened as they load, the activations stored
//    as int16 pairs. Every product and pair sum fits int32: nothing saturates. (vpmaddubsw would
//    saturate its int16 pair sums with u8 activations of 255 and weights of -128: 2 * 255 * 128.)
//  - VnniWide512 (AVX-512 VNNI): vpdpwssd, for 16-bit activations: int16 activation pairs times
//    the weights widened to int16 as they load.
//  - Portable: Madd256's layout in plain C++, for cores without AVX2.
// Activations of 16 bits (|q| <= 32767) times weights of -128 sum to at most 2^31 - 2^16 over a
// depth block of 512: exact in int32 too.
// Scheme interface: Act (a stored activation), kGroup, kLanes, kCols (most columns per kernel),
// kOffset (added to stored activations), available() (the CPU runs it), and
// kernel<Vectors, Cols>(a, b, groups, start, row_scale, column_scale, c, ldc, base, base_ld, rows):
// a: the panel, for each group its rows' kGroup weights; b: for each group, Cols columns' kGroup
// activations; start: each row's initial accumulator (nullptr: 0); base as in simd_gemm.hpp (C
// itself, a bias column with base_ld = 0, or nullptr); only the first `rows` rows are written.
#include <cstdint>
#include <cstring>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastlstm::cpu::int8 {

using Index = std::ptrdiff_t;

inline int32_t load32(const void* p) {
  int32_t value;
  std::memcpy(&value, p, sizeof(value));
  return value;
}

struct Portable {
  using Act = int16_t;
  static constexpr int kGroup = 2;
  static constexpr Index kLanes = 8;
  static constexpr int kCols = 4;
  static constexpr int kOffset = 0;
  static bool available() { return true; }

  template <int Vectors, int Cols>
  static void kernel(const int8_t* a, const Act* b, Index groups, const int32_t* start, const float* row_scale,
                     const float* column_scale, float* c, Index ldc, const float* base, Index base_ld, Index rows) {
    constexpr Index kRows = Vectors * kLanes;
    int32_t acc[Cols][kRows];
    #pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j)
      for (Index r = 0; r < kRows; ++r) acc[j][r] = start ? start[r] : 0;
    for (Index g = 0; g < groups; ++g) {
      const int8_t* panel = a + g * kRows * kGroup;
      const Act* x = b + g * Cols * kGroup;
      #pragma GCC unroll 8
      for (int j = 0; j < Cols; ++j)
        for (Index r = 0; r < kRows; ++r)
          for (int e = 0; e < kGroup; ++e) acc[j][r] += int32_t(panel[r * kGroup + e]) * int32_t(x[j * kGroup + e]);
    }
    #pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j) {
      for (Index r = 0; r < rows; ++r) {
        const float sum = float(acc[j][r]) * (row_scale[r] * column_scale[j]);
        c[j * ldc + r] = base ? base[j * base_ld + r] + sum : sum;
      }
    }
  }
};

#if defined(__AVX2__)
struct Madd256 {
  using Act = int16_t;
  static constexpr int kGroup = 2;
  static constexpr Index kLanes = 8;
  static constexpr int kCols = 3;  // 9 accumulators, 3 weight registers, a broadcast and a product: of AVX2's 16
  static constexpr int kOffset = 0;
  static bool available() { return true; }

  template <int Vectors, int Cols>
  static void kernel(const int8_t* a, const Act* b, Index groups, const int32_t*, const float* row_scale,
                     const float* column_scale, float* c, Index ldc, const float* base, Index base_ld, Index rows) {
    constexpr Index kStep = Vectors * kLanes * kGroup;  // weight bytes per group
    __m256i acc[Cols][Vectors];
    #pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j)
      #pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) acc[j][v] = _mm256_setzero_si256();
    for (Index g = 0; g < groups; ++g) {
      __m256i w[Vectors];
      #pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) {
        w[v] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + g * kStep + v * 16)));
      }
      #pragma GCC unroll 8
      for (int j = 0; j < Cols; ++j) {
        const __m256i x = _mm256_set1_epi32(load32(b + (g * Cols + j) * kGroup));
        #pragma GCC unroll 8
        for (int v = 0; v < Vectors; ++v) acc[j][v] = _mm256_add_epi32(acc[j][v], _mm256_madd_epi16(w[v], x));
      }
    }
    #pragma GCC unroll 8
    for (int v = 0; v < Vectors; ++v) {
      const Index lanes = rows - v * kLanes;
      if (lanes <= 0) break;
      const __m256 scales = _mm256_loadu_ps(row_scale + v * kLanes);
      // Lanes below `lanes` are written; the others belong to someone else, or to no one.
      const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(lanes)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      #pragma GCC unroll 8
      for (int j = 0; j < Cols; ++j) {
        const __m256 sum = _mm256_mul_ps(_mm256_cvtepi32_ps(acc[j][v]), _mm256_mul_ps(scales, _mm256_set1_ps(column_scale[j])));
        float* out = c + j * ldc + v * kLanes;
        const float* in = base ? base + j * base_ld + v * kLanes : nullptr;
        if (lanes >= kLanes) {
          _mm256_storeu_ps(out, in ? _mm256_add_ps(_mm256_loadu_ps(in), sum) : sum);
        } else {
          _mm256_maskstore_ps(out, mask, in ? _mm256_add_ps(_mm256_maskload_ps(in, mask), sum) : sum);
        }
      }
    }
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
// Sets of accumulators a VNNI kernel of `accumulators` registers keeps: with few, the dot
// products' latency (4-5 cycles at 2 a cycle) would bound the loop, so consecutive groups go to
// separate sets, summed at the end.
constexpr int splits(int accumulators) { return accumulators >= 12 ? 1 : accumulators >= 6 ? 2 : 4; }

// acc[0] += acc[1] + ... + acc[Splits - 1].
template <int Splits, int Vectors, int Cols>
inline void sum_splits(__m512i (&acc)[Splits][Cols][Vectors]) {
  #pragma GCC unroll 4
  for (int s = 1; s < Splits; ++s)
    #pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j)
      #pragma GCC unroll 8
      for (int v = 0; v < Vectors; ++v) acc[0][j][v] = _mm512_add_epi32(acc[0][j][v], acc[s][j][v]);
}

// C = base + float(acc) * row_scale * column_scale, the first `rows` rows of the panel.
template <int Vectors, int Cols>
inline void store_scaled512(const __m512i (&acc)[Cols][Vectors], const float* row_scale, const float* column_scale,
                         float* c, Index ldc, const float* base, Index base_ld, Index rows) {
  #pragma GCC unroll 8
  for (int v = 0; v < Vectors; ++v) {
    const Index lanes = rows - v * 16;
    if (lanes <= 0) break;
    const __mmask16 mask = lanes >= 16 ? __mmask16(0xffff) : __mmask16((1u << lanes) - 1u);
    const __m512 scales = _mm512_loadu_ps(row_scale + v * 16);
    #pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j) {
      const __m512 sum = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[j][v]), _mm512_mul_ps(scales, _mm512_set1_ps(column_scale[j])));
      float* out = c + j * ldc + v * 16;
      const float* in = base ? base + j * base_ld + v * 16 : nullptr;
      _mm512_mask_storeu_ps(out, mask, in ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask, in), sum) : sum);
    }
  }
}

// acc += the products of group g (Scheme::kGroup depth values of every row of the panel) with
// each column's activations: Scheme::weights loads a register of them, Scheme::dot multiplies.
template <class Scheme, int Vectors, int Cols>
__attribute__((target("avx512vnni"), always_inline)) inline void vnni_add_group(
    __m512i (&acc)[Cols][Vectors], const int8_t* a, const typename Scheme::Act* b, Index g) {
  constexpr Index kVectorBytes = 16 * Scheme::kGroup, kStep = Vectors * kVectorBytes;  // weight bytes
  __m512i w[Vectors];
  #pragma GCC unroll 8
  for (int v = 0; v < Vectors; ++v) w[v] = Scheme::weights(a + g * kStep + v * kVectorBytes);
  #pragma GCC unroll 8
  for (int j = 0; j < Cols; ++j) {
    const __m512i x = _mm512_set1_epi32(load32(b + (g * Cols + j) * Scheme::kGroup));
    #pragma GCC unroll 8
    for (int v = 0; v < Vectors; ++v) acc[j][v] = Scheme::dot(acc[j][v], x, w[v]);
  }
}

// A VNNI kernel's loop, for Scheme = Vnni512 or VnniWide512: accumulators from `start` (nullptr:
// 0), vnni_add_group for each group of depth values, then C as store_scaled512 writes it.
template <class Scheme, int Vectors, int Cols>
__attribute__((target("avx512vnni"))) inline void vnni_kernel(const int8_t* a, const typename Scheme::Act* b,
                                                              Index groups, const int32_t* start,
                                                              const float* row_scale, const float* column_scale,
                                                              float* c, Index ldc, const float* base, Index base_ld,
                                                              Index rows) {
  constexpr int kSplits = splits(Vectors * Cols);
  __m512i acc[kSplits][Cols][Vectors];
  #pragma GCC unroll 8
  for (int v = 0; v < Vectors; ++v) {
    const __m512i first = start ? _mm512_loadu_si512(start + v * 16) : _mm512_setzero_si512();
    #pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j) {
      acc[0][j][v] = first;
      #pragma GCC unroll 4
      for (int s = 1; s < kSplits; ++s) acc[s][j][v] = _mm512_setzero_si512();
    }
  }
  Index g = 0;
  for (; g + kSplits <= groups; g += kSplits) {
    #pragma GCC unroll 4
    for (int s = 0; s < kSplits; ++s) vnni_add_group<Scheme, Vectors, Cols>(acc[s], a, b, g + s);
  }
  for (; g < groups; ++g) vnni_add_group<Scheme, Vectors, Cols>(acc[0], a, b, g);
  sum_splits<kSplits, Vectors, Cols>(acc);
  store_scaled512<Vectors, Cols>(acc[0], row_scale, column_scale, c, ldc, base, base_ld, rows);
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
struct Vnni512 {
  using Act = uint8_t;
  static constexpr int kGroup = 4;
  static constexpr Index kLanes = 16;
  static constexpr int kCols = 8;  // 24 accumulators, 3 weight registers and a broadcast of the 32
  static constexpr int kOffset = 128;
  static bool available() { return __builtin_cpu_supports("avx512vnni"); }

  template <int Vectors, int Cols>
  static void kernel(const int8_t* a, const Act* b, Index groups, const int32_t* start, const float* row_scale,
                     const float* column_scale, float* c, Index ldc, const float* base, Index base_ld, Index rows) {
    vnni_kernel<Vnni512, Vectors, Cols>(a, b, groups, start, row_scale, column_scale, c, ldc, base, base_ld, rows);
  }

  // A register of weights: 16 rows x 4 depth values; acc += their products with x (u8 x s8).
  __attribute__((target("avx512vnni"), always_inline)) static inline __m512i weights(const int8_t* p) {
    return _mm512_loadu_si512(p);
  }
  __attribute__((target("avx512vnni"), always_inline)) static inline __m512i dot(__m512i acc, __m512i x, __m512i w) {
    return _mm512_dpbusd_epi32(acc, x, w);
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
struct VnniWide512 {
  using Act = int16_t;
  static constexpr int kGroup = 2;
  static constexpr Index kLanes = 16;
  static constexpr int kCols = 8;
  static constexpr int kOffset = 0;
  static bool available() { return __builtin_cpu_supports("avx512vnni"); }

  template <int Vectors, int Cols>
  static void kernel(const int8_t* a, const Act* b, Index groups, const int32_t* start, const float* row_scale,
                     const float* column_scale, float* c, Index ldc, const float* base, Index base_ld, Index rows) {
    vnni_kernel<VnniWide512, Vectors, Cols>(a, b, groups, start, row_scale, column_scale, c, ldc, base, base_ld, rows);
  }

  // A register of weights: 16 rows x 2 depth values, widened to int16; acc += their products
  // with x (s16 x s16).
  __attribute__((target("avx512vnni"), always_inline)) static inline __m512i weights(const int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  __attribute__((target("avx512vnni"), always_inline)) static inline __m512i dot(__m512i acc, __m512i x, __m512i w) {
    return _mm512_dpwssd_epi32(acc, x, w);
  }
};
#endif

}  // namespace fastlstm::cpu::int8
