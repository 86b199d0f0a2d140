// LstmConfig: derived sizes and validation, which names the first bad field.
#include "helpers.hpp"

using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm_test::make_config;

TEST_CASE("config: derived sizes follow torch (H_out, D, per-layer input width)") {
  const LstmConfig plain = make_config(10, 20, 3);
  CHECK(plain.num_directions() == 1);
  CHECK(plain.output_size() == 20);
  CHECK(plain.layer_input_size(0) == 10);
  CHECK(plain.layer_input_size(2) == 20);

  const LstmConfig projected = make_config(10, 20, 2, true, 5);
  CHECK(projected.num_directions() == 2);
  CHECK(projected.output_size() == 5);
  CHECK(projected.layer_input_size(1) == 10);  // both directions' projected outputs
  CHECK_NOTHROW(projected.validate());
}

TEST_CASE("config: a default-constructed config is invalid until input_size and hidden_size are set") {
  CHECK_THROWS_WITH_AS(LstmConfig().validate(), doctest::Contains("input_size"), InvalidArgument);
}

TEST_CASE("config: validation names the bad field") {
  CHECK_THROWS_WITH_AS(make_config(0, 4).validate(), "input_size must be greater than zero", InvalidArgument);
  CHECK_THROWS_WITH_AS(make_config(3, -1).validate(), "hidden_size must be greater than zero", InvalidArgument);
  CHECK_THROWS_WITH_AS(make_config(3, 4, 0).validate(), "num_layers must be greater than zero", InvalidArgument);
  CHECK_THROWS_WITH_AS(make_config(3, 4, 1, false, -2).validate(), doctest::Contains("proj_size"), InvalidArgument);
  CHECK_THROWS_WITH_AS(make_config(3, 4, 1, false, 4).validate(), "proj_size has to be smaller than hidden_size",
                       InvalidArgument);
}

TEST_CASE("config: sizes whose weights would overflow are refused, not allocated") {
  CHECK_THROWS_WITH_AS(make_config(1, int64_t(1) << 40).validate(), doctest::Contains("overflows"), InvalidArgument);
  CHECK_THROWS_AS(Lstm<float>(make_config(int64_t(1) << 62, 4)), InvalidArgument);
}

TEST_CASE("config: models refuse an invalid config and a negative thread count") {
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(0, 4)), doctest::Contains("input_size"), InvalidArgument);
  CHECK_THROWS_WITH_AS(Lstm<double>(make_config(3, 4, 1, false, 7)), doctest::Contains("proj_size"),
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(3, 4), -1), doctest::Contains("num_threads"), InvalidArgument);
  CHECK(Lstm<float>(make_config(3, 4), 2).num_threads() == 2);
  CHECK(Lstm<float>(make_config(3, 4)).num_threads() == fastlstm::default_num_threads());
}

TEST_CASE("config: InvalidArgument is a fastlstm::Error and a std::runtime_error") {
  CHECK_THROWS_AS(make_config(0, 4).validate(), fastlstm::Error);
  CHECK_THROWS_AS(make_config(0, 4).validate(), std::runtime_error);
}
