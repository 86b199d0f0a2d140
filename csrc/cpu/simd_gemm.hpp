#pragma once
// Float products C += A * B with A (the weights) packed once, on AVX-512 or AVX2 + FMA, the weights
// held as float or in a 16-bit format (weight_types.hpp: converted to float as they load). Same
// contract as the Eigen-based PackedWeights in packed_gemm.hpp, which it replaces for float in the
// AVX-512 and AVX2 cores. On AVX-512 the micro-kernel is 48 x 8 (24 accumulators of the 32
// registers), so that every weight vector loaded from cache feeds 8 FMAs where Eigen's 48 x 4 feeds
// 4 (BENCHMARKS.md has the rates). With AVX2's 16 registers the panel is Eigen's
// own shape (24 x 4: 12 accumulators), but column counts that are not a multiple of 4 (the
// shrinking batch of packed input) keep whole-panel kernels, where Eigen's GEBP falls back to one
// column at a time.
//
// Layout. A (m x k, row-major) is cut into depth blocks of at most kMaxDepthBlock; each block
// into panels of up to 3 vectors of rows (the last one 1, 2 or 3 vectors, zero-padded) stored
// k-major: panel p of depth block [k2, k2 + kc) holds, for each k, its rows' values. B (the
// activations, k x n, column-major: one activation row per column) is packed per call into
// panels of Isa::kCols columns (the last one narrower), k-major, per depth block.
// Include from one translation unit only, compiled with the instruction set's flags.
#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include <Eigen/Core>
#include <immintrin.h>

#include "huge_pages.hpp"
#include "weight_types.hpp"

namespace fastlstm::cpu::simd {

using Index = Eigen::Index;

// The panel shape and tuning of each instruction set. The arithmetic is Eigen's packet math on
// the instruction set's float packet.
#if defined(__AVX512F__)
// 16 floats per register, 32 registers: 3 x 8 accumulators.
struct Avx512 {
  using Packet = Eigen::internal::Packet16f;       // rows of A
  using Mask = uint16_t;                           // a packet's lanes
  using ColumnPacket = Eigen::internal::Packet8f;  // kCols floats: the transposes that pack B
  static constexpr Index kLanes = 16;
  static constexpr int kCols = 8;
  static constexpr Index kRowBlockBytes = 512 * 1024;  // the A rows multiplied together stay in L2
  static constexpr bool kPrefetchStreams = false;      // a 2 MB L2 holds what streams: prefetch only adds loads

  // A register of weights from an aligned panel: 16 floats, or 16 16-bit values widened.
  static Packet load(const float* p) { return Eigen::internal::pload<Packet>(p); }
  static Packet load(const Float16* p) { return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p))); }
  static Packet load(const BFloat16* p) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
};
#endif

#if defined(__AVX2__) && defined(__FMA__)
// 8 floats per register, 16 registers: 3 x 4 accumulators, 3 rows and a broadcast.
struct Avx2 {
  using Packet = Eigen::internal::Packet8f;
  using Mask = uint8_t;
  using ColumnPacket = Eigen::internal::Packet4f;
  static constexpr Index kLanes = 8;
  static constexpr int kCols = 4;
  static constexpr Index kRowBlockBytes = 256 * 1024;  // half of Zen 3's L2
  static constexpr bool kPrefetchStreams = true;       // a 512 KB L2 does not: streams come from L3

  // A register of weights from an aligned panel: 8 floats, or 8 16-bit values widened.
  static Packet load(const float* p) { return Eigen::internal::pload<Packet>(p); }
  static Packet load(const Float16* p) { return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(p))); }
  static Packet load(const BFloat16* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
};
#endif

constexpr int kMaxVectors = 3;               // registers of rows per micro-kernel
constexpr Index kMaxDepthBlock = 512;        // a B panel (kc x kCols) stays in L1
// Weights beyond this many bytes are assumed not to be in L2 when a product starts: its first
// pass over them prefetches ahead, where there are enough columns to make the pass compute-bound.
// With fewer the loads stream; they prefetch where Isa::kPrefetchStreams says so and the weights
// exceed half the core's L2, so come from L3 at every step (where they fit, prefetching them only
// adds loads).
constexpr Index kPrefetchMinBytes = 256 * 1024;
constexpr Index kPrefetchMinColumns = 4;
constexpr Index kPrefetchAheadBytes = 24 * 48 * 4;  // ~300 cycles of either full float panel
constexpr Index kCacheLine = 64;
// A product of at least this many column panels over such weights takes a row panel at a time
// through all its columns and prefetches the next panel meanwhile (PackedWeights::multiply_spread).
constexpr Index kSpreadMinPanels = 3;

