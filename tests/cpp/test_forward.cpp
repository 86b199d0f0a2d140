// forward(): torch's shapes and torch's numbers.
#include <thread>
#include <vector>

#include "helpers.hpp"

using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm::StateView;
using fastlstm::TensorView;
using fastlstm::LstmWeights;
using fastlstm_test::check_close;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;
using fastlstm_test::reference_forward;
using fastlstm_test::shape;
using fastlstm_test::tolerance;

TEST_CASE("forward: output (L, N, D*H_out), h_n (D*layers, N, H_out), c_n (D*layers, N, hidden)") {
  Lstm<float> model(make_config(3, 6, 2, true, 4), 1);
  std::vector<float> x(5 * 2 * 3, 0.5f);
  const auto result = model.forward(TensorView<const float>(x.data(), {5, 2, 3}));
  CHECK(result.output.shape() == shape({5, 2, 8}));
  CHECK(result.h_n.shape() == shape({4, 2, 4}));
  CHECK(result.c_n.shape() == shape({4, 2, 6}));
}

TEST_CASE("forward: batch_first input (N, L, H_in) gives output (N, L, D*H_out)") {
  Lstm<float> model(make_config(3, 6, 1, false, 0, true, /*batch_first=*/true), 1);
  std::vector<float> x(2 * 5 * 3, 0.5f);
  const auto result = model.forward(TensorView<const float>(x.data(), {2, 5, 3}));
  CHECK(result.output.shape() == shape({2, 5, 6}));
  CHECK(result.h_n.shape() == shape({1, 2, 6}));
}

TEST_CASE("forward: an empty batch (N = 0) returns empty outputs") {
  Lstm<float> model(make_config(3, 4), 1);
  const auto result = model.forward(TensorView<const float>(nullptr, {7, 0, 3}));
  CHECK(result.output.shape() == shape({7, 0, 4}));
  CHECK(result.h_n.shape() == shape({1, 0, 4}));
}

TEST_CASE("forward: one step by hand, zero weights: every gate is sigmoid(0) = 1/2, g = tanh(0) = 0") {
  // c_1 = f * c_0 + i * g = 0.5 * 1 = 0.5;  h_1 = o * tanh(c_1) = 0.5 * tanh(0.5)
  Lstm<float> model(make_config(1, 1), 1);
  const float x = 3.0f, h0 = 0.0f, c0 = 1.0f;
  const StateView<float> state{TensorView<const float>(&h0, {1, 1, 1}), TensorView<const float>(&c0, {1, 1, 1})};
  const auto result = model.forward(TensorView<const float>(&x, {1, 1, 1}), &state);
  CHECK(result.c_n.data()[0] == doctest::Approx(0.5).epsilon(1e-6));
  CHECK(result.h_n.data()[0] == doctest::Approx(0.23105857863000487).epsilon(1e-6));
  CHECK(result.output.data()[0] == result.h_n.data()[0]);
}

TEST_CASE("forward: a zero model's first uses, from several threads at once, all run its zero weights") {
  // Lstm(config) prepares its weights for the backend at the first use: whichever call comes first.
  // With zero weights and h_0 = c_0 = 0 every gate is 1/2 and g = 0, so every output is 0.
  const LstmConfig config = make_config(5, 40, 2, false);
  for (int round = 0; round < 5; ++round) {
    Lstm<float> model(config, 2);
    const std::vector<float> x = random_values<float>(3 * 2 * 5, static_cast<unsigned>(round));
    std::vector<float> streamed(40, 1.0f);
    std::vector<std::vector<float>> outputs(3);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < outputs.size(); ++i) {
      threads.emplace_back([&, i] {
        if (i == 2) {
          auto state = model.make_state(1);
          model.step(TensorView<const float>(x.data(), {1, 5}), state, TensorView<float>(streamed.data(), {1, 40}));
        } else {
          const auto result = i == 0 ? model.forward(TensorView<const float>(x.data(), {3, 2, 5}))
                                     : model.forward_packed(TensorView<const float>(x.data(), {6, 5}), {2, 2, 2});
          outputs[i].assign(result.output.data(), result.output.data() + result.output.numel());
        }
      });
    }
    for (auto& thread : threads) thread.join();
    for (size_t i = 0; i < 2; ++i) {
      CHECK(outputs[i].size() == 3 * 2 * 40);
      CHECK(std::all_of(outputs[i].begin(), outputs[i].end(), [](float v) { return v == 0.0f; }));
    }
    CHECK(std::all_of(streamed.begin(), streamed.end(), [](float v) { return v == 0.0f; }));
  }
}

