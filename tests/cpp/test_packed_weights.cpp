// The products under every gate and projection (csrc/cpu/packed_gemm.hpp: Eigen's kernels, and
// fastlstm's own for float in the AVX-512 and AVX2 cores) against a plain loop in double, over the
// shapes whose edges the kernels treat apart: partial row panels, column panels of 1 to 8 and more,
// several depth blocks, row ranges. Built once per instruction set
// (tests/cpp/CMakeLists.txt), so each core's kernels are the ones tested.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/packed_gemm.hpp"
#include "cpu/weight_types.hpp"

namespace {

using fastlstm::cpu::AlignedVector;
using fastlstm::cpu::PackedWeights;
using Index = Eigen::Index;

template <typename T>
std::vector<T> random_matrix(Index count, unsigned seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::vector<T> values(static_cast<size_t>(count));
  for (T& value : values) value = static_cast<T>(uniform(engine));
  return values;
}

// C (m x n, column stride ldc) + A rows [r0, r1) (row-major, k wide) * B (k x n, column stride ldb).
template <typename T>
std::vector<double> expected_product(const std::vector<T>& a, const std::vector<T>& b, const std::vector<T>& c,
                                     Index m, Index k, Index n, Index ldb, Index ldc, Index r0, Index r1) {
  std::vector<double> out(c.begin(), c.end());
  for (Index j = 0; j < n; ++j)
    for (Index i = r0; i < r1; ++i) {
      double sum = 0;
      for (Index d = 0; d < k; ++d) sum += double(a[static_cast<size_t>(i * k + d)]) * double(b[static_cast<size_t>(j * ldb + d)]);
      out[static_cast<size_t>(j * ldc + i)] += sum;
    }
  (void)m;
  return out;
}

template <typename T>
void check_close(const std::vector<T>& actual, const std::vector<double>& expected, Index k) {
  // Float rounding of a k-long dot product of values in [-1, 1].
  const double tolerance = (sizeof(T) == 4 ? 2e-6 : 1e-14) * std::sqrt(double(k) + 1) * 4;
  double worst = 0;
  for (size_t i = 0; i < actual.size(); ++i) worst = std::max(worst, std::abs(double(actual[i]) - expected[i]));
  CHECK(worst <= tolerance);
}

struct Shape {
  Index m, k, n;
};

const Shape kShapes[] = {{1, 1, 1},    {15, 7, 1},    {16, 8, 2},     {17, 9, 3},    {47, 33, 4},
                         {48, 64, 5},  {49, 100, 6},  {96, 128, 7},   {100, 256, 8}, {143, 300, 9},
                         {200, 513, 16}, {97, 1100, 17}, {384, 520, 33}, {50, 40, 70},  {1100, 24, 600},
                         // Over 1 MB of weights: passes of 1-3 columns prefetch where the core says so.
                         {1100, 300, 1}, {1100, 300, 3},
                         // Over 256 KB with 3 column panels and more: a row panel at a time through all
                         // columns (AVX-512: 8-column panels, AVX2: 4), two depth blocks.
                         {150, 600, 24}, {300, 520, 12}};

template <typename T>
void check_multiply(bool with_bias) {
  for (const Shape& s : kShapes) {
    CAPTURE(s.m);
    CAPTURE(s.k);
    CAPTURE(s.n);
    CAPTURE(with_bias);
    // Strides wider than the matrices, as the backend's row layouts are.
    const Index lda = s.k + 3, ldb = s.k + 5, ldc = s.m + 2;
    const std::vector<T> a_strided = random_matrix<T>(s.m * lda, 1);
    std::vector<T> a(static_cast<size_t>(s.m * s.k));
    for (Index i = 0; i < s.m; ++i)
      std::copy_n(a_strided.begin() + i * lda, s.k, a.begin() + i * s.k);
    const std::vector<T> b = random_matrix<T>(s.n * ldb, 2);
    // C's old values are overwritten, but for the gap between columns (ldc > m), which stays.
    std::vector<T> c = random_matrix<T>(s.n * ldc, 3);
    const std::vector<T> bias = random_matrix<T>(s.m, 7);
    std::vector<T> start = c;
    for (Index j = 0; j < s.n; ++j)
      for (Index i = 0; i < s.m; ++i) start[static_cast<size_t>(j * ldc + i)] = with_bias ? bias[static_cast<size_t>(i)] : T(0);
    const std::vector<double> expected = expected_product(a, b, start, s.m, s.k, s.n, ldb, ldc, 0, s.m);

    PackedWeights<T> weights;
    weights.pack(a_strided.data(), s.m, s.k, lda, 64);
    CHECK(weights.rows() == s.m);
    CHECK(weights.depth() == s.k);
    AlignedVector<T> workspace(static_cast<size_t>(weights.workspace_size(s.n)));
    weights.multiply(b.data(), ldb, s.n, with_bias ? bias.data() : nullptr, c.data(), ldc, workspace.data());
    check_close(c, expected, s.k);
  }
}

template <typename T>
void check_multiply_rows() {
  for (const Shape& s : kShapes) {
    const Index align = PackedWeights<T>::row_alignment();
    const std::vector<T> a = random_matrix<T>(s.m * s.k, 4);
    const Index ldb = s.k + 5;  // rows of activations inside wider rows, as a step's h_{t-1} is
    const std::vector<T> b = random_matrix<T>(s.n * ldb, 5);
    PackedWeights<T> weights;
    weights.pack(a.data(), s.m, s.k, s.k, 64);
    AlignedVector<T> scratch(static_cast<size_t>(weights.packed_activations_size(s.n)));
    // What the backend passes: B itself for one column, its packing into `scratch` for more.
    const T* packed = weights.packed_activations(b.data(), ldb, s.n, scratch.data());
    CHECK(packed == (s.n == 1 ? b.data() : scratch.data()));
    // Every aligned start and end, and the end of the matrix: rows outside keep their values.
    for (Index r0 = 0; r0 < s.m; r0 += align) {
      for (Index r1 : {std::min(s.m, r0 + align), std::min(s.m, r0 + 2 * align), s.m}) {
        CAPTURE(s.m);
        CAPTURE(s.k);
        CAPTURE(s.n);
        CAPTURE(r0);
        CAPTURE(r1);
        const std::vector<T> c0 = random_matrix<T>(s.n * s.m, 6);
        const std::vector<double> expected = expected_product(a, b, c0, s.m, s.k, s.n, ldb, s.m, r0, r1);
        // Without and with a hint of the range multiplied next (it may only prefetch).
        for (Index then : {Index(-1), r1 < s.m ? r1 : Index(0)}) {
          CAPTURE(then);
          std::vector<T> c = c0;
          weights.multiply_rows(packed, s.n, r0, r1, c.data(), s.m, then);
          check_close(c, expected, s.k);
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("packed weights: C = bias + A * B for float over partial panels, depth blocks and strides") {
  check_multiply<float>(true);
  check_multiply<float>(false);
}

TEST_CASE("packed weights: C = bias + A * B for double") {
  check_multiply<double>(true);
  check_multiply<double>(false);
}

TEST_CASE("packed weights: a row range of float touches only its rows, a lone column read in place") { check_multiply_rows<float>(); }

TEST_CASE("packed weights: a row range of double touches only its rows, a lone column read in place") { check_multiply_rows<double>(); }

// 16-bit weights (the AVX-512 and AVX2 cores): the product equals, to float rounding, the product
// of the weights rounded to the format; the activations and the sums stay float.
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
namespace {
#if defined(__AVX512F__)
using SimdIsa = fastlstm::cpu::simd::Avx512;
#else
using SimdIsa = fastlstm::cpu::simd::Avx2;
#endif

// max_rounding: half an ulp of the format, relative to the value, or to the format's smallest
// normal number below it (where its values are subnormal, float16's spacing stays that fine).
template <typename W>
void check_16bit_weights(double max_rounding, double smallest_normal) {
  for (const Shape& s : kShapes) {
    CAPTURE(s.m);
    CAPTURE(s.k);
    CAPTURE(s.n);
    const Index lda = s.k + 3, ldb = s.k + 5, ldc = s.m + 2;
    const std::vector<float> a_strided = random_matrix<float>(s.m * lda, 11);
    std::vector<float> rounded(static_cast<size_t>(s.m * s.k));  // A as the format holds it
    double worst_rounding = 0;
    for (Index i = 0; i < s.m; ++i) {
      for (Index d = 0; d < s.k; ++d) {
        const float value = a_strided[static_cast<size_t>(i * lda + d)];
        const float held = W::from_float(value).to_float();
        const double scale = std::max(std::abs(double(value)), smallest_normal);
        worst_rounding = std::max(worst_rounding, std::abs(double(held) - double(value)) / scale);
        rounded[static_cast<size_t>(i * s.k + d)] = held;
      }
    }
    CHECK(worst_rounding <= max_rounding);  // round to nearest: half an ulp of the format
    const std::vector<float> b = random_matrix<float>(s.n * ldb, 12);
    const std::vector<float> bias = random_matrix<float>(s.m, 13);
    std::vector<float> c = random_matrix<float>(s.n * ldc, 14), start = c;
    for (Index j = 0; j < s.n; ++j)
      for (Index i = 0; i < s.m; ++i) start[static_cast<size_t>(j * ldc + i)] = bias[static_cast<size_t>(i)];
    const std::vector<double> expected = expected_product(rounded, b, start, s.m, s.k, s.n, ldb, ldc, 0, s.m);

    fastlstm::cpu::simd::PackedWeights<SimdIsa, W> weights;
    weights.pack(a_strided.data(), s.m, s.k, lda, 64);
    AlignedVector<float> workspace(static_cast<size_t>(weights.workspace_size(s.n)));
    weights.multiply(b.data(), ldb, s.n, bias.data(), c.data(), ldc, workspace.data());
    check_close(c, expected, s.k);

    // Row ranges over packed activations, the other path of the recurrent steps.
    AlignedVector<float> scratch(static_cast<size_t>(weights.packed_activations_size(s.n)));
    const float* packed = weights.packed_activations(b.data(), ldb, s.n, scratch.data());
    const std::vector<float> c0 = random_matrix<float>(s.n * s.m, 15);
    std::vector<float> rows = c0;
    weights.multiply_rows(packed, s.n, 0, s.m, rows.data(), s.m);
    check_close(rows, expected_product(rounded, b, c0, s.m, s.k, s.n, ldb, s.m, 0, s.m), s.k);
  }
}
}  // namespace

TEST_CASE("packed weights in bfloat16: the product of the rounded weights, float activations and sums") {
  check_16bit_weights<fastlstm::cpu::BFloat16>(1.0 / 256, 1.17549435e-38);  // 8 bits of significand
}

TEST_CASE("packed weights in float16: the product of the rounded weights, float activations and sums") {
  check_16bit_weights<fastlstm::cpu::Float16>(1.0 / 2048, 6.103515625e-05);  // 11 bits of significand
}

TEST_CASE("the engine's portable float16 rounding agrees with F16C bit for bit") {
  namespace wf = fastlstm::weight_format;
  auto same = [](float a, float b) { return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof(a)) == 0; };
  int mismatches = 0;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const auto half = static_cast<uint16_t>(h);
    const float value = _cvtsh_ss(half);
    if (!same(wf::from_float16(half), value)) ++mismatches;
    if (!std::isnan(value) && wf::to_float16(value) != half) ++mismatches;
    // The midpoint to the next half, and values just either side of it: the ties and their neighbours.
    if ((h & 0x7c00u) != 0x7c00u && (h & 0x7fffu) != 0x7bffu) {
      const float next = _cvtsh_ss(static_cast<uint16_t>(h + 1));
      const double mid = (double(value) + double(next)) / 2;
      for (float probe : {float(mid), std::nextafter(float(mid), -INFINITY), std::nextafter(float(mid), INFINITY)}) {
        if (wf::to_float16(probe) != _cvtss_sh(probe, _MM_FROUND_TO_NEAREST_INT)) ++mismatches;
      }
    }
  }
  std::mt19937 engine(3);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 1000000; ++i) {
    const uint32_t pattern = bits(engine);
    float value;
    std::memcpy(&value, &pattern, sizeof(value));
    if (std::isnan(value)) continue;
    if (wf::to_float16(value) != _cvtss_sh(value, _MM_FROUND_TO_NEAREST_INT)) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("16-bit formats round to nearest, ties to even, and keep infinities and NaN") {
  using fastlstm::cpu::BFloat16;
  using fastlstm::cpu::Float16;
  CHECK(BFloat16::from_float(1.0f).bits == 0x3f80);
  CHECK(BFloat16::from_float(1.0f + 1.0f / 256).bits == 0x3f80);   // a tie: to the even 1.0
  CHECK(BFloat16::from_float(1.0f + 3.0f / 256).bits == 0x3f82);   // a tie: to the even 1 + 2/128
  CHECK(BFloat16::from_float(-2.5f).to_float() == -2.5f);
  CHECK(std::isinf(BFloat16::from_float(std::numeric_limits<float>::infinity()).to_float()));
  CHECK(std::isnan(BFloat16::from_float(std::numeric_limits<float>::quiet_NaN()).to_float()));
  CHECK(Float16::from_float(1.0f).bits == 0x3c00);
  CHECK(Float16::from_float(65504.0f).to_float() == 65504.0f);
  CHECK(std::isinf(Float16::from_float(1e6f).to_float()));
  CHECK(Float16::from_float(1.0f + 1.0f / 2048).bits == 0x3c00);  // a tie: to the even 1.0
}
#endif

#if defined(__linux__)
namespace {
// The VmFlags of the mapping that holds `address`, from /proc/self/smaps ("" if none).
std::string mapping_flags(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(address);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &start, &end) == 2 && line.find(':') > line.find(' ')) {
      inside = start <= at && at < end;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line + " ";
    }
  }
  return "";
}
}  // namespace
#endif

TEST_CASE("packed panels of 2 MB and more start on a 2 MB boundary, offered for huge pages") {
  const fastlstm::cpu::PanelVector<float> big(size_t(1) << 20, 1.0f);  // 4 MB
  const fastlstm::cpu::PanelVector<float> small(1000, 1.0f);
  CHECK(reinterpret_cast<uintptr_t>(big.data()) % (size_t(2) << 20) == 0);
  CHECK(reinterpret_cast<uintptr_t>(small.data()) % 64 == 0);
#if defined(__linux__)
  const std::string flags = mapping_flags(big.data());
  REQUIRE(!flags.empty());
  CHECK(flags.find(" hg ") != std::string::npos);  // MADV_HUGEPAGE
#endif
}
