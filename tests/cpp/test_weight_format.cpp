// Models whose weight matrices are held in 16 bits (LstmOptions::weight_format): the weights are
// rounded when set, biases are not, and the model computes exactly what a float32 model with the
// rounded weights computes, within the formats' error of the float32 model itself.
#include <cmath>
#include <vector>

#include "helpers.hpp"

using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm::LstmOptions;
using fastlstm::LstmWeights;
using fastlstm::TensorView;
using fastlstm::WeightFormat;
using fastlstm_test::make_config;
using fastlstm_test::random_values;

namespace {

LstmOptions with_format(WeightFormat format) {
  LstmOptions options;
  options.num_threads = 2;
  options.weight_format = format;
  return options;
}

// Weights drawn as torch draws them: U(-1/sqrt(H), 1/sqrt(H)).
LstmWeights<float> torch_like_weights(const LstmConfig& config, unsigned seed) {
  LstmWeights<float> weights(config);
  const double bound = 1.0 / std::sqrt(double(config.hidden_size));
  for (auto& parameter : weights.parameters()) {
    parameter.values = random_values<float>(parameter.values.size(), seed++, bound);
  }
  return weights;
}

double max_difference(const fastlstm::Tensor<float>& a, const fastlstm::Tensor<float>& b) {
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
  return worst;
}

}  // namespace

TEST_CASE("weight format: 16-bit models compute with their rounded weights, within the format's error") {
  const LstmConfig configs[] = {make_config(16, 32, 2, true, 8), make_config(64, 128, 2),
                                make_config(32, 256, 1, false, 0, false, true)};
  for (const LstmConfig& config : configs) {
    const LstmWeights<float> weights = torch_like_weights(config, 91);
    const Lstm<float> reference(weights, 2);
    const int64_t N = 3, L = 20;
    const auto x = random_values<float>(static_cast<size_t>(N * L * config.input_size), 92);
    const TensorView<const float> input(x.data(), {config.batch_first ? N : L, config.batch_first ? L : N,
                                                   config.input_size});
    const auto expected = reference.forward(input);
    for (const auto& [format, tolerance] : {std::pair{WeightFormat::float16, 3e-4}, std::pair{WeightFormat::bfloat16, 3e-3}}) {
      CAPTURE(fastlstm::weight_format_name<float>(format));
      const Lstm<float> model(weights, with_format(format));
      CHECK(model.weight_format() == format);
      // The weights it holds are the rounded ones; the biases are as given.
      const Lstm<float> rounded(model.copy_weights(), 2);
      for (const auto& parameter : model.weights().parameters()) {
        const auto& given = weights.find(parameter.spec.name)->values;
        const bool is_bias = parameter.spec.kind == fastlstm::ParameterKind::bias_ih ||
                             parameter.spec.kind == fastlstm::ParameterKind::bias_hh;
        CHECK((parameter.values == given) == (is_bias || given.empty()));
      }
      const auto actual = model.forward(input);
      CHECK(max_difference(actual.output, rounded.forward(input).output) <= 1e-6);
      const double error = max_difference(actual.output, expected.output);
      CHECK(error > 0);
      CHECK(error <= tolerance);
      CHECK(max_difference(actual.h_n, expected.h_n) <= tolerance);
    }
  }
}

TEST_CASE("weight format: set_parameter rounds, and a stream steps as the forward does") {
  const LstmConfig config = make_config(8, 16, 1);
  Lstm<float> model(torch_like_weights(config, 93), with_format(WeightFormat::bfloat16));
  const std::vector<float> values(16 * 4 * 16, 0.1f);
  model.set_parameter("weight_hh_l0", TensorView<const float>(values.data(), {64, 16}));
  CHECK(model.parameter("weight_hh_l0").data()[0] == fastlstm_test::bfloat16_value(0.1f));
  const auto x = random_values<float>(5 * 2 * 8, 94);
  const auto full = model.forward(TensorView<const float>(x.data(), {5, 2, 8}));
  auto state = model.make_state(2);
  const auto chunk = model.forward(TensorView<const float>(x.data(), {5, 2, 8}), state);
  CHECK(max_difference(chunk, full.output) == 0);
}

TEST_CASE("weight format: 16-bit weights need a float32 model") {
  CHECK_THROWS_WITH_AS(Lstm<double>(make_config(4, 8), with_format(WeightFormat::float16)),
                       doctest::Contains("weight_format: float16 weights need a float32 model"), InvalidArgument);
  CHECK(std::string(fastlstm::weight_format_name<double>(WeightFormat::native)) == "float64");
  CHECK(std::string(fastlstm::weight_format_name<float>(WeightFormat::bfloat16)) == "bfloat16");
}

