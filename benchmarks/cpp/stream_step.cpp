// Case S7 from C++: one LSTM step per call (N=1, I=H=256, 1 layer), (h, c) carried in a State.
// Prints the median per-step time of several runs of 5000 steps.
//   stream_step [threads] [float32 | float16 | bfloat16 | int8]   (the model's weight format)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include <fastlstm/fastlstm.hpp>

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const char* format_name = argc > 2 ? argv[2] : "float32";
  fastlstm::LstmOptions options;
  options.num_threads = threads;
  if (std::strcmp(format_name, "float16") == 0) {
    options.weight_format = fastlstm::WeightFormat::float16;
  } else if (std::strcmp(format_name, "bfloat16") == 0) {
    options.weight_format = fastlstm::WeightFormat::bfloat16;
  } else if (std::strcmp(format_name, "int8") == 0) {
    options.weight_format = fastlstm::WeightFormat::int8;
  } else if (std::strcmp(format_name, "float32") != 0) {
    std::fprintf(stderr, "weight format: expected float32, float16, bfloat16 or int8, got %s\n", format_name);
    return 2;
  }
  constexpr int64_t kSize = 256, kSteps = 5000;
  fastlstm::LstmConfig config;
  config.input_size = kSize;
  config.hidden_size = kSize;
  fastlstm::LstmWeights<float> weights(config);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(-0.0625f, 0.0625f);
  for (auto& parameter : weights.parameters()) {
    for (float& value : parameter.values) value = uniform(rng);
  }
  const fastlstm::Lstm<float> model(std::move(weights), options);
  auto state = model.make_state(1);
  std::vector<float> x(kSize), y(kSize);
  for (float& value : x) value = uniform(rng);
  const fastlstm::TensorView<const float> input(x.data(), {1, kSize});
  const fastlstm::TensorView<float> output(y.data(), {1, kSize});

  for (int i = 0; i < 1000; ++i) model.step(input, state, output);  // warm up
  std::vector<double> per_step_us;
  for (int run = 0; run < 7; ++run) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < kSteps; ++i) model.step(input, state, output);
    const std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
    per_step_us.push_back(elapsed.count() / kSteps);
  }
  std::sort(per_step_us.begin(), per_step_us.end());
  std::printf("S7 from C++ (N=1, I=H=256), %s weights, %d thread(s): median %.2f us/step (min %.2f, max %.2f)\n",
              format_name, model.num_threads(), per_step_us[per_step_us.size() / 2], per_step_us.front(), per_step_us.back());
  return 0;
}