// How a micro-kernel prefetches weights.
enum class Prefetch {
  kNone,
  kAhead,  // its own panel, kPrefetchAhead floats ahead, into L1: the pass that brings it from L3
  kNext,   // a share of the panel multiplied next, into L2, a few floats at every depth step
};

// acc[j][v] += a[k] * b[k][j] for k < kc: `Vectors` registers of rows, `Cols` columns; then
// C (column stride ldc) = base + acc for the first `rows` rows (the panel's other rows belong to
// someone else, or to no one), where base is C itself (base_ld = ldc), one column shared by all
// (base_ld = 0: a bias) or zero (base = nullptr). Prefetch::kNext prefetches the line at
// next + k * next_step at depth step k. W: the weights' type (float, Float16, BFloat16).
template <class Isa, typename W, int Vectors, int Cols, Prefetch Mode>
inline void micro_kernel(const W* a, const float* b, Index kc, float* c, Index ldc, const float* base,
                         Index base_ld, Index rows, const W* next, Index next_step) {
  namespace ei = Eigen::internal;
  using Packet = typename Isa::Packet;
  constexpr Index kLanes = Isa::kLanes, kStep = Vectors * kLanes;  // weights of A per depth step
  // With few accumulators the FMA latency (4 cycles, 2 per cycle) would bound the loop: even
  // and odd k then go to separate accumulators.
  constexpr int kSplits = Vectors * Cols < 8 ? 2 : 1;
  Packet acc[kSplits][Cols][Vectors];
  for (int s = 0; s < kSplits; ++s)
    for (int j = 0; j < Cols; ++j)
      for (int v = 0; v < Vectors; ++v) acc[s][j][v] = ei::pset1<Packet>(0.0f);
  auto step = [&](int s, Index k) {
    const W* panel = a + k * kStep;
    if constexpr (Mode == Prefetch::kNext) {
      _mm_prefetch(reinterpret_cast<const char*>(next + k * next_step), _MM_HINT_T1);
    }
    if constexpr (Mode == Prefetch::kAhead) {
      // A cache line per 64 bytes of the step, far enough ahead to cover a trip to L3; past the
      // panel's end it reaches the next panel, the next one this pass multiplies.
      constexpr Index kLineWeights = kCacheLine / Index(sizeof(W)), kAhead = kPrefetchAheadBytes / Index(sizeof(W));
      for (Index offset = 0; offset < kStep; offset += kLineWeights) {
        _mm_prefetch(reinterpret_cast<const char*>(panel + offset + kAhead), _MM_HINT_T0);
      }
    }
    Packet row[Vectors];
    for (int v = 0; v < Vectors; ++v) row[v] = Isa::load(panel + v * kLanes);
    for (int j = 0; j < Cols; ++j) {
      const Packet x = ei::pset1<Packet>(b[k * Cols + j]);
      for (int v = 0; v < Vectors; ++v) acc[s][j][v] = ei::pmadd(row[v], x, acc[s][j][v]);
    }
  };
  Index k = 0;
  for (; k + kSplits <= kc; k += kSplits) {
    for (int s = 0; s < kSplits; ++s) step(s, k + s);
  }
  for (; k < kc; ++k) step(0, k);
  for (int v = 0; v < Vectors; ++v) {
    const Index lanes = std::clamp<Index>(rows - v * kLanes, 0, kLanes);
    if (lanes == 0) break;
    for (int j = 0; j < Cols; ++j) {
      Packet sum = acc[0][j][v];
      if constexpr (kSplits == 2) sum = ei::padd(sum, acc[1][j][v]);
      float* out = c + j * ldc + v * kLanes;
      const float* in = base + j * base_ld + v * kLanes;
      if (lanes == kLanes) {
        ei::pstoreu(out, base ? ei::padd(ei::ploadu<Packet>(in), sum) : sum);
      } else {
        const auto mask = static_cast<typename Isa::Mask>((1u << lanes) - 1u);
        ei::pstoreu(out, base ? ei::padd(ei::ploadu<Packet>(in, mask), sum) : sum, mask);
      }
    }
  }
}

