// Hostile use of the C++ API: sizes that overflow, special files and odd paths, files replaced or
// truncated while they load, parameters read while another thread sets them. Each rejection is
// the named exception, and the model gives the same outputs after it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#endif

#include "helpers.hpp"

using fastlstm::FileError;
using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm::TensorView;
using fastlstm_test::make_config;
using fastlstm_test::TempDir;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;

namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// A small model and the output of a fixed input, to compare against after each rejected call.
struct Subject {
  Lstm<float> model{random_weights<float>(make_config(3, 5, 2), 7), 2};
  std::vector<float> x = random_values<float>(4 * 2 * 3, 11);
  std::vector<float> output() const {
    auto result = model.forward(TensorView<const float>(x.data(), {4, 2, 3}));
    return std::vector<float>(result.output.data(), result.output.data() + result.output.numel());
  }
};

}  // namespace

TEST_CASE("hostile: every size whose buffers overflow int64 is InvalidArgument naming it") {
  for (int64_t size : {int64_t(1) << 59, int64_t(1) << 61, int64_t(1) << 62, kInt64Max}) {
    CHECK_THROWS_WITH_AS(make_config(1, size).validate(), doctest::Contains("hidden_size: size overflows"),
                         InvalidArgument);
    CHECK_THROWS_WITH_AS(make_config(size, 2).validate(), doctest::Contains("input_size: size overflows"),
                         InvalidArgument);
    CHECK_THROWS_WITH_AS(make_config(1, 2, size).validate(), doctest::Contains("num_layers: size overflows"),
                         InvalidArgument);
    CHECK_THROWS_AS(Lstm<float>(make_config(1, size)), InvalidArgument);
  }
  // Sizes that fit alone but not multiplied together.
  CHECK_THROWS_WITH_AS(make_config(int64_t(1) << 40, int64_t(1) << 31).validate(), doctest::Contains("size overflows"),
                       InvalidArgument);
}

TEST_CASE("hostile: batch_sizes whose sum wraps int64 are refused, and the model is unchanged") {
  Subject subject;
  const std::vector<float> before = subject.output();
  std::vector<float> data(8 * 3, 0.f);
  for (int64_t rows : {(int64_t(1) << 61) + 1, int64_t(1) << 62, kInt64Max / 4}) {
    const std::vector<int64_t> sizes(8, rows);
    CHECK_THROWS_WITH_AS(subject.model.forward_packed(TensorView<const float>(data.data(), {8, 3}), sizes),
                         doctest::Contains("batch_sizes: size overflows"), InvalidArgument);
  }
  CHECK(subject.output() == before);
}

TEST_CASE("hostile: views whose extents and strides span more than memory are refused") {
  Subject subject;
  const std::vector<float> before = subject.output();
  float row[3] = {0, 0, 0};
  TensorView<const float> huge(row, {1, 1, 3});
  huge.shape = {int64_t(1) << 30, int64_t(1) << 28, 3};
  huge.strides = {0, 0, 1};  // every element the same three floats: a valid view of a huge input
  CHECK_THROWS_WITH_AS(subject.model.forward(huge), doctest::Contains("input: size overflows"), InvalidArgument);
  TensorView<const float> far(row, {2, 1, 3});
  far.strides = {kInt64Max / 2, 3, 1};  // its second step lies beyond any address
  CHECK_THROWS_WITH_AS(subject.model.forward(far), doctest::Contains("input: size overflows"), InvalidArgument);
  CHECK_THROWS_WITH_AS(subject.model.make_state(int64_t(1) << 62), doctest::Contains("batch_size: size overflows"),
                       InvalidArgument);
  // Few steps of a huge batch through many layers: the input fits, the states it returns do not.
  const Lstm<float> deep(make_config(3, 2, 4096), 1);
  TensorView<const float> wide(row, {1, 1, 3});
  wide.shape = {1, int64_t(1) << 50, 3};
  wide.strides = {0, 0, 1};
  CHECK_THROWS_WITH_AS(deep.forward(wide), doctest::Contains("input: size overflows"), InvalidArgument);
  CHECK(subject.output() == before);
}

