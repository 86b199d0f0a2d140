#pragma once
// Shared by the C++ tests: random weights, a scalar reference LSTM (torch.nn.LSTM's equations,
// one number at a time) and element-wise comparison.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <random>
#include <vector>

#include "fastlstm/fastlstm.hpp"

namespace fastlstm_test {

// A fresh directory under the system's temporary directory, removed at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path = std::filesystem::temp_directory_path() / ("fastlstm_cpp_test_" + std::to_string(stamp));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

using fastlstm::LstmConfig;
using fastlstm::LstmWeights;
using fastlstm::ParameterKind;

inline LstmConfig make_config(int64_t input_size, int64_t hidden_size, int64_t num_layers = 1,
                              bool bidirectional = false, int64_t proj_size = 0, bool bias = true,
                              bool batch_first = false) {
  LstmConfig config;
  config.input_size = input_size;
  config.hidden_size = hidden_size;
  config.num_layers = num_layers;
  config.bidirectional = bidirectional;
  config.proj_size = proj_size;
  config.bias = bias;
  config.batch_first = batch_first;
  return config;
}

template <typename T>
std::vector<T> random_values(size_t count, unsigned seed, double scale = 1.0) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<double> uniform(-scale, scale);
  std::vector<T> values(count);
  for (T& value : values) value = static_cast<T>(uniform(engine));
  return values;
}

template <typename T>
LstmWeights<T> random_weights(const LstmConfig& config, unsigned seed) {
  LstmWeights<T> weights(config);
  for (auto& parameter : weights.parameters()) {
    parameter.values = random_values<T>(parameter.values.size(), seed++, 0.5);
  }
  return weights;
}

// What torch.nn.LSTM returns, computed in double: output (L, N, D * P) time-major, h_n, c_n.
struct Reference {
  std::vector<double> output, h_n, c_n;
};

// x: (L, N, H_in) time-major; h0/c0: (D * num_layers, N, P/H) or empty for zeros.
template <typename T>
Reference reference_forward(const LstmWeights<T>& weights, const std::vector<T>& x, int64_t L, int64_t N,
                            const std::vector<T>& h0 = {}, const std::vector<T>& c0 = {}) {
  const LstmConfig& cfg = weights.config();
  const int64_t D = cfg.num_directions(), H = cfg.hidden_size, P = cfg.output_size();
  auto value = [&](int64_t layer, int64_t dir, ParameterKind kind, int64_t index) -> double {
    const auto* parameter = weights.find(layer, dir, kind);
    return parameter ? static_cast<double>(parameter->values[static_cast<size_t>(index)]) : 0.0;
  };
  auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };

  Reference result;
  result.h_n.assign(static_cast<size_t>(D * cfg.num_layers * N * P), 0.0);
  result.c_n.assign(static_cast<size_t>(D * cfg.num_layers * N * H), 0.0);
  std::vector<double> layer_input(x.begin(), x.end());
  int64_t in_size = cfg.input_size;
  for (int64_t layer = 0; layer < cfg.num_layers; ++layer) {
    std::vector<double> layer_output(static_cast<size_t>(L * N * D * P));
    for (int64_t dir = 0; dir < D; ++dir) {
      const int64_t row = layer * D + dir;
      std::vector<double> h(static_cast<size_t>(N * P), 0.0), c(static_cast<size_t>(N * H), 0.0);
      if (!h0.empty()) std::copy_n(h0.begin() + row * N * P, N * P, h.begin());
      if (!c0.empty()) std::copy_n(c0.begin() + row * N * H, N * H, c.begin());
      for (int64_t s = 0; s < L; ++s) {
        const int64_t t = dir ? L - 1 - s : s;
        for (int64_t n = 0; n < N; ++n) {
          std::vector<double> gates(static_cast<size_t>(4 * H));
          for (int64_t g = 0; g < 4 * H; ++g) {
            double sum = value(layer, dir, ParameterKind::bias_ih, g) + value(layer, dir, ParameterKind::bias_hh, g);
            for (int64_t k = 0; k < in_size; ++k) {
              sum += value(layer, dir, ParameterKind::weight_ih, g * in_size + k) *
                     layer_input[static_cast<size_t>((t * N + n) * in_size + k)];
            }
            for (int64_t k = 0; k < P; ++k) {
              sum += value(layer, dir, ParameterKind::weight_hh, g * P + k) * h[static_cast<size_t>(n * P + k)];
            }
            gates[static_cast<size_t>(g)] = sum;
          }
          std::vector<double> h_cell(static_cast<size_t>(H));
          for (int64_t j = 0; j < H; ++j) {
            const double i = sigmoid(gates[static_cast<size_t>(j)]);
            const double f = sigmoid(gates[static_cast<size_t>(H + j)]);
            const double g = std::tanh(gates[static_cast<size_t>(2 * H + j)]);
            const double o = sigmoid(gates[static_cast<size_t>(3 * H + j)]);
            double& cell = c[static_cast<size_t>(n * H + j)];
            cell = f * cell + i * g;
            h_cell[static_cast<size_t>(j)] = o * std::tanh(cell);
          }
          for (int64_t p = 0; p < P; ++p) {
            double projected = h_cell[static_cast<size_t>(p)];
            if (cfg.proj_size > 0) {
              projected = 0.0;
              for (int64_t j = 0; j < H; ++j) {
                projected += value(layer, dir, ParameterKind::weight_hr, p * H + j) * h_cell[static_cast<size_t>(j)];
              }
            }
            h[static_cast<size_t>(n * P + p)] = projected;
            layer_output[static_cast<size_t>((t * N + n) * D * P + dir * P + p)] = projected;
          }
        }
      }
      std::copy(h.begin(), h.end(), result.h_n.begin() + row * N * P);
      std::copy(c.begin(), c.end(), result.c_n.begin() + row * N * H);
    }
    layer_input = std::move(layer_output);
    in_size = D * P;
  }
  result.output = std::move(layer_input);
  return result;
}

template <typename T>
double tolerance() {
  return sizeof(T) == sizeof(float) ? 1e-5 : 1e-12;
}

// Every element of `actual` within `tol` of `expected`.
template <typename A, typename E>
void check_close(const A* actual, const std::vector<E>& expected, double tol) {
  double worst = 0.0;
  size_t worst_at = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double diff = std::abs(static_cast<double>(actual[i]) - static_cast<double>(expected[i]));
    if (std::isnan(diff)) {
      worst = HUGE_VAL;
      worst_at = i;
      break;
    }
    if (diff > worst) {
      worst = diff;
      worst_at = i;
    }
  }
  INFO("largest difference " << worst << " at element " << worst_at << " of " << expected.size());
  CHECK(worst <= tol);
}

template <typename T>
void check_close(const fastlstm::Tensor<T>& actual, const std::vector<double>& expected, double tol) {
  REQUIRE(static_cast<size_t>(actual.numel()) == expected.size());
  check_close(actual.data(), expected, tol);
}

inline std::vector<int64_t> shape(std::initializer_list<int64_t> extents) { return extents; }

// `value` rounded to bfloat16 (to nearest, ties to even), as a float.
inline float bfloat16_value(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace fastlstm_test
