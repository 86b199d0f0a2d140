// int8 products (csrc/cpu/quantized_weights.hpp) on every scheme this core and CPU run, against
// the same quantization computed in double: C = bias + A_q * B_q * scales, the integer sums exact.
// The worst-case values (weights of -128, activations at their largest) show that no sum
// saturates or wraps. Built once per instruction set (tests/cpp/CMakeLists.txt).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cpu/quantized_weights.hpp"
#include "weight_format.hpp"

namespace {

using fastlstm::cpu::int8::Index;
using fastlstm::cpu::int8::QuantizedWeights;

// The product as the scheme defines it, in double: each column of B to rint(b * Levels / max|b|).
std::vector<double> expected(const std::vector<float>& a, const std::vector<float>& scales, const std::vector<float>& b,
                             const std::vector<float>& bias, Index m, Index k, Index n, int levels) {
  std::vector<double> c(static_cast<size_t>(m * n));
  for (Index j = 0; j < n; ++j) {
    const float* column = b.data() + j * k;
    float largest = 0.0f;
    for (Index d = 0; d < k; ++d) largest = std::max(largest, std::fabs(column[d]));
    const float inverse = largest > 0 ? float(levels) / largest : 0.0f, scale = largest / float(levels);
    for (Index r = 0; r < m; ++r) {
      double sum = 0;
      for (Index d = 0; d < k; ++d) {
        const double q = std::nearbyint(column[d] * inverse);
        sum += q * fastlstm::weight_format::to_int8(a[static_cast<size_t>(r * k + d)], scales[static_cast<size_t>(r)]);
      }
      c[static_cast<size_t>(j * m + r)] = bias[static_cast<size_t>(r)] + sum * scales[static_cast<size_t>(r)] * scale;
    }
  }
  return c;
}

template <class Scheme, int Levels>
void check_products(const char* name) {
  if (!Scheme::available()) {
    MESSAGE(name << ": this CPU lacks it, not tested");
    return;
  }
  std::mt19937 engine(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (Index m : {1, 5, 17, 48, 100}) {
    for (Index k : {1, 3, 64, 513, 1100}) {
      for (Index n : {1, 3, 8, 9, 20}) {
        std::vector<float> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(k * n)), bias(static_cast<size_t>(m)),
            scales(static_cast<size_t>(m));
        for (float& v : a) v = 0.1f * normal(engine);
        for (float& v : b) v = normal(engine);
        for (float& v : bias) v = normal(engine);
        for (Index r = 0; r < m; ++r) scales[static_cast<size_t>(r)] = fastlstm::weight_format::int8_row_scale(a.data() + r * k, k);
        QuantizedWeights<Scheme, Levels> weights;
        weights.pack(a.data(), scales.data(), m, k, k);
        std::vector<float> c(static_cast<size_t>(m * n)), workspace(static_cast<size_t>(weights.workspace_size(n)));
        weights.multiply(b.data(), k, n, bias.data(), c.data(), m, workspace.data());
        const std::vector<double> want = expected(a, scales, b, bias, m, k, n, Levels);
        double worst = 0;
        for (size_t i = 0; i < c.size(); ++i) worst = std::max(worst, std::fabs(c[i] - want[i]) / (1.0 + std::fabs(want[i])));
        INFO(name << " m=" << m << " k=" << k << " n=" << n);
        CHECK(worst < 2e-6);
        // multiply_rows over a row range adds to C and leaves the other rows alone.
        if (m >= 48) {
          std::vector<float> packed(static_cast<size_t>(weights.packed_activations_size(n)));
          std::vector<float> d(c.size(), 1.0f);
          weights.multiply_rows(weights.packed_activations(b.data(), k, n, packed.data()), n, 0, 48, d.data(), m);
          for (Index j = 0; j < n; ++j) {
            for (Index r = 0; r < m; ++r) {
              const double added = r < 48 ? want[static_cast<size_t>(j * m + r)] - bias[static_cast<size_t>(r)] : 0.0;
              CHECK(std::fabs(d[static_cast<size_t>(j * m + r)] - (1.0 + added)) < 2e-6 * (1.0 + std::fabs(added)));
            }
          }
        }
      }
    }
  }
}

// Weights of -128 (scale 1/128: -1 each) times activations all at the column's largest value:
// every product is at its extreme, k of them summed in one depth block and across blocks.
template <class Scheme, int Levels>
void check_extremes(const char* name) {
  if (!Scheme::available()) return;
  for (Index k : {512, 1024, 1537}) {
    for (float x : {3.0f, -3.0f}) {
      const Index m = 50, n = 9;
      std::vector<float> a(static_cast<size_t>(m * k), -1.0f), scales(static_cast<size_t>(m), 1.0f / 128.0f);
      std::vector<float> b(static_cast<size_t>(k * n), x), c(static_cast<size_t>(m * n));
      QuantizedWeights<Scheme, Levels> weights;
      weights.pack(a.data(), scales.data(), m, k, k);
      std::vector<float> workspace(static_cast<size_t>(weights.workspace_size(n)));
      weights.multiply(b.data(), k, n, nullptr, c.data(), m, workspace.data());
      INFO(name << " k=" << k << " x=" << x);
      for (float value : c) CHECK(value == doctest::Approx(-double(k) * x).epsilon(1e-6));
    }
  }
}

}  // namespace

