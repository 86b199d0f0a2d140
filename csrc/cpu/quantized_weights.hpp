#pragma once
// int8 products C += A * B with the same contract as the float PackedWeights (simd_gemm.hpp):
// A (the weights, m x k) packed once as int8 with a scale per row; B (the activations, k x n,
// one activation row per column) quantized whenever it is packed: each column b to
// q = rint(b * Levels / max|b|) with the scale max|b| / Levels, Levels = 127 (8 bits) or 32767
// (16 bits, for schemes whose activations are int16) (fastlstm/lstm.hpp, WeightFormat::int8).
// The products accumulate exactly in int32 within a depth block (at most kMaxDepthBlock deep:
// no sum can overflow) and go to float with both scales.
//
// Layout. A is cut into depth blocks of kc_ values, each padded to whole groups of kGroup
// (zero weights); each block into panels of up to 3 vectors of rows (the last one whole vectors,
// zero-padded), stored group by group: for each group, each row's kGroup weights. The packed
// activations start with the n column scales (a multiple of 16 floats), then, per depth block,
// panels of Scheme::kCols columns, group by group: each column's kGroup stored activations.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "huge_pages.hpp"
#include "int8_kernels.hpp"
#include "../weight_format.hpp"

namespace fastlstm::cpu::int8 {

// max|x[d]| over d < n, and whether every x[d] is finite. Vector registers of independent maxima
// (a float reduction the compiler keeps in order, one element at a time, would cost ~1 ns each).
inline float largest_magnitude(const float* x, Index n, bool& finite) {
  Index d = 0;
  float largest = 0.0f;
  finite = true;
#if defined(__AVX512F__)
  __m512 most = _mm512_setzero_ps();
  __mmask16 bad = 0;
  for (; d + 16 <= n; d += 16) {
    const __m512 magnitude = _mm512_abs_ps(_mm512_loadu_ps(x + d));
    bad |= _mm512_cmp_ps_mask(magnitude, _mm512_set1_ps(std::numeric_limits<float>::infinity()), _CMP_NLT_UQ);
    most = _mm512_max_ps(most, magnitude);
  }
  largest = _mm512_reduce_max_ps(most);
  finite = bad == 0;
#elif defined(__AVX2__)
  __m256 most = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f), infinity = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  for (; d + 8 <= n; d += 8) {
    const __m256 magnitude = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + d));
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(magnitude, infinity, _CMP_NLT_UQ));
    most = _mm256_max_ps(most, magnitude);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, most);
  for (float lane : lanes) largest = std::max(largest, lane);
  finite = _mm256_movemask_ps(bad) == 0;
#endif
  for (; d < n; ++d) {
    const float magnitude = std::fabs(x[d]);
    finite = finite && magnitude < std::numeric_limits<float>::infinity();
    largest = std::max(largest, magnitude);
  }
  return largest;
}

// q[d] = x[d] * inverse (a float product) rounded to nearest, ties to even, for d < n, where
// every |x[d] * inverse| <= 32767.
inline void round_products(const float* x, Index n, float inverse, int32_t* q) {
  Index d = 0;
#if defined(__AVX512F__)
  for (; d + 16 <= n; d += 16) {
    _mm512_storeu_si512(q + d, _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + d), _mm512_set1_ps(inverse))));
  }
#elif defined(__AVX2__)
  for (; d + 8 <= n; d += 8) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + d),
                        _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + d), _mm256_set1_ps(inverse))));
  }
#endif
  for (; d < n; ++d) q[d] = static_cast<int32_t>(std::nearbyint(x[d] * inverse));
}

template <class Scheme, int Levels = 127>
class QuantizedWeights {
 public:
  using Act = typename Scheme::Act;
  static_assert(Levels == 127 || (Levels == 32767 && std::is_same_v<Act, int16_t>), "activations of 8 or 16 bits");

  static bool available() { return Scheme::available(); }

  // Packs `a` (m x k, row stride lda), whose row r holds integers times row_scales[r] (nullptr:
  // scales of max|row| / 127, as the engine takes them).
  void pack(const float* a, const float* row_scales, Index m, Index k, Index lda) {
    std::vector<int8_t> codes(static_cast<size_t>(m * k));
    std::vector<float> scales(static_cast<size_t>(m));
    for (Index r = 0; r < m; ++r) {
      const float* values = a + r * lda;
      scales[static_cast<size_t>(r)] = row_scales ? row_scales[r] : weight_format::int8_row_scale(values, k);
      for (Index d = 0; d < k; ++d) codes[static_cast<size_t>(r * k + d)] = weight_format::to_int8(values[d], scales[static_cast<size_t>(r)]);
    }
    pack(codes.data(), scales.data(), m, k, k);
  }

