// Misuse of forward() and forward_packed(): InvalidArgument naming the argument and the expected shape.
#include <vector>

#include "helpers.hpp"

using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::StateView;
using fastlstm::TensorView;
using fastlstm_test::make_config;

TEST_CASE("errors: forward input must be 3-D with size(-1) == input_size and at least one step") {
  const Lstm<float> model(make_config(3, 4), 1);
  std::vector<float> x(30);
  CHECK_THROWS_WITH_AS(model.forward(TensorView<const float>(x.data(), {10, 3})),
                       "input: expected 3 dimensions (L, N, H_in), got 2", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward(TensorView<const float>(x.data(), {2, 3, 5})),
                       "input: expected size(-1) == input_size = 3, got 5", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward(TensorView<const float>(x.data(), {0, 2, 3})),
                       doctest::Contains("sequence length must be at least 1"), InvalidArgument);
}

TEST_CASE("errors: batch_first models say (N, L, H_in)") {
  const Lstm<float> model(make_config(3, 4, 1, false, 0, true, /*batch_first=*/true), 1);
  std::vector<float> x(6);
  CHECK_THROWS_WITH_AS(model.forward(TensorView<const float>(x.data(), {2, 3})),
                       "input: expected 3 dimensions (N, L, H_in), got 2", InvalidArgument);
}

TEST_CASE("errors: negative strides and null data are refused") {
  const Lstm<float> model(make_config(3, 4), 1);
  std::vector<float> x(6);
  TensorView<const float> view(x.data(), {1, 2, 3});
  view.strides[0] = -6;
  CHECK_THROWS_WITH_AS(model.forward(view), "input: negative stride", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward(TensorView<const float>(nullptr, {1, 2, 3})), "input: null data pointer",
                       InvalidArgument);
}

TEST_CASE("errors: h_0 and c_0 must be (D*num_layers, N, H_out) and (D*num_layers, N, hidden)") {
  const Lstm<float> model(make_config(3, 4, 2, true, 2), 1);
  std::vector<float> x(1 * 5 * 3), h(4 * 5 * 2), c(4 * 5 * 4);
  const TensorView<const float> input(x.data(), {1, 5, 3});
  const TensorView<const float> h_right(h.data(), {4, 5, 2}), c_right(c.data(), {4, 5, 4});
  const StateView<float> wrong_h{TensorView<const float>(h.data(), {2, 10, 2}), c_right};
  CHECK_THROWS_WITH_AS(model.forward(input, &wrong_h), "h_0: expected shape (4, 5, 2), got (2, 10, 2)",
                       InvalidArgument);
  const StateView<float> wrong_c{h_right, TensorView<const float>(c.data(), {4, 5, 2})};
  CHECK_THROWS_WITH_AS(model.forward(input, &wrong_c), "c_0: expected shape (4, 5, 4), got (4, 5, 2)",
                       InvalidArgument);
  const StateView<float> right{h_right, c_right};
  CHECK_NOTHROW(model.forward(input, &right));
}

TEST_CASE("errors: packed data must be (rows, H_in) with positive, non-increasing batch_sizes summing to rows") {
  const Lstm<float> model(make_config(3, 4), 1);
  std::vector<float> data(5 * 3);
  const TensorView<const float> rows(data.data(), {5, 3});
  CHECK_THROWS_WITH_AS(model.forward_packed(TensorView<const float>(data.data(), {1, 5, 3}), {5}),
                       "data: expected 2 dimensions (rows, H_in), got 3", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward_packed(TensorView<const float>(data.data(), {3, 5}), {3}),
                       "data: expected data.size(-1) == input_size = 3, got 5", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward_packed(rows, {}), "batch_sizes: must not be empty", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward_packed(rows, {2, 3}), doctest::Contains("non-increasing"), InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward_packed(rows, {3, 0, 2}), doctest::Contains("positive"), InvalidArgument);
  CHECK_THROWS_WITH_AS(model.forward_packed(rows, {2, 2}), "batch_sizes: sum is 4 but data has 5 rows",
                       InvalidArgument);
  CHECK_NOTHROW(model.forward_packed(rows, {3, 2}));
}