template <typename W>
using MicroKernel = void (*)(const W*, const float*, Index, float*, Index, const float*, Index, Index, const W*,
                             Index);

template <class Isa, typename W, Prefetch Mode, int Vectors, int... Cols>
constexpr auto kernels_for(std::integer_sequence<int, Cols...>) {
  return std::array<MicroKernel<W>, sizeof...(Cols)>{&micro_kernel<Isa, W, Vectors, Cols + 1, Mode>...};
}

// kernels[vectors - 1][cols - 1]
template <class Isa, typename W, Prefetch Mode, int... Vectors>
constexpr auto kernel_table(std::integer_sequence<int, Vectors...>) {
  return std::array<std::array<MicroKernel<W>, Isa::kCols>, sizeof...(Vectors)>{
      kernels_for<Isa, W, Mode, Vectors + 1>(std::make_integer_sequence<int, Isa::kCols>{})...};
}

template <class Isa, typename W, Prefetch Mode>
struct KernelTable {
  static constexpr auto kernels = kernel_table<Isa, W, Mode>(std::make_integer_sequence<int, kMaxVectors>{});
};

// The micro-kernel for a panel of `vectors` registers of rows and `cols` columns (1..kCols).
template <class Isa, typename W>
MicroKernel<W> micro_kernel_for(Index vectors, Index cols, Prefetch mode) {
  const auto& table = mode == Prefetch::kAhead  ? KernelTable<Isa, W, Prefetch::kAhead>::kernels
                      : mode == Prefetch::kNext ? KernelTable<Isa, W, Prefetch::kNext>::kernels
                                                : KernelTable<Isa, W, Prefetch::kNone>::kernels;
  return table[static_cast<size_t>(vectors - 1)][static_cast<size_t>(cols - 1)];
}

// `Cols` columns of B (column stride ldb), depth [0, kc), into one k-major panel:
// out[k * Cols + j], a Cols x Cols transpose at a time (Packet: Cols floats).
template <typename Packet, int Cols>
inline void pack_columns(const float* b, Index ldb, Index kc, float* out) {
  namespace ei = Eigen::internal;
  Index k = 0;
  for (; k + Cols <= kc; k += Cols) {
    ei::PacketBlock<Packet, Cols> block;
    for (int j = 0; j < Cols; ++j) block.packet[j] = ei::ploadu<Packet>(b + j * ldb + k);
    ei::ptranspose(block);
    for (int j = 0; j < Cols; ++j) ei::pstoreu(out + (k + j) * Cols, block.packet[j]);
  }
  for (; k < kc; ++k)
    for (int j = 0; j < Cols; ++j) out[k * Cols + j] = b[j * ldb + k];
}

// W: how the packed weights are held (float, or a 16-bit format rounded from the floats packed).
template <class Isa, typename W = float>
class PackedWeights {
 public:
  PackedWeights() = default;

  // Packs `a` (m x k, row stride lda). The blocking does not depend on the activations' count.
  void pack(const float* a, Index m, Index k, Index lda, Index /*typical_n*/) {
    m_ = m;
    k_ = k;
    const Index blocks = std::max<Index>(1, (k + kMaxDepthBlock - 1) / kMaxDepthBlock);
    kc_ = std::max<Index>(1, (k + blocks - 1) / blocks);
    padded_rows_ = (m + kLanes - 1) / kLanes * kLanes;
    const Index bytes = padded_rows_ * k * Index(sizeof(W));
    prefetch_many_ = bytes >= kPrefetchMinBytes;
    prefetch_few_ = Isa::kPrefetchStreams && bytes >= static_cast<Index>(Eigen::l2CacheSize()) / 2;
    panels_.assign(static_cast<size_t>(padded_rows_ * k), to_weight<W>(0.0f));
    for (Index k2 = 0; k2 < k; k2 += kc_) {
      const Index kc = std::min(kc_, k - k2);
      for (Index row0 = 0; row0 < m; row0 += kPanelRows) {
        const Index height = panel_height(row0);
        W* panel = panels_.data() + k2 * padded_rows_ + row0 * kc;
        for (Index r = 0; r < std::min(kPanelRows, m - row0); ++r)
          for (Index d = 0; d < kc; ++d) panel[d * height + r] = to_weight<W>(a[(row0 + r) * lda + k2 + d]);
      }
    }
  }