TEST_CASE("int8 products: portable C++, 8- and 16-bit activations") {
  check_products<fastlstm::cpu::int8::Portable, 127>("portable/8");
  check_products<fastlstm::cpu::int8::Portable, 32767>("portable/16");
  check_extremes<fastlstm::cpu::int8::Portable, 127>("portable/8");
  check_extremes<fastlstm::cpu::int8::Portable, 32767>("portable/16");
}

#if defined(__AVX2__)
TEST_CASE("int8 products: AVX2 (vpmaddwd), 8- and 16-bit activations, nothing saturates") {
  check_products<fastlstm::cpu::int8::Madd256, 127>("madd256/8");
  check_products<fastlstm::cpu::int8::Madd256, 32767>("madd256/16");
  check_extremes<fastlstm::cpu::int8::Madd256, 127>("madd256/8");
  check_extremes<fastlstm::cpu::int8::Madd256, 32767>("madd256/16");
}
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__)
TEST_CASE("int8 products: AVX-512 VNNI (vpdpbusd, vpdpwssd), nothing saturates") {
  check_products<fastlstm::cpu::int8::Vnni512, 127>("vnni512/8");
  check_products<fastlstm::cpu::int8::VnniWide512, 32767>("vnni512/16");
  check_extremes<fastlstm::cpu::int8::Vnni512, 127>("vnni512/8");
  check_extremes<fastlstm::cpu::int8::VnniWide512, 32767>("vnni512/16");
}
#endif

TEST_CASE("int8 row scales: max|row| / 127 rounded up to 17 bits; a rounded row rounds to itself") {
  std::mt19937 engine(3);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> row(37);
    for (float& v : row) v = normal(engine);
    const float scale = fastlstm::weight_format::int8_row_scale(row.data(), 37);
    float largest = 0;
    for (float v : row) largest = std::max(largest, std::fabs(v));
    CHECK(scale >= largest / 127.0f);
    CHECK(scale <= largest / 127.0f * (1 + 1.0f / 65536));
    fastlstm::weight_format::round_int8_row(row.data(), 37, scale);
    std::vector<float> again = row;
    CHECK(fastlstm::weight_format::int8_row_scale(again.data(), 37) == scale);
    fastlstm::weight_format::round_int8_row(again.data(), 37, scale);
    CHECK(again == row);
  }
  std::vector<float> zeros(5, 0.0f);
  CHECK(fastlstm::weight_format::int8_row_scale(zeros.data(), 5) == 0.0f);
}