TEST_CASE("weight format: a 16-bit model saves F16/BF16 tensors and loads back in its format") {
  const fastlstm_test::TempDir dir;
  const LstmConfig config = make_config(6, 12, 2, true, 3);
  for (WeightFormat format : {WeightFormat::float16, WeightFormat::bfloat16}) {
    const Lstm<float> model(torch_like_weights(config, 95), with_format(format));
    const std::string path = (dir.path / "model.safetensors").string();
    model.save(path);
    CHECK(fastlstm::inspect_model_file(path).weight_format == format);
    const Lstm<float> loaded = Lstm<float>::load(path);
    CHECK(loaded.weight_format() == format);
    for (const auto& parameter : model.weights().parameters()) {
      CHECK(loaded.weights().find(parameter.spec.name)->values == parameter.values);
    }
    LstmOptions full;
    full.weight_format = WeightFormat::native;
    CHECK(Lstm<double>::load(path, "", full).weight_format() == WeightFormat::native);
    const auto x = random_values<float>(4 * 2 * 6, 96);
    const TensorView<const float> input(x.data(), {4, 2, 6});
    CHECK(max_difference(loaded.forward(input).output, model.forward(input).output) == 0);
  }
}

TEST_CASE("weight format: int8 holds integers times row scales, kept by set_weights, files and loads") {
  const fastlstm_test::TempDir dir;
  const LstmConfig config = make_config(10, 24, 2, true, 5);
  const LstmWeights<float> weights = torch_like_weights(config, 97);
  const Lstm<float> model(weights, with_format(WeightFormat::int8));
  CHECK(std::string(fastlstm::weight_format_name<float>(WeightFormat::int8)) == "int8");
  // The model holds its matrices as codes (a byte each) and scales; copies have the values.
  const LstmWeights<float> copy = model.copy_weights();
  for (const auto& parameter : model.weights().parameters()) {
    const bool matrix = parameter.spec.name.rfind("weight", 0) == 0;
    const auto& copied = *copy.find(parameter.spec.name);
    REQUIRE(parameter.scales.size() == (matrix ? static_cast<size_t>(parameter.spec.shape[0]) : 0u));
    CHECK(parameter.codes.size() == (matrix ? static_cast<size_t>(parameter.spec.numel()) : 0u));
    CHECK(parameter.values.size() == (matrix ? 0u : static_cast<size_t>(parameter.spec.numel())));
    REQUIRE(copied.values.size() == static_cast<size_t>(parameter.spec.numel()));
    CHECK(copied.codes.empty());
    for (size_t i = 0; matrix && i < copied.values.size(); ++i) {
      const float scale = parameter.scales[i / static_cast<size_t>(parameter.spec.shape[1])];
      CHECK(copied.values[i] == float(parameter.codes[i]) * scale);
      CHECK(std::abs(int(parameter.codes[i])) <= 127);
    }
    const auto single = model.parameter(parameter.spec.name);
    CHECK(std::vector<float>(single.data(), single.data() + single.numel()) == copied.values);
  }
  // Scales given with the weights are kept: a coarser scale makes coarser values.
  LstmWeights<float> coarse = model.copy_weights();
  auto* w_hh = coarse.find("weight_hh_l0");
  for (float& scale : w_hh->scales) scale *= 4;
  Lstm<float> rescaled(model.copy_weights(), with_format(WeightFormat::int8));
  rescaled.set_weights(coarse);
  CHECK(rescaled.weights().find("weight_hh_l0")->scales == w_hh->scales);
  CHECK(rescaled.copy_weights().find("weight_hh_l0")->values != copy.find("weight_hh_l0")->values);
  // A model's own weights (codes) set into another give the same model.
  Lstm<float> again(weights, with_format(WeightFormat::int8));
  again.set_weights(rescaled.weights());
  // Files keep the integers and the scales; the model loads as int8.
  const std::string path = (dir.path / "int8.safetensors").string();
  rescaled.save(path);
  CHECK(fastlstm::inspect_model_file(path).weight_format == WeightFormat::int8);
  const Lstm<float> loaded = Lstm<float>::load(path);
  CHECK(loaded.weight_format() == WeightFormat::int8);
  for (const auto& parameter : rescaled.weights().parameters()) {
    CHECK(loaded.weights().find(parameter.spec.name)->codes == parameter.codes);
    CHECK(loaded.weights().find(parameter.spec.name)->values == parameter.values);
    CHECK(loaded.weights().find(parameter.spec.name)->scales == parameter.scales);
  }
  const auto x = random_values<float>(4 * 2 * 10, 98);
  const TensorView<const float> input(x.data(), {4, 2, 10});
  CHECK(max_difference(loaded.forward(input).output, rescaled.forward(input).output) == 0);
  CHECK(max_difference(again.forward(input).output, rescaled.forward(input).output) == 0);
}