  Index rows() const { return m_; }
  Index depth() const { return k_; }
  Index depth_block() const { return kc_; }
  // multiply_rows takes row ranges that start at a multiple of this.
  static constexpr Index row_alignment() { return kPanelRows; }
  // Elements to set aside for pack_activations of `n` columns (a multiple of 16: what follows
  // stays 64-byte aligned).
  Index packed_activations_size(Index n) const { return (k_ * n + 15) / 16 * 16 + 16; }
  // Elements of the workspace that multiply needs for `n` columns.
  Index workspace_size(Index n) const { return kc_ * std::min(std::max<Index>(n, 1), kMaxColumns) + 16; }

  // B (k x n, column stride ldb) into panels for multiply_rows, every depth block at once.
  // Weights of the same depth and depth_block() read the same packing.
  void pack_activations(const float* b, Index ldb, Index n, float* packed) const {
    for (Index k2 = 0; k2 < k_; k2 += kc_) pack_block(b + k2, ldb, n, std::min(kc_, k_ - k2), packed + k2 * n);
  }
  // B as multiply_rows reads it: one column is already in that layout (its k values in order)
  // and is read in place; more are packed into `packed`.
  const float* packed_activations(const float* b, Index ldb, Index n, float* packed) const {
    if (n == 1) return b;
    pack_activations(b, ldb, n, packed);
    return packed;
  }

  // C rows [r0, r1) (column stride ldc) += A rows [r0, r1) * B, B packed by pack_activations;
  // r0 and r1 are multiples of row_alignment() (r1 may also be rows()). Rows of C start at c[0]:
  // the whole of A's rows. `then`: where the row range that the caller multiplies next starts (a
  // multiple of row_alignment()), or -1; its weights are prefetched where that pays.
  void multiply_rows(const float* packed, Index n, Index r0, Index r1, float* c, Index ldc, Index then = -1) const {
    if (r0 >= r1 || n == 0) return;
    if (prefetch_many_ && n >= kSpreadMinPanels * kPanelCols) {
      multiply_spread(packed, n, r0, r1, c, ldc, then);
      return;
    }
    for (Index k2 = 0; k2 < k_; k2 += kc_) {
      multiply_block(k2, std::min(kc_, k_ - k2), packed + k2 * n, n, r0, r1, c, ldc, c, ldc);
    }
  }

  // C (m x n, column stride ldc) = bias + A * B (k x n, column stride ldb), bias (m) added to
  // every column, or none (nullptr). `workspace` holds workspace_size(n) elements. Allocates
  // nothing.
  void multiply(const float* b, Index ldb, Index n, const float* bias, float* c, Index ldc, float* workspace) const {
    if (m_ == 0 || n == 0) return;
    for (Index j2 = 0; j2 < n; j2 += kMaxColumns) {
      const Index nc = std::min(kMaxColumns, n - j2);
      for (Index k2 = 0; k2 < k_; k2 += kc_) {
        const Index kc = std::min(kc_, k_ - k2);
        // One column is its own packing (a one-step call's x): read in place.
        const float* panel = b + j2 * ldb + k2;
        if (nc > 1) {
          pack_block(panel, ldb, nc, kc, workspace);
          panel = workspace;
        }
        // Rows a block at a time, so that they stay in L2 while every column passes over them.
        const Index row_block =
            std::max<Index>(kPanelRows, Isa::kRowBlockBytes / (kc * Index(sizeof(W))) / kPanelRows * kPanelRows);
        float* columns = c + j2 * ldc;
        for (Index r0 = 0; r0 < m_; r0 += row_block) {
          // The first depth block starts from the bias, the others from what the ones before wrote.
          if (k2 == 0) {
            multiply_block(k2, kc, panel, nc, r0, std::min(m_, r0 + row_block), columns, ldc, bias, 0);
          } else {
            multiply_block(k2, kc, panel, nc, r0, std::min(m_, r0 + row_block), columns, ldc, columns, ldc);
          }
        }
      }
    }
  }

 private:
  static constexpr Index kLanes = Isa::kLanes;
  static constexpr Index kPanelRows = kMaxVectors * kLanes;  // rows of A per micro-kernel
  static constexpr Index kPanelCols = Isa::kCols;            // columns of B per micro-kernel
  static constexpr Index kMaxColumns = 512;                  // columns of B packed at once by multiply

  // Rows stored for the panel starting at row0: kPanelRows, or the rest rounded up to whole vectors.
  Index panel_height(Index row0) const { return std::min(kPanelRows, padded_rows_ - row0); }

