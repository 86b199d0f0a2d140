// Parameters: torch's names, shapes and order; updates validated before anything is written.
#include <string>
#include <utility>
#include <vector>

#include "helpers.hpp"

using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::LstmWeights;
using fastlstm::ParameterKind;
using fastlstm::TensorView;
using fastlstm_test::make_config;
using Shape = std::vector<int64_t>;

TEST_CASE("weights: names and shapes are torch.nn.LSTM's, in state_dict order") {
  // torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2).state_dict()
  const std::vector<std::pair<std::string, Shape>> expected = {
      {"weight_ih_l0", {16, 3}},         {"weight_hh_l0", {16, 2}},         {"bias_ih_l0", {16}},
      {"bias_hh_l0", {16}},              {"weight_hr_l0", {2, 4}},          {"weight_ih_l0_reverse", {16, 3}},
      {"weight_hh_l0_reverse", {16, 2}}, {"bias_ih_l0_reverse", {16}},      {"bias_hh_l0_reverse", {16}},
      {"weight_hr_l0_reverse", {2, 4}},  {"weight_ih_l1", {16, 4}},         {"weight_hh_l1", {16, 2}},
      {"bias_ih_l1", {16}},              {"bias_hh_l1", {16}},              {"weight_hr_l1", {2, 4}},
      {"weight_ih_l1_reverse", {16, 4}}, {"weight_hh_l1_reverse", {16, 2}}, {"bias_ih_l1_reverse", {16}},
      {"bias_hh_l1_reverse", {16}},      {"weight_hr_l1_reverse", {2, 4}},
  };
  const auto specs = fastlstm::parameter_specs(make_config(3, 4, 2, true, 2));
  REQUIRE(specs.size() == expected.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    CAPTURE(i);
    CHECK(specs[i].name == expected[i].first);
    CHECK(specs[i].shape == expected[i].second);
  }
  CHECK(specs[6].layer == 0);
  CHECK(specs[6].direction == 1);
  CHECK(specs[6].kind == ParameterKind::weight_hh);
  CHECK(specs[10].layer == 1);
  CHECK(specs[10].numel() == 64);
}

TEST_CASE("weights: without bias and projection there are only weight_ih and weight_hh") {
  const LstmWeights<float> weights(make_config(5, 3, 1, false, 0, /*bias=*/false));
  REQUIRE(weights.parameters().size() == 2);
  CHECK(weights.parameters()[0].spec.name == "weight_ih_l0");
  CHECK(weights.parameters()[1].spec.shape == Shape{12, 3});
  CHECK(weights.find("bias_ih_l0") == nullptr);
  CHECK(weights.find(0, 0, ParameterKind::bias_hh) == nullptr);
  CHECK(weights.find(0, 0, ParameterKind::weight_hr) == nullptr);
  CHECK(weights.find(0, 0, ParameterKind::weight_hh) == weights.find("weight_hh_l0"));
}

TEST_CASE("weights: new weights are zero-filled and sized as their spec") {
  const LstmWeights<double> weights(make_config(2, 3, 2));
  for (const auto& parameter : weights.parameters()) {
    CHECK(static_cast<int64_t>(parameter.values.size()) == parameter.spec.numel());
    CHECK(std::all_of(parameter.values.begin(), parameter.values.end(), [](double v) { return v == 0.0; }));
  }
}

TEST_CASE("weights: set_parameter copies a strided view into torch's row-major layout") {
  Lstm<float> model(make_config(2, 1), 1);  // weight_ih_l0: (4, 2)
  std::vector<float> transposed = {0, 1, 2, 3, 10, 11, 12, 13};  // (2, 4) holding weight_ih^T
  TensorView<const float> view;
  view.data = transposed.data();
  view.rank = 2;
  view.shape = {4, 2, 0};
  view.strides = {1, 4, 0};
  model.set_parameter("weight_ih_l0", view);
  CHECK(model.weights().find("weight_ih_l0")->values == std::vector<float>{0, 10, 1, 11, 2, 12, 3, 13});
}

TEST_CASE("weights: a wrong name or shape throws and leaves the model unchanged") {
  Lstm<float> model(make_config(2, 1), 1);
  std::vector<float> four = {1, 2, 3, 4};
  std::vector<float> eight(8, 5.0f);
  CHECK_THROWS_WITH_AS(model.set_parameter("weight_ih_l1", TensorView<const float>(four.data(), {4})),
                       "unknown parameter 'weight_ih_l1'", InvalidArgument);
  CHECK_THROWS_WITH_AS(model.set_parameter("bias_ih_l0", TensorView<const float>(four.data(), {2, 2})),
                       "bias_ih_l0: expected shape (4,), got (2, 2)", InvalidArgument);
  // All-or-nothing: the valid first entry is not written when the second is wrong.
  CHECK_THROWS_WITH_AS(model.set_parameters({{"weight_ih_l0", TensorView<const float>(eight.data(), {4, 2})},
                                             {"bias_hh_l0", TensorView<const float>(eight.data(), {8})}}),
                       "bias_hh_l0: expected shape (4,), got (8,)", InvalidArgument);
  for (const auto& parameter : model.weights().parameters()) {
    CAPTURE(parameter.spec.name);
    CHECK(std::all_of(parameter.values.begin(), parameter.values.end(), [](float v) { return v == 0.0f; }));
  }
}

TEST_CASE("weights: set_weights needs the model's configuration") {
  Lstm<float> model(make_config(2, 3), 1);
  CHECK_THROWS_WITH_AS(model.set_weights(LstmWeights<float>(make_config(2, 4))), doctest::Contains("configuration"),
                       InvalidArgument);
  const auto weights = fastlstm_test::random_weights<float>(make_config(2, 3), 7);
  model.set_weights(weights);
  CHECK(model.weights().find("weight_hh_l0")->values == weights.find("weight_hh_l0")->values);
}