  // Packs the integers `codes` (m x k, row stride ldc) of rows whose scales are row_scales.
  void pack(const int8_t* codes, const float* row_scales, Index m, Index k, Index ldc) {
    m_ = m;
    k_ = k;
    const Index blocks = std::max<Index>(1, (k + kMaxDepthBlock - 1) / kMaxDepthBlock);
    kc_ = std::max<Index>(1, (k + blocks - 1) / blocks);
    padded_depth_ = 0;
    for (Index k2 = 0; k2 < k; k2 += kc_) padded_depth_ += padded(std::min(kc_, k - k2));
    padded_rows_ = (m + kLanes - 1) / kLanes * kLanes;
    panels_.assign(static_cast<size_t>(padded_rows_ * padded_depth_), 0);
    row_scale_.assign(static_cast<size_t>(padded_rows_), 0.0f);
    start_.assign(static_cast<size_t>(padded_rows_ * std::max<Index>(1, blocks)), 0);
    for (Index r = 0; r < m; ++r) {
      const int8_t* row = codes + r * ldc;
      row_scale_[static_cast<size_t>(r)] = row_scales[r];
      Index block_offset = 0;
      for (Index k2 = 0, block = 0; k2 < k; k2 += kc_, ++block) {
        const Index kc = std::min(kc_, k - k2);
        const Index row0 = r / kPanelRows * kPanelRows, height = panel_height(row0);
        int8_t* panel = panels_.data() + block_offset + row0 * padded(kc);
        int32_t sum = 0;
        for (Index d = 0; d < kc; ++d) {
          const int8_t q = row[k2 + d];
          panel[(d / kGroup) * height * kGroup + (r - row0) * kGroup + d % kGroup] = q;
          sum += q;
        }
        start_[static_cast<size_t>(block * padded_rows_ + r)] = -Scheme::kOffset * sum;
        block_offset += padded_rows_ * padded(kc);
      }
    }
  }

  Index rows() const { return m_; }
  Index depth() const { return k_; }
  Index depth_block() const { return kc_; }
  static constexpr Index row_alignment() { return kPanelRows; }
  // Floats to set aside for pack_activations of `n` columns (a multiple of 16).
  Index packed_activations_size(Index n) const {
    const Index bytes = n * padded_depth_ * Index(sizeof(Act));
    return scales_size(n) + (bytes + 63) / 64 * 16 + 16;
  }
  // Floats of the workspace that multiply needs for `n` columns.
  Index workspace_size(Index n) const { return packed_activations_size(std::min(std::max<Index>(n, 1), kMaxColumns)); }

  // B (k x n, column stride ldb) quantized into the layout multiply_rows reads. Weights of the
  // same depth, depth_block() and scheme read the same packing.
  void pack_activations(const float* b, Index ldb, Index n, float* packed) const {
    float* scales = packed;
    Act* out = activations(packed, n);
    alignas(64) int32_t q[kMaxDepthBlock + kGroup];
    for (Index j = 0; j < n; ++j) {
      const float* column = b + j * ldb;
      const auto [scale, inverse] = column_scale(column);
      scales[j] = scale;
      const Index j0 = j / kCols * kCols, cols = std::min<Index>(kCols, n - j0);
      Act* block = out;
      for (Index k2 = 0; k2 < k_; k2 += kc_) {
        const Index kc = std::min(kc_, k_ - k2), kcp = padded(kc);
        quantize(column + k2, kc, kcp, inverse, q);
        // Each group's kGroup values side by side, the groups cols * kGroup apart.
        Act* panel = block + j0 * kcp + (j - j0) * kGroup;
        const Index stride = cols * kGroup;
        for (Index g = 0; g < kcp / kGroup; ++g) {
          Act group[kGroup];
          for (int e = 0; e < kGroup; ++e) group[e] = static_cast<Act>(q[g * kGroup + e] + Scheme::kOffset);
          std::memcpy(panel + g * stride, group, sizeof(group));
        }
        block += n * kcp;
      }
    }
  }
  // B as multiply_rows reads it: always a quantized copy.
  const float* packed_activations(const float* b, Index ldb, Index n, float* packed) const {
    pack_activations(b, ldb, n, packed);
    return packed;
  }

  // C rows [r0, r1) (column stride ldc) += A rows [r0, r1) * B, B packed by pack_activations;
  // r0 and r1 are multiples of row_alignment() (r1 may also be rows()). `then` is a hint this
  // implementation does not use.
  void multiply_rows(const float* packed, Index n, Index r0, Index r1, float* c, Index ldc, Index /*then*/ = -1) const {
    if (r0 >= r1 || n == 0) return;
    multiply_packed(packed, n, r0, r1, c, ldc, c, ldc);
  }

  // C (m x n, column stride ldc) = bias + A * B (k x n, column stride ldb); bias (m) or nullptr.
  // `workspace` holds workspace_size(n) floats. Allocates nothing.
  void multiply(const float* b, Index ldb, Index n, const float* bias, float* c, Index ldc, float* workspace) const {
    if (m_ == 0 || n == 0) return;
    for (Index j2 = 0; j2 < n; j2 += kMaxColumns) {
      const Index nc = std::min(kMaxColumns, n - j2);
      pack_activations(b + j2 * ldb, ldb, nc, workspace);
      multiply_packed(workspace, nc, 0, m_, c + j2 * ldc, ldc, bias, 0);
    }
  }