  // One depth block of B (column stride ldb) into kPanelCols-column panels.
  static void pack_block(const float* b, Index ldb, Index n, Index kc, float* packed) {
    Index j = 0;
    for (; j + kPanelCols <= n; j += kPanelCols) {
      pack_columns<typename Isa::ColumnPacket, Isa::kCols>(b + j * ldb, ldb, kc, packed + j * kc);
    }
    const Index cols = n - j;
    float* out = packed + j * kc;
    for (Index d = 0; d < kc; ++d)
      for (Index jj = 0; jj < cols; ++jj) out[d * cols + jj] = b[(j + jj) * ldb + d];
  }

  // C rows [r0, r1) = base + A rows [r0, r1), depth block [k2, k2 + kc) * B's packed block;
  // base as micro_kernel takes it, from row 0.
  void multiply_block(Index k2, Index kc, const float* packed, Index n, Index r0, Index r1, float* c, Index ldc,
                      const float* base, Index base_ld) const {
    const W* block = panels_.data() + k2 * padded_rows_;
    const bool prefetch = n >= kPrefetchMinColumns ? prefetch_many_ : prefetch_few_;
    for (Index j = 0; j < n; j += kPanelCols) {
      const Index cols = std::min(kPanelCols, n - j);
      const float* b = packed + j * kc;
      for (Index row0 = r0; row0 < r1; row0 += kPanelRows) {
        micro_kernel_for<Isa, W>(panel_height(row0) / kLanes, cols, prefetch && j == 0 ? Prefetch::kAhead : Prefetch::kNone)(
            block + row0 * kc, b, kc, c + j * ldc + row0, ldc, base ? base + j * base_ld + row0 : nullptr, base_ld,
            std::min(kPanelRows, r1 - row0), nullptr, 0);
      }
    }
  }

  // multiply_rows over weights that come from beyond L2, with several column panels: a row panel
  // at a time through all of them (it comes from L3 once and is reused from L1/L2), each kernel
  // prefetching its share of the panel multiplied next, so that the trip to L3 overlaps the
  // arithmetic instead of stalling a first pass over the weights.
  void multiply_spread(const float* packed, Index n, Index r0, Index r1, float* c, Index ldc, Index then) const {
    const Index column_panels = (n + kPanelCols - 1) / kPanelCols;
    for (Index k2 = 0; k2 < k_; k2 += kc_) {
      const Index kc = std::min(kc_, k_ - k2);
      const W* block = panels_.data() + k2 * padded_rows_;
      for (Index row0 = r0; row0 < r1; row0 += kPanelRows) {
        // Next: this depth block's next row panel, the next depth block's first one, or the first
        // one of the caller's next range.
        const W* next = nullptr;
        Index next_size = 0;
        if (row0 + kPanelRows < r1) {
          next = block + (row0 + kPanelRows) * kc;
          next_size = panel_height(row0 + kPanelRows) * kc;
        } else if (k2 + kc < k_) {
          const Index next_kc = std::min(kc_, k_ - k2 - kc);
          next = panels_.data() + (k2 + kc) * padded_rows_ + r0 * next_kc;
          next_size = panel_height(r0) * next_kc;
        } else if (then >= 0 && then < m_) {
          next = panels_.data() + then * kc_;  // depth block 0 is kc_ deep
          next_size = panel_height(then) * kc_;
        }
        // With >= kSpreadMinPanels column panels a share is about a line per depth step or less.
        const Index share = (next_size + column_panels - 1) / column_panels;
        const Index next_step = (share + kc - 1) / kc;
        for (Index j = 0, panel = 0; j < n; j += kPanelCols, ++panel) {
          const Index cols = std::min(kPanelCols, n - j);
          micro_kernel_for<Isa, W>(panel_height(row0) / kLanes, cols, next ? Prefetch::kNext : Prefetch::kNone)(
              block + row0 * kc, packed + k2 * n + j * kc, kc, c + j * ldc + row0, ldc, c + j * ldc + row0, ldc,
              std::min(kPanelRows, r1 - row0), next ? next + panel * share : nullptr, next_step);
        }
      }
    }
  }

  Index m_ = 0, k_ = 0, kc_ = 1, padded_rows_ = 0;
  bool prefetch_many_ = false, prefetch_few_ = false;  // whether passes of >= and < kPrefetchMinColumns prefetch
  PanelVector<W> panels_;
};

}  // namespace fastlstm::cpu::simd
