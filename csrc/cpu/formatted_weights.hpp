#pragma once
// The float weights of the SIMD cores held in the model's weight format: one of the typed
// simd::PackedWeights (float, Float16, BFloat16), chosen when packed, behind the interface the
// backend uses for every packed weight matrix.
#include <variant>

#include "fastlstm/lstm.hpp"
#include "simd_gemm.hpp"

namespace fastlstm::cpu::simd {

template <class Isa>
class FormattedWeights {
 public:
  // The values are already those of `format` (the engine rounded them): packing them in it is exact.
  // Cores that widen 16-bit weights slowly (Isa::kHolds16BitWeights) hold them as floats.
  void pack(const float* a, Index m, Index k, Index lda, Index typical_n, WeightFormat format = WeightFormat::native) {
    if (!Isa::kHolds16BitWeights) format = WeightFormat::native;
    if (format == WeightFormat::float16) {
      weights_.template emplace<PackedWeights<Isa, Float16>>();
    } else if (format == WeightFormat::bfloat16) {
      weights_.template emplace<PackedWeights<Isa, BFloat16>>();
    } else {
      weights_.template emplace<PackedWeights<Isa, float>>();
    }
    std::visit([&](auto& weights) { weights.pack(a, m, k, lda, typical_n); }, weights_);
  }

  Index rows() const { return visit([](const auto& w) { return w.rows(); }); }
  Index depth() const { return visit([](const auto& w) { return w.depth(); }); }
  Index depth_block() const { return visit([](const auto& w) { return w.depth_block(); }); }
  static constexpr Index row_alignment() { return PackedWeights<Isa, float>::row_alignment(); }
  Index packed_activations_size(Index n) const { return visit([n](const auto& w) { return w.packed_activations_size(n); }); }
  Index workspace_size(Index n) const { return visit([n](const auto& w) { return w.workspace_size(n); }); }
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
  template <typename F>
  decltype(auto) visit(F&& f) const {
    return std::visit(std::forward<F>(f), weights_);
  }

  std::variant<PackedWeights<Isa, float>, PackedWeights<Isa, Float16>, PackedWeights<Isa, BFloat16>> weights_;
};

}  // namespace fastlstm::cpu::simd