TEST_CASE("hostile: num_threads beyond the limit is refused") {
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(3, 4), fastlstm::kMaxThreads + 1), doctest::Contains("num_threads"),
                       InvalidArgument);
}

TEST_CASE("hostile: a NUL in a path is InvalidArgument for load, inspect and save, and nothing is written") {
  TempDir dir;
  Subject subject;
  const std::string path = (dir.path / "model.safetensors").string();
  subject.model.save(path);
  const std::string cut = path + std::string("\0x", 2);
  CHECK_THROWS_WITH_AS(Lstm<float>::load(cut), doctest::Contains("path: contains a NUL byte"), InvalidArgument);
  CHECK_THROWS_WITH_AS(fastlstm::inspect_model_file(cut), doctest::Contains("NUL"), InvalidArgument);
  const std::string other = (dir.path / "copy.safetensors").string();
  CHECK_THROWS_WITH_AS(subject.model.save(other + std::string("\0", 1)), doctest::Contains("NUL"), InvalidArgument);
  CHECK_FALSE(std::filesystem::exists(other));
}

#if defined(__unix__)
TEST_CASE("hostile: FIFOs, directories, devices and sockets are refused at once with FileError") {
  TempDir dir;
  const std::string fifo = (dir.path / "fifo").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::vector<std::pair<std::string, std::string>> cases{
      {fifo, "a FIFO"}, {dir.path.string(), "a directory"}, {"/dev/null", "a character device"}};
  for (const auto& [path, kind] : cases) {
    CAPTURE(path);
    if (!std::filesystem::exists(path)) continue;
    // A FIFO's open would block without O_NONBLOCK: run it on a thread and give it a deadline.
    std::atomic<int> outcome{0};  // 0 running, 1 FileError naming the path and the kind, 2 other
    std::thread loader([&, path = path, kind = kind] {
      try {
        Lstm<float>::load(path);
        outcome = 2;
      } catch (const FileError& error) {
        const std::string message = error.what();
        outcome = error.path() == path && message.find(kind) != std::string::npos ? 1 : 2;
      } catch (...) {
        outcome = 2;
      }
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (outcome == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE_MESSAGE(outcome != 0, "load blocked on ", path);  // (the thread is left blocked)
    loader.join();
    CHECK(outcome == 1);
  }
  const std::string socket_path = (dir.path / "s").string();
  const int server = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", socket_path.c_str());
  if (server >= 0 && ::bind(server, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    CHECK_THROWS_AS(Lstm<float>::load(socket_path), FileError);
  }
  if (server >= 0) ::close(server);
}

TEST_CASE("hostile: a reader reads the file it opened, even once another is renamed over its path") {
  TempDir dir;
  Subject subject;
  const std::string path = (dir.path / "model.safetensors").string();
  subject.model.save(path);
  const fastlstm::ModelFileReader reader(path);
  Lstm<float>(random_weights<float>(make_config(2, 9), 3), 1).save(path);  // replaces the file
  const Lstm<float> loaded(reader.read_weights<float>(), 1);
  CHECK(loaded.config().hidden_size == 5);
  CHECK(reader.info().config.hidden_size == 5);
  const Lstm<float> fresh = Lstm<float>::load(path);
  CHECK(fresh.config().hidden_size == 9);
}

TEST_CASE("hostile: a file truncated between its header and its tensors is a FileError (EIO) saying where it ended") {
  TempDir dir;
  Subject subject;
  const std::string path = (dir.path / "model.safetensors").string();
  subject.model.save(path);
  const fastlstm::ModelFileReader reader(path);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  try {
    (void)reader.read_weights<float>();
    FAIL("no error");
  } catch (const FileError& error) {
    CHECK(error.errno_value() == EIO);
    CHECK(std::string(error.what()).find("it ended at byte") != std::string::npos);
  }
}
#endif

TEST_CASE("hostile: parameter() and copy_weights() are the old or the new weights while set_weights runs") {
  const LstmConfig config = make_config(32, 96, 2);
  std::vector<fastlstm::LstmWeights<float>> versions;
  for (float value : {1.f, 2.f}) {
    fastlstm::LstmWeights<float> weights(config);
    for (auto& parameter : weights.parameters()) std::fill(parameter.values.begin(), parameter.values.end(), value);
    versions.push_back(std::move(weights));
  }
  Lstm<float> model(versions[0], 1);
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (size_t i = 0; !stop; ++i) {
      model.set_weights(versions[i % 2]);
      std::this_thread::sleep_for(std::chrono::microseconds(100));  // a mutex is not fair: let readers in
    }
  });
  int torn = 0;
  for (int read = 0; read < 200; ++read) {
    const auto weight = model.parameter("weight_hh_l1");
    const float* values = weight.data();
    torn += std::any_of(values, values + weight.numel(), [&](float v) { return v != values[0]; });
    const auto all = model.copy_weights();
    const float first = all.parameters().front().values.front();
    for (const auto& parameter : all.parameters()) {
      torn += std::any_of(parameter.values.begin(), parameter.values.end(), [&](float v) { return v != first; });
    }
  }
  stop = true;
  writer.join();
  CHECK(torn == 0);
  CHECK_THROWS_WITH_AS(model.parameter("weight_hh_l9"), doctest::Contains("unknown parameter"), InvalidArgument);
}

TEST_CASE("hostile: stream states of another model or memory on another device are refused, the state unchanged") {
  const LstmConfig config = make_config(3, 4, 2);
  const Lstm<float> model(random_weights<float>(config, 81), 1);
  const Lstm<float> other(make_config(3, 5, 2), 1);
  auto state = model.make_state(2);
  auto foreign = other.make_state(2);
  const auto h = random_values<float>(2 * 2 * 4, 82);
  const auto c = random_values<float>(2 * 2 * 4, 83);
  model.set_state(state, {{h.data(), {2, 2, 4}}, {c.data(), {2, 2, 4}}});
  CHECK_THROWS_AS(model.set_state(foreign, {{h.data(), {2, 2, 4}}, {c.data(), {2, 2, 4}}}), InvalidArgument);
  CHECK_THROWS_AS(model.reset_state(foreign), InvalidArgument);
  CHECK_THROWS_AS(model.read_state(foreign), InvalidArgument);
  const TensorView<const float> on_gpu(h.data(), {2, 2, 4}, fastlstm::Device::cuda(0));
  CHECK_THROWS_WITH_AS(model.set_state(state, {on_gpu, {c.data(), {2, 2, 4}}}), doctest::Contains("h_0: is on cuda:0"),
                       InvalidArgument);
  std::vector<float> out(2 * 4);
  const auto x = random_values<float>(2 * 3, 84);
  CHECK_THROWS_WITH_AS(model.step(TensorView<const float>(x.data(), {2, 3}), state,
                                  TensorView<float>(out.data(), {2, 4}, fastlstm::Device::cuda(1))),
                       doctest::Contains("output_t: is on cuda:1"), InvalidArgument);
  const auto [h_read, c_read] = model.read_state(state);  // every refusal left the state as it was
  CHECK(std::equal(h.begin(), h.end(), h_read.data()));
  CHECK(std::equal(c.begin(), c.end(), c_read.data()));
}

TEST_CASE("hostile: options outside their ranges are refused by name") {
  fastlstm::LstmOptions options;
  options.num_threads = -1;
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(3, 4), options), doctest::Contains("num_threads"), InvalidArgument);
  options.num_threads = 1;
  options.device = fastlstm::Device{fastlstm::DeviceKind::cpu, 3};
  CHECK_THROWS_WITH_AS(Lstm<float>(make_config(3, 4), options), doctest::Contains("device"), InvalidArgument);
}
