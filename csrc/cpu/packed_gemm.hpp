#pragma once
// A weight matrix packed once into the panel layout of Eigen's GEBP micro-kernel, so that the
// products of every call and every time step skip the packing of the weights (which, for the
// recurrent step, would re-read and re-write the whole matrix at every step).
// Include from one translation unit only: it instantiates Eigen's kernels.
#include <algorithm>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "fastlstm/lstm.hpp"
#include "huge_pages.hpp"

#include "formatted_weights.hpp"
#include "quantized_weights.hpp"
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include "simd_gemm.hpp"
#endif

namespace fastlstm::cpu {

template <typename T>
using AlignedVector = std::vector<T, Eigen::aligned_allocator<T>>;

// A (m x k), given row-major (a torch weight: one row per output feature). Computes
// C += A * B, where B (k x n) is column-major (rows of activations) and C (m x n) column-major
// (rows of results): out[r, :m] += x[r, :k] W^T for every activation row r.
template <typename T>
class EigenPackedWeights {
 public:
  using Index = Eigen::Index;

  EigenPackedWeights() = default;

  // Packs `a` (m x k, row stride lda). `typical_n` tunes the cache blocking.
  // The weights' values as they are: a 16-bit format's rounding is the engine's (weight_format).
  void pack(const T* a, Index m, Index k, Index lda, Index typical_n, WeightFormat, const float*, int = 8) {
    pack(a, m, k, lda, typical_n);  // double models hold their own values (the format is native)
  }
  void pack(const T* a, Index m, Index k, Index lda, Index typical_n) {
    m_ = m;
    k_ = k;
    kc_ = k;
    mc_ = m;
    nc_ = std::max<Index>(typical_n, 1);
    Eigen::internal::computeProductBlockingSizes<T, T, 1, Index>(kc_, mc_, nc_, 1);
    kc_ = std::max<Index>(kc_, 1);
    mc_ = std::max<Index>(mc_, 1);
    // Row blocks start at whole micro-panels, so that any range of panels can be multiplied alone.
    if (mc_ < m && mc_ > Traits::mr) mc_ -= mc_ % Traits::mr;
    panels_.resize(static_cast<size_t>(m * k));
    LhsMapper lhs(a, lda);
    PackLhs pack_lhs;
    for (Index k2 = 0; k2 < k; k2 += kc_) {
      const Index kc = std::min(k2 + kc_, k) - k2;
      for (Index i2 = 0; i2 < m; i2 += mc_) {
        const Index mc = std::min(i2 + mc_, m) - i2;
        pack_lhs(panels_.data() + k2 * m + i2 * kc, lhs.getSubMapper(i2, k2), kc, mc);
      }
    }
  }

  Index rows() const { return m_; }
  Index depth() const { return k_; }
  Index depth_block() const { return kc_; }
  // multiply_rows takes row ranges that start at a multiple of this.
  static constexpr Index row_alignment() { return Traits::mr; }
  // Elements to set aside for pack_activations of `n` columns (a multiple of 16: what follows
  // stays 64-byte aligned).
  Index packed_activations_size(Index n) const { return (k_ * n + 15) / 16 * 16 + 16; }
  // Elements of the workspace that multiply needs for `n` columns.
  Index workspace_size(Index n) const { return kc_ * std::min(std::max<Index>(n, 1), nc_) + 64; }

  // B (k x n, column stride ldb) into the panel layout of the micro-kernel, every k-block at once,
  // for multiply_rows. Weights of the same depth and depth_block() read the same packing.
  void pack_activations(const T* b, Index ldb, Index n, T* packed) const {
    RhsMapper rhs(b, ldb);
    PackRhs pack_rhs;
    for (Index k2 = 0; k2 < k_; k2 += kc_) {
      pack_rhs(packed + k2 * n, rhs.getSubMapper(k2, 0), std::min(k2 + kc_, k_) - k2, n);
    }
  }
  // B as multiply_rows reads it: one column is already in that layout (GEBP's panels of a lone
  // column are its k values in order) and is read in place; more are packed into `packed`.
  const T* packed_activations(const T* b, Index ldb, Index n, T* packed) const {
    if (n == 1) return b;
    pack_activations(b, ldb, n, packed);
    return packed;
  }

  // C rows [r0, r1) (column stride ldc) += A rows [r0, r1) * B, B packed by pack_activations;
  // r0 and r1 are multiples of row_alignment() (r1 may also be rows()). Rows of C start at c[0]:
  // the whole of A's rows. `then`: a hint, the row range the caller multiplies next starts at
  // (-1: none); this implementation does not use it.
  void multiply_rows(const T* packed, Index n, Index r0, Index r1, T* c, Index ldc, Index /*then*/ = -1) const {
    if (r0 >= r1 || n == 0) return;
    ResMapper res(c, ldc);
    Gebp gebp;
    for (Index k2 = 0; k2 < k_; k2 += kc_) {
      const Index kc = std::min(k2 + kc_, k_) - k2;
      for (Index i2 = r0 / mc_ * mc_; i2 < r1; i2 += mc_) {
        const Index lo = std::max(r0, i2), hi = std::min({r1, i2 + mc_, m_});
        gebp(res.getSubMapper(lo, 0), panels_.data() + k2 * m_ + i2 * kc + (lo - i2) * kc, packed + k2 * n,
             hi - lo, kc, n, T(1));
      }
    }
  }

