// The CUDA backend driven through fastlstm::Lstm (a build with FASTLSTM_CUDA=ON): the same numbers
// as the CPU backend for host and device operands, packed batches and streams; CUDA-graph replay.
// Without a usable GPU the GPU cases are skipped, and a model asked for on one says why not.
#include <string>
#include <vector>

#include "fastlstm/cuda.hpp"
#include "helpers.hpp"

using fastlstm::Device;
using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm::LstmOptions;
using fastlstm::Tensor;
using fastlstm::TensorView;
using fastlstm_test::check_close;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;

namespace {

bool gpu_present() {
  static const bool present = fastlstm::cuda::device_count() > 0;
  return present;
}

LstmOptions on_gpu() {
  LstmOptions options;
  options.device = Device::cuda(0);
  return options;
}

std::vector<double> host_values(const Tensor<float>& tensor) {
  const Tensor<float> host = fastlstm::cuda::copy_to(tensor.view(), Device::cpu());
  return {host.data(), host.data() + host.numel()};
}

void check_same(const fastlstm::LstmOutput<float>& gpu, const fastlstm::LstmOutput<float>& cpu) {
  check_close(host_values(gpu.output).data(), host_values(cpu.output), 1e-5);
  check_close(host_values(gpu.h_n).data(), host_values(cpu.h_n), 1e-5);
  check_close(host_values(gpu.c_n).data(), host_values(cpu.c_n), 1e-5);
}

}  // namespace

TEST_CASE("cuda: without a usable GPU a model asked for on one says why" * doctest::skip(gpu_present())) {
  std::string reason;
  CHECK(fastlstm::cuda::device_count(&reason) == 0);
  CHECK_FALSE(reason.empty());
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(3, 4), on_gpu()), doctest::Contains(reason.c_str()), fastlstm::Error);
}

TEST_CASE("cuda: forward on the GPU gives the CPU's numbers, for host and device operands" *
          doctest::skip(!gpu_present())) {
  for (const LstmConfig& config : {make_config(5, 7, 2, true, 3), make_config(4, 6, 3, false, 0, false, true)}) {
    const auto weights = random_weights<float>(config, 41);
    const Lstm<float> cpu(weights, 1);
    const Lstm<float> gpu(weights, on_gpu());
    CHECK(gpu.device() == Device::cuda(0));
    const int64_t L = 6, N = 3, S = config.num_directions() * config.num_layers;
    const auto x = random_values<float>(static_cast<size_t>(L * N * config.input_size), 42);
    const auto h0 = random_values<float>(static_cast<size_t>(S * N * config.output_size()), 43);
    const auto c0 = random_values<float>(static_cast<size_t>(S * N * config.hidden_size), 44);
    const TensorView<const float> input(x.data(), {config.batch_first ? N : L, config.batch_first ? L : N,
                                                   config.input_size});
    const fastlstm::StateView<float> state{{h0.data(), {S, N, config.output_size()}},
                                           {c0.data(), {S, N, config.hidden_size}}};
    const auto expected = cpu.forward(input, &state);

    const auto from_host = gpu.forward(input, &state);
    CHECK(from_host.output.device().is_cpu());
    check_same(from_host, expected);

    const Tensor<float> x_gpu = fastlstm::cuda::copy_to(input, Device::cuda(0));
    const Tensor<float> h_gpu = fastlstm::cuda::copy_to(state.h, Device::cuda(0));
    const auto from_device = gpu.forward(x_gpu.view(), &state);  // a host state with device input
    CHECK(from_device.output.device() == Device::cuda(0));
    CHECK(fastlstm::cuda::pointer_device(from_device.output.data()) == Device::cuda(0));
    check_same(from_device, expected);
    const fastlstm::StateView<float> mixed{h_gpu.view(), state.c};
    check_same(gpu.forward(input, &mixed), expected);
  }
}

