// forward_packed(): variable-length batches as torch's PackedSequence holds them.
#include <algorithm>
#include <vector>

#include "helpers.hpp"

using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm::TensorView;
using fastlstm_test::check_close;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;
using fastlstm_test::reference_forward;
using fastlstm_test::shape;

namespace {

std::vector<double> as_double(const fastlstm::Tensor<float>& t) { return {t.data(), t.data() + t.numel()}; }

// Sequences of lengths 5, 3, 2 (sorted, as packed order is), each run alone by the reference and
// packed together by fastlstm: outputs, h_n and c_n must agree sequence by sequence.
void check_packed_matches_sequences(const LstmConfig& config) {
  const auto weights = random_weights<float>(config, 11);
  const Lstm<float> model(weights, 2);
  const std::vector<int64_t> lengths = {5, 3, 2};
  const std::vector<int64_t> batch_sizes = {3, 3, 2, 1, 1};
  const int64_t I = config.input_size, D = config.num_directions(), P = config.output_size();
  const int64_t H = config.hidden_size, rows = D * config.num_layers;

  std::vector<std::vector<float>> sequences;
  for (size_t s = 0; s < lengths.size(); ++s) {
    sequences.push_back(random_values<float>(static_cast<size_t>(lengths[s] * I), 20 + static_cast<unsigned>(s)));
  }
  std::vector<float> data;  // rows of step t: one per sequence still running
  for (size_t t = 0; t < batch_sizes.size(); ++t) {
    for (int64_t s = 0; s < batch_sizes[t]; ++s) {
      const auto& seq = sequences[static_cast<size_t>(s)];
      data.insert(data.end(), seq.begin() + static_cast<int64_t>(t) * I, seq.begin() + static_cast<int64_t>(t + 1) * I);
    }
  }
  const auto result = model.forward_packed(TensorView<const float>(data.data(), {10, I}), batch_sizes);
  REQUIRE(result.output.shape() == shape({10, D * P}));
  REQUIRE(result.h_n.shape() == shape({rows, 3, P}));

  for (size_t s = 0; s < lengths.size(); ++s) {
    CAPTURE(s);
    const auto expected = reference_forward(weights, sequences[s], lengths[s], 1);
    std::vector<double> actual_output, actual_h, actual_c;
    int64_t row = 0;
    for (size_t t = 0; t < batch_sizes.size(); ++t) {
      if (static_cast<int64_t>(s) < batch_sizes[t]) {
        const float* out = result.output.data() + (row + static_cast<int64_t>(s)) * D * P;
        actual_output.insert(actual_output.end(), out, out + D * P);
      }
      row += batch_sizes[t];
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float* h = result.h_n.data() + (r * 3 + static_cast<int64_t>(s)) * P;
      const float* c = result.c_n.data() + (r * 3 + static_cast<int64_t>(s)) * H;
      actual_h.insert(actual_h.end(), h, h + P);
      actual_c.insert(actual_c.end(), c, c + H);
    }
    check_close(actual_output.data(), expected.output, 1e-5);
    check_close(actual_h.data(), expected.h_n, 1e-5);
    check_close(actual_c.data(), expected.c_n, 1e-5);
  }
}

}  // namespace

TEST_CASE("packed: each sequence gets the output and final state it gets alone") {
  check_packed_matches_sequences(make_config(4, 6, 2));
}

TEST_CASE("packed: bidirectional with projection: the reverse direction starts at each sequence's own end") {
  check_packed_matches_sequences(make_config(4, 6, 2, true, 3));
}

TEST_CASE("packed: equal lengths give the padded forward's numbers") {
  const LstmConfig config = make_config(3, 5, 1, true);
  const Lstm<float> model(random_weights<float>(config, 3), 1);
  const auto x = random_values<float>(4 * 2 * 3, 4);  // (L=4, N=2, 3): also the packed rows
  const auto padded = model.forward(TensorView<const float>(x.data(), {4, 2, 3}));
  const auto packed = model.forward_packed(TensorView<const float>(x.data(), {8, 3}), {2, 2, 2, 2});
  const std::vector<double> padded_output(padded.output.data(), padded.output.data() + padded.output.numel());
  const std::vector<double> padded_h(padded.h_n.data(), padded.h_n.data() + padded.h_n.numel());
  check_close(packed.output, padded_output, 1e-6);
  check_close(packed.h_n, padded_h, 1e-6);
}

TEST_CASE("packed: with sorted_indices the states follow the caller's order, as torch's PackedSequence") {
  const LstmConfig config = make_config(3, 5, 2, true, 2);
  const Lstm<float> model(random_weights<float>(config, 5), 2);
  const int64_t N = 3, rows = 4 * 3, P = 2, H = 5;
  const auto x = random_values<float>(static_cast<size_t>(rows * 3), 6);
  const std::vector<int64_t> batch_sizes{3, 3, 3, 3}, sorted{2, 0, 1};  // packed row n: caller row sorted[n]
  const auto h0 = random_values<float>(static_cast<size_t>(4 * N * P), 7);
  const auto c0 = random_values<float>(static_cast<size_t>(4 * N * H), 8);
  // The same states in the packed order, given without sorted_indices.
  std::vector<float> h0_packed(h0.size()), c0_packed(c0.size());
  for (int64_t index = 0; index < 4; ++index) {
    for (int64_t n = 0; n < N; ++n) {
      std::copy_n(h0.data() + (index * N + sorted[n]) * P, P, h0_packed.data() + (index * N + n) * P);
      std::copy_n(c0.data() + (index * N + sorted[n]) * H, H, c0_packed.data() + (index * N + n) * H);
    }
  }
  const TensorView<const float> data(x.data(), {rows, 3});
  const fastlstm::StateView<float> caller{{h0.data(), {4, N, P}}, {c0.data(), {4, N, H}}};
  const fastlstm::StateView<float> packed{{h0_packed.data(), {4, N, P}}, {c0_packed.data(), {4, N, H}}};
  const auto by_caller = model.forward_packed(data, batch_sizes, &caller, &sorted);
  const auto by_packed = model.forward_packed(data, batch_sizes, &packed);
  check_close(by_caller.output, as_double(by_packed.output), 0);
  for (int64_t index = 0; index < 4; ++index) {
    for (int64_t n = 0; n < N; ++n) {
      CAPTURE(index);
      CAPTURE(n);
      check_close(by_caller.h_n.data() + (index * N + sorted[n]) * P,
                  std::vector<double>(by_packed.h_n.data() + (index * N + n) * P,
                                      by_packed.h_n.data() + (index * N + n + 1) * P), 0);
      check_close(by_caller.c_n.data() + (index * N + sorted[n]) * H,
                  std::vector<double>(by_packed.c_n.data() + (index * N + n) * H,
                                      by_packed.c_n.data() + (index * N + n + 1) * H), 0);
    }
  }
}

TEST_CASE("packed: sorted_indices that are not a permutation of the batch are refused by name") {
  const Lstm<float> model(make_config(3, 4), 1);
  const auto x = random_values<float>(4 * 3, 9);
  const TensorView<const float> data(x.data(), {4, 3});
  for (const std::vector<int64_t>& bad : {std::vector<int64_t>{0}, {0, 0}, {0, 2}, {-1, 0}}) {
    CHECK_THROWS_WITH_AS(model.forward_packed(data, {2, 2}, nullptr, &bad), doctest::Contains("sorted_indices"),
                         fastlstm::InvalidArgument);
  }
}