TEST_CASE("forward: two steps by hand, weight_ih = 1, x = 1: every gate pre-activation is 1") {
  // i = f = o = sigmoid(1), g = tanh(1); c_1 = i g, h_1 = o tanh(c_1); c_2 = f c_1 + i g, h_2 = o tanh(c_2)
  // (weight_hh = 0, so h_1 does not feed back).
  Lstm<double> model(make_config(1, 1), 1);
  const std::vector<double> ones(4, 1.0);
  model.set_parameter("weight_ih_l0", TensorView<const double>(ones.data(), {4, 1}));
  const std::vector<double> x = {1.0, 1.0};
  const auto result = model.forward(TensorView<const double>(x.data(), {2, 1, 1}));
  CHECK(result.output.data()[0] == doctest::Approx(0.36960635293570576).epsilon(1e-12));
  CHECK(result.output.data()[1] == doctest::Approx(0.5453460789068416).epsilon(1e-12));
  CHECK(result.c_n.data()[0] == doctest::Approx(0.9638013829440019).epsilon(1e-12));
}

TEST_CASE_TEMPLATE("forward: matches the scalar reference (layers, directions, projection, bias, h_0/c_0)", T,
                   float, double) {
  struct Case {
    LstmConfig config;
    int64_t L, N;
    bool with_state;
  };
  const std::vector<Case> cases = {
      {make_config(5, 7), 6, 3, false},
      {make_config(4, 8, 2, true), 5, 2, true},
      {make_config(6, 9, 3, false, 4), 4, 3, true},
      {make_config(3, 5, 2, true, 2, /*bias=*/false), 7, 1, true},
  };
  unsigned seed = 1;
  for (const Case& c : cases) {
    CAPTURE(seed);
    const auto weights = random_weights<T>(c.config, seed * 100);
    const Lstm<T> model(weights, 2);
    const int64_t D = c.config.num_directions(), rows = D * c.config.num_layers;
    const auto x = random_values<T>(static_cast<size_t>(c.L * c.N * c.config.input_size), seed);
    std::vector<T> h0, c0;
    if (c.with_state) {
      h0 = random_values<T>(static_cast<size_t>(rows * c.N * c.config.output_size()), seed + 1);
      c0 = random_values<T>(static_cast<size_t>(rows * c.N * c.config.hidden_size), seed + 2);
    }
    const StateView<T> state{TensorView<const T>(h0.data(), {rows, c.N, c.config.output_size()}),
                             TensorView<const T>(c0.data(), {rows, c.N, c.config.hidden_size})};
    const auto result =
        model.forward(TensorView<const T>(x.data(), {c.L, c.N, c.config.input_size}), c.with_state ? &state : nullptr);
    const auto expected = reference_forward(weights, x, c.L, c.N, h0, c0);
    check_close(result.output, expected.output, tolerance<T>());
    check_close(result.h_n, expected.h_n, tolerance<T>());
    check_close(result.c_n, expected.c_n, tolerance<T>());
    ++seed;
  }
}

TEST_CASE("forward: batch_first and strided input read in place give the time-major result") {
  LstmConfig config = make_config(3, 4, 1, true);
  const auto weights = random_weights<float>(config, 5);
  const int64_t L = 4, N = 3, I = 3;
  const auto x = random_values<float>(static_cast<size_t>(L * N * I), 9);  // (L, N, I)
  const auto expected = reference_forward(weights, x, L, N);

  config.batch_first = true;
  LstmWeights<float> batch_first_weights(config);
  batch_first_weights.parameters() = weights.parameters();
  const Lstm<float> model(batch_first_weights, 1);
  // The same buffer viewed as (N, L, I): strides (I, N*I, 1).
  TensorView<const float> view;
  view.data = x.data();
  view.rank = 3;
  view.shape = {N, L, I};
  view.strides = {I, N * I, 1};
  const auto result = model.forward(view);
  REQUIRE(result.output.shape() == shape({N, L, 8}));
  std::vector<double> expected_batch_first(expected.output.size());
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < 8; ++k) {
        expected_batch_first[static_cast<size_t>((n * L + t) * 8 + k)] =
            expected.output[static_cast<size_t>((t * N + n) * 8 + k)];
      }
    }
  }
  check_close(result.output, expected_batch_first, 1e-5);
  check_close(result.h_n, expected.h_n, 1e-5);
}