  // C (m x n, column stride ldc) = bias + A * B (k x n, column stride ldb), bias (m) added to
  // every column, or none (nullptr). `workspace` holds workspace_size(n) elements. Allocates
  // nothing.
  void multiply(const T* b, Index ldb, Index n, const T* bias, T* c, Index ldc, T* workspace) const {
    if (m_ == 0 || n == 0) return;
    for (Index j = 0; j < n; ++j) {
      if (bias) {
        std::copy_n(bias, m_, c + j * ldc);
      } else {
        std::fill_n(c + j * ldc, m_, T(0));
      }
    }
    // One activation row (n == 1) takes the same path: GEBP's one-column loop over the packed
    // panels streams them as a row-major GEMV would, with no second copy of the weights.
    RhsMapper rhs(b, ldb);
    ResMapper res(c, ldc);
    PackRhs pack_rhs;
    Gebp gebp;
    const Index nc_max = std::min(n, nc_);
    for (Index k2 = 0; k2 < k_; k2 += kc_) {
      const Index kc = std::min(k2 + kc_, k_) - k2;
      for (Index j2 = 0; j2 < n; j2 += nc_max) {
        const Index nc = std::min(j2 + nc_max, n) - j2;
        pack_rhs(workspace, rhs.getSubMapper(k2, j2), kc, nc);
        for (Index i2 = 0; i2 < m_; i2 += mc_) {
          const Index mc = std::min(i2 + mc_, m_) - i2;
          gebp(res.getSubMapper(i2, j2), panels_.data() + k2 * m_ + i2 * kc, workspace, mc, kc, nc, T(1));
        }
      }
    }
  }

 private:
  using Traits = Eigen::internal::gebp_traits<T, T>;
  using LhsMapper = Eigen::internal::const_blas_data_mapper<T, Index, Eigen::RowMajor>;
  using RhsMapper = Eigen::internal::const_blas_data_mapper<T, Index, Eigen::ColMajor>;
  using ResMapper = Eigen::internal::blas_data_mapper<T, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;
  using PackLhs = Eigen::internal::gemm_pack_lhs<T, Index, LhsMapper, Traits::mr, Traits::LhsProgress,
                                                 typename Traits::LhsPacket4Packing, Eigen::RowMajor>;
  using PackRhs = Eigen::internal::gemm_pack_rhs<T, Index, RhsMapper, Traits::nr, Eigen::ColMajor>;
  using Gebp = Eigen::internal::gebp_kernel<T, T, Index, ResMapper, Traits::mr, Traits::nr, false, false>;

  Index m_ = 0, k_ = 0, kc_ = 1, mc_ = 1, nc_ = 1;
  PanelVector<T> panels_;  // GEBP panels: for each k-panel, for each m-block (the only copy kept)
};

// The packed weights the backend uses: a float model's in its weight format (formatted_weights.hpp):
// in the AVX-512 and AVX2 cores fastlstm's own float micro-kernels (simd_gemm.hpp), in the
// baseline core Eigen's; int8 on the instruction set's scheme (int8_kernels.hpp). double runs
// Eigen's kernels over the weights' values.
#if defined(__AVX512F__)
using FloatWeights =
    FormattedWeights<simd::PackedWeights<simd::Avx512, float>, simd::PackedWeights<simd::Avx512, Float16>,
                     simd::PackedWeights<simd::Avx512, BFloat16>, int8::QuantizedWeights<int8::Vnni512>,
                     int8::QuantizedWeights<int8::Madd256>, int8::QuantizedWeights<int8::VnniWide512, 32767>,
                     int8::QuantizedWeights<int8::Madd256, 32767>>;
#elif defined(__AVX2__) && defined(__FMA__)
// Widening 16-bit weights 8 at a time costs more than their bytes save: AVX2 holds them as floats.
using FloatWeights =
    FormattedWeights<simd::PackedWeights<simd::Avx2, float>, simd::PackedWeights<simd::Avx2, float>,
                     simd::PackedWeights<simd::Avx2, float>, int8::QuantizedWeights<int8::Madd256>,
                     int8::QuantizedWeights<int8::Madd256>, int8::QuantizedWeights<int8::Madd256, 32767>,
                     int8::QuantizedWeights<int8::Madd256, 32767>>;
#else
using FloatWeights =
    FormattedWeights<EigenPackedWeights<float>, EigenPackedWeights<float>, EigenPackedWeights<float>,
                     int8::QuantizedWeights<int8::Portable>, int8::QuantizedWeights<int8::Portable>,
                     int8::QuantizedWeights<int8::Portable, 32767>, int8::QuantizedWeights<int8::Portable, 32767>>;
#endif
template <typename T>
using PackedWeights = std::conditional_t<std::is_same_v<T, float>, FloatWeights, EigenPackedWeights<T>>;

}  // namespace fastlstm::cpu