 private:
  static constexpr int kGroup = Scheme::kGroup;
  static constexpr int kCols = Scheme::kCols;
  static constexpr Index kLanes = Scheme::kLanes;
  static constexpr int kMaxVectors = 3;
  static constexpr Index kPanelRows = kMaxVectors * kLanes;
  static constexpr Index kMaxDepthBlock = 512;  // int32 sums of 512 products of 255 and 128 stay far from 2^31
  static constexpr Index kMaxColumns = 512;     // columns quantized at once by multiply

  static Index padded(Index kc) { return (kc + kGroup - 1) / kGroup * kGroup; }
  static Index scales_size(Index n) { return (n + 15) / 16 * 16; }
  static Act* activations(float* packed, Index n) { return reinterpret_cast<Act*>(packed + scales_size(n)); }
  static const Act* activations(const float* packed, Index n) {
    return reinterpret_cast<const Act*>(packed + scales_size(n));
  }
  Index panel_height(Index row0) const { return std::min(kPanelRows, padded_rows_ - row0); }

  // A column's scale and the factor that quantizes it: max|b| / Levels and Levels / max|b|. A column
  // with a value that is not finite gets the scale NaN (its products are NaN, as in float).
  std::pair<float, float> column_scale(const float* column) const {
    bool finite = true;
    const float largest = largest_magnitude(column, k_, finite);
    if (!finite) return {std::nanf(""), 0.0f};
    if (largest == 0.0f) return {0.0f, 0.0f};
    return {largest / float(Levels), float(Levels) / largest};
  }

  // q[d] = rint(x[d] * inverse) for d < count, 0 up to padded_count. inverse is 0 for a column
  // of zeros or one that is not finite (its scale carries that).
  static void quantize(const float* x, Index count, Index padded_count, float inverse, int32_t* q) {
    if (inverse == 0.0f) {
      std::fill_n(q, padded_count, 0);
      return;
    }
    round_products(x, count, inverse, q);
    for (Index d = count; d < padded_count; ++d) q[d] = 0;
  }

  // C rows [r0, r1) = base + A * B over every depth block (base for the first, C after).
  void multiply_packed(const float* packed, Index n, Index r0, Index r1, float* c, Index ldc, const float* base,
                       Index base_ld) const {
    const float* scales = packed;
    const Act* block_activations = activations(packed, n);
    Index block_offset = 0;
    for (Index k2 = 0, block = 0; k2 < k_; k2 += kc_, ++block) {
      const Index kcp = padded(std::min(kc_, k_ - k2));
      const int8_t* panels = panels_.data() + block_offset;
      const int32_t* start = Scheme::kOffset ? start_.data() + block * padded_rows_ : nullptr;
      // A row panel at a time through every column panel: its weights come from beyond L1 once
      // and are reused from there (column panels outermost would stream every weight once per
      // column panel, from L3 where they exceed L2).
      for (Index row0 = r0; row0 < r1; row0 += kPanelRows) {
        for (Index j = 0; j < n; j += kCols) {
          const Index cols = std::min<Index>(kCols, n - j);
          kernel_for(panel_height(row0) / kLanes, cols)(
              panels + row0 * kcp, block_activations + j * kcp, kcp / kGroup, start ? start + row0 : nullptr,
              row_scale_.data() + row0, scales + j, c + j * ldc + row0, ldc,
              base ? base + j * base_ld + row0 : nullptr, base_ld, std::min(kPanelRows, r1 - row0));
        }
      }
      if (k2 == 0) {
        base = c;
        base_ld = ldc;
      }
      block_activations += n * kcp;
      block_offset += padded_rows_ * kcp;
    }
  }

  using Kernel = void (*)(const int8_t*, const Act*, Index, const int32_t*, const float*, const float*, float*, Index,
                          const float*, Index, Index);
  template <int Vectors, int... Cols>
  static constexpr std::array<Kernel, sizeof...(Cols)> kernels_of(std::integer_sequence<int, Cols...>) {
    return {&Scheme::template kernel<Vectors, Cols + 1>...};
  }
  static Kernel kernel_for(Index vectors, Index cols) {
    static constexpr std::array<std::array<Kernel, kCols>, kMaxVectors> kTable = {
        kernels_of<1>(std::make_integer_sequence<int, kCols>{}), kernels_of<2>(std::make_integer_sequence<int, kCols>{}),
        kernels_of<3>(std::make_integer_sequence<int, kCols>{})};
    return kTable[static_cast<size_t>(vectors - 1)][static_cast<size_t>(cols - 1)];
  }

  Index m_ = 0, k_ = 0, kc_ = 1, padded_depth_ = 0, padded_rows_ = 0;
  PanelVector<int8_t> panels_;
  std::vector<float> row_scale_;  // padded_rows_
  std::vector<int32_t> start_;    // per depth block, padded_rows_: -kOffset * the row's sum
};

}  // namespace fastlstm::cpu::int8