TEST_CASE("weight format: int8 refuses weights that are not finite and leaves the model unchanged") {
  const LstmConfig config = make_config(4, 8, 1);
  Lstm<float> model(torch_like_weights(config, 99), with_format(WeightFormat::int8));
  const auto before = model.copy_weights();
  std::vector<float> values(32 * 4, 0.1f);
  // (compared through copy_weights: the model itself holds codes)
  values[17] = std::nanf("");
  CHECK_THROWS_WITH_AS(model.set_parameter("weight_ih_l0", TensorView<const float>(values.data(), {32, 4})),
                       doctest::Contains("weight_ih_l0: int8 weights must be finite"), InvalidArgument);
  const auto after = model.copy_weights();
  for (const auto& parameter : after.parameters()) {
    CHECK(parameter.values == before.find(parameter.spec.name)->values);
  }
  // Codes or scales of the wrong count, and values of the wrong count, are named errors.
  LstmWeights<float> bad_codes = model.weights();
  bad_codes.find("weight_hh_l0")->codes.pop_back();
  CHECK_THROWS_WITH_AS(model.set_weights(bad_codes), doctest::Contains("weight_hh_l0: expected 256 int8 codes"),
                       InvalidArgument);
  LstmWeights<float> bad_scales = model.copy_weights();
  bad_scales.find("weight_ih_l0")->scales.resize(3);
  CHECK_THROWS_WITH_AS(model.set_weights(bad_scales), doctest::Contains("weight_ih_l0: expected one int8 scale per row (32), got 3"),
                       InvalidArgument);
  LstmWeights<float> bad_values = model.copy_weights();
  bad_values.find("bias_ih_l0")->values.resize(5);
  CHECK_THROWS_WITH_AS(model.set_weights(bad_values), doctest::Contains("bias_ih_l0: expected 32 values"), InvalidArgument);
  const auto unchanged = model.copy_weights();
  for (const auto& parameter : unchanged.parameters()) {
    CHECK(parameter.values == before.find(parameter.spec.name)->values);
  }
  LstmOptions on_gpu = with_format(WeightFormat::int8);
  on_gpu.device = fastlstm::Device::cuda(0);
  CHECK_THROWS_WITH_AS(Lstm<float>(config, on_gpu), doctest::Contains("weight_format: int8 runs on the CPU"),
                       InvalidArgument);
}

TEST_CASE("weight format: int8_input_bits is 8 or 16 and a file keeps it") {
  const fastlstm_test::TempDir dir;
  const LstmConfig config = make_config(6, 16, 1);
  LstmOptions options = with_format(WeightFormat::int8);
  options.int8_input_bits = 12;
  CHECK_THROWS_WITH_AS(Lstm<float>(config, options), doctest::Contains("int8_input_bits must be 8 or 16, got 12"),
                       InvalidArgument);
  options.int8_input_bits = 8;
  const Lstm<float> coarse(torch_like_weights(config, 101), options);
  const Lstm<float> fine(torch_like_weights(config, 101), with_format(WeightFormat::int8));
  CHECK(coarse.int8_input_bits() == 8);
  CHECK(fine.int8_input_bits() == 16);
  const std::string path = (dir.path / "coarse.safetensors").string();
  coarse.save(path);
  CHECK(fastlstm::inspect_model_file(path).int8_input_bits == 8);
  const Lstm<float> loaded = Lstm<float>::load(path);
  CHECK(loaded.int8_input_bits() == 8);
  const auto x = random_values<float>(5 * 2 * 6, 102);
  const TensorView<const float> input(x.data(), {5, 2, 6});
  CHECK(max_difference(loaded.forward(input).output, coarse.forward(input).output) == 0);
  CHECK(max_difference(fine.forward(input).output, coarse.forward(input).output) > 0);
}
