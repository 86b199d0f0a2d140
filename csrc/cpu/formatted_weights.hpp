#pragma once
// A float model's packed weight matrices held in its weight format: one of the alternatives a
// core provides for each format (packed_gemm.hpp), chosen when packed, behind the interface the
// backend uses for every packed weight matrix.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <numeric>
#include <type_traits>
#include <utility>
#include <variant>

#include "fastlstm/lstm.hpp"

namespace fastlstm::cpu {

// Whether packed weights of type W hold int8 (they take row scales when packed).
template <typename W, typename = void>
struct IsQuantized : std::false_type {};
template <typename W>
struct IsQuantized<W, std::void_t<typename W::Act>> : std::true_type {};

// Float32, Float16, BFloat16: packed float weights (a core without 16-bit kernels names its float
// one again); Int8: int8 weights times 8-bit activations on the CPU's fastest scheme, Int8Fallback
// where it lacks it; Int8Wide, Int8WideFallback: the same times 16-bit activations.
template <class Float32, class Float16, class BFloat16, class Int8, class Int8Fallback, class Int8Wide,
          class Int8WideFallback>
class FormattedWeights {
 public:
  using Index = std::ptrdiff_t;

  // The values are already those of `format` (the engine rounded them; int8: integers times
  // row_scales): packing them in it is exact. int8 multiplies activations quantized to
  // `activation_bits` (8 or 16).
  void pack(const float* a, Index m, Index k, Index lda, Index typical_n, WeightFormat format = WeightFormat::native,
            const float* row_scales = nullptr, int activation_bits = 8) {
    switch (format) {
      case WeightFormat::float16: weights_.template emplace<1>(); break;
      case WeightFormat::bfloat16: weights_.template emplace<2>(); break;
      case WeightFormat::int8: emplace_int8(activation_bits); break;
      case WeightFormat::native: weights_.template emplace<0>(); break;
    }
    std::visit(
        [&](auto& weights) {
          if constexpr (IsQuantized<std::decay_t<decltype(weights)>>::value) {
            weights.pack(a, row_scales, m, k, lda);
          } else {
            weights.pack(a, m, k, lda, typical_n);
          }
        },
        weights_);
  }

  // int8 weights given as their integers (m x k, row stride ldc) and row scales.
  void pack_codes(const int8_t* codes, const float* row_scales, Index m, Index k, Index ldc, int activation_bits = 8) {
    emplace_int8(activation_bits);
    std::visit(
        [&](auto& weights) {
          if constexpr (IsQuantized<std::decay_t<decltype(weights)>>::value) weights.pack(codes, row_scales, m, k, ldc);
        },
        weights_);
  }

  Index rows() const { return visit([](const auto& w) { return Index(w.rows()); }); }
  Index depth() const { return visit([](const auto& w) { return Index(w.depth()); }); }
  Index depth_block() const { return visit([](const auto& w) { return Index(w.depth_block()); }); }
  // Row ranges that start at multiples of this are whole panels of every alternative.
  static constexpr Index row_alignment() {
    Index alignment = 1;
    for (Index each : {Index(Float32::row_alignment()), Index(Float16::row_alignment()), Index(BFloat16::row_alignment()),
                       Index(Int8::row_alignment()), Index(Int8Fallback::row_alignment()),
                       Index(Int8Wide::row_alignment()), Index(Int8WideFallback::row_alignment())}) {
      alignment = std::lcm(alignment, each);
    }
    return alignment;
  }
  Index packed_activations_size(Index n) const {
    return visit([n](const auto& w) { return Index(w.packed_activations_size(n)); });
  }
  Index workspace_size(Index n) const { return visit([n](const auto& w) { return Index(w.workspace_size(n)); }); }
  void pack_activations(const float* b, Index ldb, Index n, float* packed) const {
    visit([&](const auto& w) { w.pack_activations(b, ldb, n, packed); });
  }
  const float* packed_activations(const float* b, Index ldb, Index n, float* packed) const {
    return visit([&](const auto& w) { return w.packed_activations(b, ldb, n, packed); });
  }
  void multiply_rows(const float* packed, Index n, Index r0, Index r1, float* c, Index ldc, Index then = -1) const {
    visit([&](const auto& w) { w.multiply_rows(packed, n, r0, r1, c, ldc, then); });
  }
  void multiply(const float* b, Index ldb, Index n, const float* bias, float* c, Index ldc, float* workspace) const {
    visit([&](const auto& w) { w.multiply(b, ldb, n, bias, c, ldc, workspace); });
  }

 private:
  // An empty int8 alternative for activations of `activation_bits` (8 or 16): the CPU's fastest
  // scheme, or the fallback where the CPU lacks it.
  void emplace_int8(int activation_bits) {
    if (activation_bits == 16) {
      if (Int8Wide::available()) {
        weights_.template emplace<5>();
      } else {
        weights_.template emplace<6>();
      }
    } else if (Int8::available()) {
      weights_.template emplace<3>();
    } else {
      weights_.template emplace<4>();
    }
  }

  template <typename F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), weights_);
  }

  std::variant<Float32, Float16, BFloat16, Int8, Int8Fallback, Int8Wide, Int8WideFallback> weights_;
};

}  // namespace fastlstm::cpu
