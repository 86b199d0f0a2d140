// Streaming: State, make_state, step() and chunked forward() continue one sequence across calls.
#include <algorithm>
#include <vector>

#include "helpers.hpp"

using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm::TensorView;
using fastlstm_test::check_close;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;
using fastlstm_test::shape;

namespace {
std::vector<double> as_double(const fastlstm::Tensor<float>& t) { return {t.data(), t.data() + t.numel()}; }
}  // namespace

TEST_CASE("stream: make_state gives zeros shaped (num_layers, N, H_out) and (num_layers, N, hidden)") {
  const Lstm<float> model(make_config(3, 6, 2, false, 4), 1);
  const auto state = model.make_state(5);
  CHECK(state.batch_size() == 5);
  CHECK(state.h.shape() == shape({2, 5, 4}));
  CHECK(state.c.shape() == shape({2, 5, 6}));
  CHECK(std::all_of(state.c.data(), state.c.data() + state.c.numel(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("stream: step by step equals one forward over the whole sequence, final state included") {
  const LstmConfig config = make_config(4, 8, 2, false, 3);
  const Lstm<float> model(random_weights<float>(config, 21), 2);
  const int64_t L = 6, N = 2;
  const auto x = random_values<float>(static_cast<size_t>(L * N * 4), 22);
  const auto full = model.forward(TensorView<const float>(x.data(), {L, N, 4}));

  auto state = model.make_state(N);
  std::vector<float> outputs(static_cast<size_t>(L * N * 3));
  for (int64_t t = 0; t < L; ++t) {
    model.step(TensorView<const float>(x.data() + t * N * 4, {N, 4}), state,
               TensorView<float>(outputs.data() + t * N * 3, {N, 3}));
  }
  check_close(outputs.data(), as_double(full.output), 1e-6);
  check_close(state.h, as_double(full.h_n), 1e-6);
  check_close(state.c, as_double(full.c_n), 1e-6);
}

TEST_CASE("stream: a step that allocates its output gives what a step into the caller's buffer gives") {
  const LstmConfig config = make_config(4, 8, 2, false, 3);
  const Lstm<float> model(random_weights<float>(config, 23), 2);
  const int64_t N = 2;
  const auto x = random_values<float>(static_cast<size_t>(3 * N * 4), 24);
  auto into_buffer = model.make_state(N), allocating = model.make_state(N);
  std::vector<float> expected(static_cast<size_t>(N * 3));
  for (int64_t t = 0; t < 3; ++t) {
    const TensorView<const float> x_t(x.data() + t * N * 4, {N, 4});
    model.step(x_t, into_buffer, TensorView<float>(expected.data(), {N, 3}));
    const fastlstm::Tensor<float> output = model.step(x_t, allocating);
    CHECK(output.shape() == shape({N, 3}));
    CHECK(std::equal(expected.begin(), expected.end(), output.data()));
  }
  CHECK_THROWS_WITH_AS(model.step(TensorView<const float>(x.data(), {N, 3}), allocating), doctest::Contains("input_t"),
                       InvalidArgument);
}

TEST_CASE("stream: chunks of any length equal one forward") {
  const LstmConfig config = make_config(4, 8);
  const Lstm<float> model(random_weights<float>(config, 31), 2);
  const int64_t N = 3;
  const auto x = random_values<float>(static_cast<size_t>(7 * N * 4), 32);
  const auto full = model.forward(TensorView<const float>(x.data(), {7, N, 4}));

  auto state = model.make_state(N);
  std::vector<double> outputs;
  int64_t t = 0;
  for (int64_t chunk : {1, 4, 2}) {
    const auto out = model.forward(TensorView<const float>(x.data() + t * N * 4, {chunk, N, 4}), state);
    CHECK(out.shape() == shape({chunk, N, 8}));
    outputs.insert(outputs.end(), out.data(), out.data() + out.numel());
    t += chunk;
  }
  check_close(outputs.data(), as_double(full.output), 1e-6);
  check_close(state.h, as_double(full.h_n), 1e-6);
}

TEST_CASE("stream: a bidirectional model cannot stream") {
  const Lstm<float> model(make_config(3, 4, 1, true), 1);
  CHECK_THROWS_WITH_AS(model.make_state(1), doctest::Contains("unidirectional"), InvalidArgument);
}

TEST_CASE("stream: step refuses wrong shapes and another model's state") {
  const Lstm<float> model(make_config(3, 4), 1);
  auto state = model.make_state(2);
  std::vector<float> in(6), out(8);
  const TensorView<float> out_right(out.data(), {2, 4});
  CHECK_THROWS_WITH_AS(model.step(TensorView<const float>(in.data(), {3, 2}), state, out_right),
                       "input_t: expected shape (2, 3), got (3, 2)", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.step(TensorView<const float>(in.data(), {2, 3}), state, TensorView<float>(out.data(), {8})),
                       "output_t: expected shape (2, 4), got (8,)", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward(TensorView<const float>(in.data(), {1, 3, 2}), state), doctest::Contains("chunk"),
                       InvalidArgument);

  const Lstm<float> other(make_config(3, 5), 1);
  auto other_state = other.make_state(2);
  CHECK_THROWS_WITH_AS(model.step(TensorView<const float>(in.data(), {2, 3}), other_state, out_right),
                       doctest::Contains("not a state of this model"), InvalidArgument);
  CHECK(std::all_of(state.h.data(), state.h.data() + state.h.numel(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("stream: step refuses an output that shares memory with the input") {
  // The step writes output rows while other threads still read the input.
  const Lstm<float> model(random_weights<float>(make_config(4, 4), 5), 2);
  auto state = model.make_state(2);
  std::vector<float> buffer(16, 1.0f);
  CHECK_THROWS_WITH_AS(model.step(TensorView<const float>(buffer.data(), {2, 4}), state,
                                  TensorView<float>(buffer.data() + 4, {2, 4})),
                       "input_t and output_t share memory", InvalidArgument);
  CHECK(std::all_of(buffer.begin(), buffer.end(), [](float v) { return v == 1.0f; }));
  CHECK(std::all_of(state.h.data(), state.h.data() + state.h.numel(), [](float v) { return v == 0.0f; }));
  // Adjacent is not shared.
  model.step(TensorView<const float>(buffer.data(), {2, 4}), state, TensorView<float>(buffer.data() + 8, {2, 4}));
  CHECK(buffer[8] != 1.0f);
}

TEST_CASE("stream: set_state, read_state and reset_state move a state in and out") {
  const LstmConfig config = make_config(3, 5, 2, false, 2);
  const Lstm<float> model(random_weights<float>(config, 31), 1);
  auto state = model.make_state(2);
  const auto h = random_values<float>(2 * 2 * 2, 32);
  const auto c = random_values<float>(2 * 2 * 5, 33);
  model.set_state(state, {{h.data(), {2, 2, 2}}, {c.data(), {2, 2, 5}}});
  const auto [h_read, c_read] = model.read_state(state);
  check_close(h_read, std::vector<double>(h.begin(), h.end()), 0);
  check_close(c_read, std::vector<double>(c.begin(), c.end()), 0);
  // A stream started from a set state continues as a forward from that initial state.
  const auto x = random_values<float>(4 * 2 * 3, 34);
  const fastlstm::StateView<float> initial{{h.data(), {2, 2, 2}}, {c.data(), {2, 2, 5}}};
  const auto full = model.forward(TensorView<const float>(x.data(), {4, 2, 3}), &initial);
  const auto chunk = model.forward(TensorView<const float>(x.data(), {4, 2, 3}), state);
  check_close(chunk, as_double(full.output), 1e-6);
  model.reset_state(state);
  const auto [h_zero, c_zero] = model.read_state(state);
  CHECK(std::all_of(h_zero.data(), h_zero.data() + h_zero.numel(), [](float v) { return v == 0.0f; }));
  CHECK(std::all_of(c_zero.data(), c_zero.data() + c_zero.numel(), [](float v) { return v == 0.0f; }));
  CHECK_THROWS_WITH_AS(model.set_state(state, {{h.data(), {2, 1, 2}}, {c.data(), {2, 2, 5}}}),
                       doctest::Contains("h_0"), InvalidArgument);
}

TEST_CASE("device: a CPU model refuses memory on a GPU, and a GPU model in a build without CUDA says why") {
  const Lstm<float> model(make_config(3, 4), 1);
  CHECK(model.device() == fastlstm::Device::cpu());
  CHECK(model.graph_replays() == 0);
  std::vector<float> x(3 * 2 * 3);
  const TensorView<const float> on_gpu(x.data(), {3, 2, 3}, fastlstm::Device::cuda(0));
  CHECK_THROWS_WITH_AS(model.forward(on_gpu), doctest::Contains("input: is on cuda:0"), InvalidArgument);
  auto state = model.make_state(2);
  CHECK_THROWS_WITH_AS(model.step(TensorView<const float>(x.data(), {2, 3}, fastlstm::Device::cuda(0)), state),
                       doctest::Contains("input_t: is on cuda:0"), InvalidArgument);
  fastlstm::LstmOptions options;
  options.device = fastlstm::Device::cuda(0);
#ifndef FASTLSTM_TEST_CUDA
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(3, 4), options), doctest::Contains("FASTLSTM_CUDA=ON"), fastlstm::Error);
#endif
  options.device = fastlstm::Device{fastlstm::DeviceKind::cuda, -1};
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(3, 4), options), doctest::Contains("device"), InvalidArgument);
}
