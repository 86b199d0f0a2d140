// The model file from C++: Lstm::save then Lstm::load gives the same model; bad files throw.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <locale>
#include <string>
#include <vector>

#include "helpers.hpp"

using fastlstm::FileError;
using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::LstmWeights;
using fastlstm::TensorView;
using fastlstm_test::check_close;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;
using fastlstm_test::TempDir;


TEST_CASE("model file: save then load gives the configuration, the weights and the outputs") {
  TempDir dir;
  const std::string path = (dir.path / "model.safetensors").string();
  auto config = make_config(3, 5, 2, true, 2);
  config.batch_first = true;
  config.dropout = 0.3;
  const Lstm<float> model(random_weights<float>(config, 41), 1);
  model.save(path);

  const Lstm<float> loaded = Lstm<float>::load(path, "", 1);
  CHECK(loaded.config().batch_first);
  CHECK(loaded.config().dropout == 0.3);
  CHECK(loaded.config().proj_size == 2);
  CHECK(loaded.config().num_layers == 2);
  for (const auto& parameter : model.weights().parameters()) {
    CAPTURE(parameter.spec.name);
    CHECK(loaded.weights().find(parameter.spec.name)->values == parameter.values);
  }
  const auto x = random_values<float>(2 * 4 * 3, 42);
  const auto a = model.forward(TensorView<const float>(x.data(), {2, 4, 3}));
  const auto b = loaded.forward(TensorView<const float>(x.data(), {2, 4, 3}));
  check_close(b.output, std::vector<double>(a.output.data(), a.output.data() + a.output.numel()), 0.0);

  // A float32 file loads as double too, cast as load_state_dict casts.
  const auto as_double = Lstm<double>::load(path);
  CHECK(as_double.weights().find("weight_hr_l1_reverse")->values[0] ==
        static_cast<double>(model.weights().find("weight_hr_l1_reverse")->values[0]));
}

TEST_CASE("a dropout outside [0, 1] is InvalidArgument naming it") {
  for (double dropout : {-0.1, 1.5, std::nan("")}) {
    auto config = make_config(3, 5, 2, true, 0);
    config.dropout = dropout;
    CHECK_THROWS_WITH_AS(config.validate(), doctest::Contains("dropout should be a number in range [0, 1]"),
                         InvalidArgument);
  }
}

TEST_CASE("model file: a missing file is a FileError carrying the path") {
  TempDir dir;
  const std::string path = (dir.path / "missing.safetensors").string();
  try {
    Lstm<float>::load(path);
    FAIL("load of a missing file did not throw");
  } catch (const FileError& error) {
    CHECK(error.path() == path);
    CHECK(error.errno_value() != 0);
  }
}

TEST_CASE("model file: a file that is not a model is InvalidArgument naming the file") {
  TempDir dir;
  const std::string path = (dir.path / "garbage.safetensors").string();
  std::ofstream(path, std::ios::binary) << "this is not a safetensors file";
  CHECK_THROWS_WITH_AS(Lstm<float>::load(path), doctest::Contains(path.c_str()), InvalidArgument);
}

namespace {
// A locale whose decimal separator is a comma, as a service's own locale may be.
struct CommaDecimals : std::numpunct<char> {
  char do_decimal_point() const override { return ','; }
};
}  // namespace

TEST_CASE("model file: dropout is written and read as '0.25' whatever the program's locale") {
  TempDir dir;
  const std::string path = (dir.path / "model.safetensors").string();
  auto config = make_config(3, 5, 2, true, 0);
  config.dropout = 0.25;
  const std::locale before = std::locale::global(std::locale(std::locale::classic(), new CommaDecimals));
  std::string bytes;
  double loaded = -1;
  try {
    const Lstm<float> model(random_weights<float>(config, 7), 1);
    bytes = fastlstm::model_file_bytes(model.weights());
    model.save(path);
    loaded = Lstm<float>::load(path, "", 1).config().dropout;
  } catch (...) {
    std::locale::global(before);
    throw;
  }
  std::locale::global(before);
  CHECK(bytes.find("\"dropout\":\"0.25\"") != std::string::npos);
  CHECK(loaded == 0.25);
}

TEST_CASE("model file: a reverse model with peepholes keeps both, and runs backwards from C++") {
  TempDir dir;
  const std::string path = (dir.path / "reverse.safetensors").string();
  auto config = make_config(3, 5, 2);
  config.reverse = true;
  config.peephole = true;
  const Lstm<float> model(random_weights<float>(config, 43), 2);
  CHECK(model.weights().find("peephole_l1") != nullptr);
  CHECK(model.weights().find("peephole_l1")->spec.shape == std::vector<int64_t>{15});
  model.save(path);
  const Lstm<float> loaded = Lstm<float>::load(path, "", 1);
  CHECK(loaded.config().reverse);
  CHECK(loaded.config().peephole);

  const auto x = random_values<float>(2 * 3 * 3, 44);
  const auto a = model.forward(TensorView<const float>(x.data(), {2, 3, 3}));
  const auto b = loaded.forward(TensorView<const float>(x.data(), {2, 3, 3}));
  check_close(b.output, std::vector<double>(a.output.data(), a.output.data() + a.output.numel()), 0.0);
  auto forward_config = config;
  forward_config.reverse = false;
  LstmWeights<float> same_weights(forward_config);
  for (size_t i = 0; i < same_weights.parameters().size(); ++i) {
    same_weights.parameters()[i].values = model.weights().parameters()[i].values;
  }
  const Lstm<float> forward(std::move(same_weights), 1);
  // The reverse model's output is the forward model's on x reversed in time, reversed.
  std::vector<float> flipped(x.size());
  for (int64_t t = 0; t < 2; ++t) std::copy_n(x.data() + (1 - t) * 9, 9, flipped.data() + t * 9);
  const auto c = forward.forward(TensorView<const float>(flipped.data(), {2, 3, 3}));
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t k = 0; k < 15; ++k) CHECK(std::abs(a.output.data()[t * 15 + k] - c.output.data()[(1 - t) * 15 + k]) < 1e-6f);
  }
  CHECK_THROWS_AS(model.make_state(1), InvalidArgument);
}

TEST_CASE("config: reverse with bidirectional is InvalidArgument naming reverse") {
  auto config = make_config(3, 5, 1, true);
  config.reverse = true;
  CHECK_THROWS_WITH_AS(config.validate(), doctest::Contains("reverse"), InvalidArgument);
}

TEST_CASE("config: a reverse or peephole model asked for on a GPU is InvalidArgument naming the feature") {
  fastlstm::LstmOptions options;
  options.device = fastlstm::Device::cuda(0);
  auto reverse = make_config(3, 5), peephole = make_config(3, 5);
  reverse.reverse = true;
  peephole.peephole = true;
  CHECK_THROWS_WITH_AS(Lstm<float>(reverse, options), doctest::Contains("reverse: a reverse LSTM runs on the CPU"),
                       InvalidArgument);
  CHECK_THROWS_WITH_AS(Lstm<float>(peephole, options), doctest::Contains("peephole: an LSTM with peepholes runs on the CPU"),
                       InvalidArgument);
}