TEST_CASE("cuda: a packed batch with sorted_indices gives the CPU's numbers" * doctest::skip(!gpu_present())) {
  const LstmConfig config = make_config(3, 5, 2, true, 2);
  const auto weights = random_weights<float>(config, 51);
  const Lstm<float> cpu(weights, 1);
  const Lstm<float> gpu(weights, on_gpu());
  const auto x = random_values<float>(9 * 3, 52);
  const std::vector<int64_t> batch_sizes{3, 3, 2, 1}, sorted{1, 2, 0};
  const auto h0 = random_values<float>(4 * 3 * 2, 53);
  const auto c0 = random_values<float>(4 * 3 * 5, 54);
  const fastlstm::StateView<float> state{{h0.data(), {4, 3, 2}}, {c0.data(), {4, 3, 5}}};
  const TensorView<const float> data(x.data(), {9, 3});
  check_same(gpu.forward_packed(data, batch_sizes, &state, &sorted),
             cpu.forward_packed(data, batch_sizes, &state, &sorted));
}

TEST_CASE("cuda: a stream on the GPU steps as the CPU's does, its state on the device" *
          doctest::skip(!gpu_present())) {
  const LstmConfig config = make_config(4, 8, 2, false, 3);
  const auto weights = random_weights<float>(config, 61);
  const Lstm<float> cpu(weights, 1);
  const Lstm<float> gpu(weights, on_gpu());
  auto cpu_state = cpu.make_state(2);
  auto gpu_state = gpu.make_state(2);
  CHECK(gpu_state.h.device() == Device::cuda(0));
  const auto x = random_values<float>(5 * 2 * 4, 62);
  for (int64_t t = 0; t < 5; ++t) {
    const TensorView<const float> x_t(x.data() + t * 2 * 4, {2, 4});
    const Tensor<float> expected = cpu.step(x_t, cpu_state);
    const Tensor<float> on_device = fastlstm::cuda::copy_to(x_t, Device::cuda(0));
    const Tensor<float> actual = t % 2 ? gpu.step(x_t, gpu_state) : gpu.step(on_device.view(), gpu_state);
    CHECK(actual.device() == (t % 2 ? Device::cpu() : Device::cuda(0)));
    check_close(host_values(actual).data(), host_values(expected), 1e-5);
  }
  const TensorView<const float> chunk(x.data(), {5, 2, 4});
  check_close(host_values(gpu.forward(chunk, gpu_state)).data(), host_values(cpu.forward(chunk, cpu_state)), 1e-5);
  const auto [h_gpu, c_gpu] = gpu.read_state(gpu_state);
  const auto [h_cpu, c_cpu] = cpu.read_state(cpu_state);
  check_close(h_gpu, host_values(h_cpu), 1e-5);
  check_close(c_gpu, host_values(c_cpu), 1e-5);
  gpu.reset_state(gpu_state);
  const auto [h_zero, c_zero] = gpu.read_state(gpu_state);
  check_close(c_zero, std::vector<double>(static_cast<size_t>(c_zero.numel()), 0.0), 0);
}

TEST_CASE("cuda: the time loop replays as a graph from a shape's second run, following weight changes" *
          doctest::skip(!gpu_present())) {
  const LstmConfig config = make_config(4, 16, 2, true);
  auto weights = random_weights<float>(config, 71);
  Lstm<float> gpu(weights, on_gpu());
  const auto x = random_values<float>(6 * 3 * 4, 72);
  const TensorView<const float> input(x.data(), {6, 3, 4});
  const auto first = gpu.forward(input);
  for (int run = 0; run < 3; ++run) check_same(gpu.forward(input), first);
  CHECK(gpu.graph_replays() == 3);
  auto& w_hh = weights.find("weight_hh_l1_reverse")->values;
  for (float& value : w_hh) value *= -1.5f;
  gpu.set_weights(weights);
  check_same(gpu.forward(input), Lstm<float>(weights, 1).forward(input));
}
