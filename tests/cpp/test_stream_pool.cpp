// StreamPool: streams that open, close and step in any subset give what a stream of their own
// (make_state(1) and step) gives; bad calls change no stream.
#include <algorithm>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "helpers.hpp"

using fastlstm::InvalidArgument;
using fastlstm::Lstm;
using fastlstm::LstmConfig;
using fastlstm::PoolFull;
using fastlstm::StreamId;
using fastlstm::StreamPool;
using fastlstm::TensorView;
using fastlstm::UnknownStream;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;
using fastlstm_test::shape;

namespace {

constexpr int64_t kIn = 5, kHidden = 7, kProj = 3;

// A stream stepped on its own, the reference for a pool's stream.
struct Solo {
  Lstm<float>::State state;
  std::vector<std::vector<float>> outputs;
};

std::vector<float> row(const std::vector<float>& values, int64_t i, int64_t width) {
  return {values.begin() + i * width, values.begin() + (i + 1) * width};
}

}  // namespace

TEST_CASE("stream pool: random open/close/step schedules give each stream what it gets alone") {
  const LstmConfig config = make_config(kIn, kHidden, 2, false, kProj);
  const Lstm<float> model(random_weights<float>(config, 41), 2);
  StreamPool<float> pool(model, 6);
  CHECK(pool.capacity() == 6);
  std::mt19937 rng(42);
  std::map<StreamId, Solo> open;
  for (int tick = 0; tick < 60; ++tick) {
    if (open.size() < 6 && rng() % 3 == 0) open.emplace(pool.open(), Solo{model.make_state(1), {}});
    if (!open.empty() && rng() % 5 == 0) {
      auto victim = std::next(open.begin(), static_cast<long>(rng() % open.size()));
      pool.close(victim->first);
      CHECK_FALSE(pool.contains(victim->first));
      open.erase(victim);
    }
    CHECK(pool.size() == static_cast<int64_t>(open.size()));
    // A random subset in a random order.
    std::vector<StreamId> ids;
    for (const auto& entry : open) {
      if (rng() % 4 != 0) ids.push_back(entry.first);
    }
    std::shuffle(ids.begin(), ids.end(), rng);
    const auto count = static_cast<int64_t>(ids.size());
    const auto x = random_values<float>(static_cast<size_t>(count * kIn), 100 + static_cast<unsigned>(tick));
    const fastlstm::Tensor<float> y = pool.step(ids, TensorView<const float>(x.data(), {count, kIn}));
    REQUIRE(y.shape() == shape({count, kProj}));
    for (int64_t i = 0; i < count; ++i) {
      Solo& solo = open.at(ids[static_cast<size_t>(i)]);
      const auto x_i = row(x, i, kIn);
      const fastlstm::Tensor<float> expected = model.step(TensorView<const float>(x_i.data(), {1, kIn}), solo.state);
      for (int64_t k = 0; k < kProj; ++k) CHECK(y.data()[i * kProj + k] == doctest::Approx(expected.data()[k]).epsilon(1e-5));
    }
  }
  // The states themselves match too.
  for (auto& [id, solo] : open) {
    const auto [h, c] = pool.get_state(id);
    const auto [solo_h, solo_c] = model.read_state(solo.state);
    REQUIRE(h.shape() == shape({2, 1, kProj}));
    REQUIRE(c.shape() == shape({2, 1, kHidden}));
    for (int64_t k = 0; k < h.numel(); ++k) CHECK(h.data()[k] == doctest::Approx(solo_h.data()[k]).epsilon(1e-5));
    for (int64_t k = 0; k < c.numel(); ++k) CHECK(c.data()[k] == doctest::Approx(solo_c.data()[k]).epsilon(1e-5));
  }
}

TEST_CASE("stream pool: get_state / set_state move a stream to another pool, open(state) starts from one") {
  const LstmConfig config = make_config(kIn, kHidden, 1);
  const Lstm<float> model(random_weights<float>(config, 43), 1);
  StreamPool<float> first(model, 2), second(model, 3);
  const StreamId a = first.open();
  const auto x = random_values<float>(kIn * 4, 44);
  for (int t = 0; t < 3; ++t) first.step({a}, TensorView<const float>(x.data() + t * kIn, {1, kIn}));
  const auto [h, c] = first.get_state(a);
  const StreamId b = second.open(fastlstm::StateView<float>{h.view(), c.view()});
  const StreamId b2 = second.open();
  second.set_state(b2, fastlstm::StateView<float>{h.view(), c.view()});
  const TensorView<const float> x3(x.data() + 3 * kIn, {1, kIn});
  const auto expected = first.step({a}, x3);
  for (StreamId id : {b, b2}) {
    const auto y = second.step({id}, x3);
    CHECK(std::equal(y.data(), y.data() + kHidden, expected.data()));
  }
  second.reset_state(b);
  const auto [zero_h, zero_c] = second.get_state(b);
  CHECK(std::all_of(zero_c.data(), zero_c.data() + zero_c.numel(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("stream pool: ids are never reused, a full pool refuses to open, bad steps change nothing") {
  const LstmConfig config = make_config(kIn, kHidden, 1);
  const Lstm<float> model(random_weights<float>(config, 45), 1);
  StreamPool<float> pool(model, 2);
  const StreamId a = pool.open(), b = pool.open();
  CHECK_THROWS_AS(pool.open(), PoolFull);
  pool.close(b);
  const StreamId c = pool.open();
  CHECK(c != b);
  CHECK_THROWS_WITH_AS(pool.close(b), doctest::Contains(std::to_string(b).c_str()), UnknownStream);
  CHECK_THROWS_AS(pool.get_state(-1), UnknownStream);
  CHECK_THROWS_AS(pool.get_state(1 << 30), UnknownStream);

  const auto x = random_values<float>(3 * kIn, 46);
  pool.step({a, c}, TensorView<const float>(x.data(), {2, kIn}));
  const auto before_a = pool.get_state(a), before_c = pool.get_state(c);
  auto unchanged = [&] {
    const auto now_a = pool.get_state(a), now_c = pool.get_state(c);
    CHECK(std::equal(now_a.second.data(), now_a.second.data() + kHidden, before_a.second.data()));
    CHECK(std::equal(now_c.second.data(), now_c.second.data() + kHidden, before_c.second.data()));
  };
  CHECK_THROWS_AS(pool.step({a, b}, TensorView<const float>(x.data(), {2, kIn})), UnknownStream);
  unchanged();
  CHECK_THROWS_WITH_AS(pool.step({c, a, c}, TensorView<const float>(x.data(), {3, kIn})),
                       doctest::Contains("more than once"), InvalidArgument);
  unchanged();
  CHECK_THROWS_WITH_AS(pool.step({a, c}, TensorView<const float>(x.data(), {3, kIn})), doctest::Contains("input_t"),
                       InvalidArgument);
  unchanged();
  const std::vector<float> wide(kIn + kHidden);
  const TensorView<const float> wrong(wide.data(), {1, 1, kIn});
  CHECK_THROWS_WITH_AS(pool.set_state(a, fastlstm::StateView<float>{wrong, before_a.second.view()}),
                       doctest::Contains("h_0"), InvalidArgument);
  unchanged();
  CHECK(pool.step(std::vector<StreamId>{}, TensorView<const float>(x.data(), {0, kIn})).numel() == 0);
}

TEST_CASE("stream pool: bidirectional models, and capacities below 1, are refused") {
  const Lstm<float> bidirectional(make_config(kIn, kHidden, 1, true), 1);
  CHECK_THROWS_WITH_AS(StreamPool<float>(bidirectional, 4), doctest::Contains("unidirectional"), InvalidArgument);
  const Lstm<float> model(make_config(kIn, kHidden), 1);
  CHECK_THROWS_WITH_AS(StreamPool<float>(model, 0), doctest::Contains("capacity"), InvalidArgument);
}

TEST_CASE("stream pool: threads stepping their own streams of one pool get what each stream gets alone") {
  const LstmConfig config = make_config(kIn, kHidden, 2);
  const Lstm<float> model(random_weights<float>(config, 47), 2);
  StreamPool<float> pool(model, 8);
  constexpr int kThreads = 4, kSteps = 40;
  std::vector<std::vector<float>> outputs(kThreads), expected(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const StreamId mine[2] = {pool.open(), pool.open()};
      const auto x = random_values<float>(static_cast<size_t>(kSteps * 2 * kIn), 200 + static_cast<unsigned>(t));
      std::vector<float> y(2 * kHidden);
      for (int s = 0; s < kSteps; ++s) {
        pool.step(mine, 2, TensorView<const float>(x.data() + s * 2 * kIn, {2, kIn}), TensorView<float>(y.data(), {2, kHidden}));
        outputs[static_cast<size_t>(t)].insert(outputs[static_cast<size_t>(t)].end(), y.begin(), y.end());
      }
      pool.close(mine[0]);
      pool.close(mine[1]);
      auto state = model.make_state(2);  // the same two streams as one batch of their own
      for (int s = 0; s < kSteps; ++s) {
        const auto out = model.step(TensorView<const float>(x.data() + s * 2 * kIn, {2, kIn}), state);
        expected[static_cast<size_t>(t)].insert(expected[static_cast<size_t>(t)].end(), out.data(), out.data() + 2 * kHidden);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(pool.size() == 0);
  for (int t = 0; t < kThreads; ++t) {
    REQUIRE(outputs[static_cast<size_t>(t)].size() == expected[static_cast<size_t>(t)].size());
    for (size_t k = 0; k < expected[static_cast<size_t>(t)].size(); ++k) {
      CHECK(outputs[static_cast<size_t>(t)][k] == doctest::Approx(expected[static_cast<size_t>(t)][k]).epsilon(1e-5));
    }
  }
}

TEST_CASE("stream pool: int8 and double models") {
  const LstmConfig config = make_config(kIn, kHidden, 1);
  fastlstm::LstmOptions options;
  options.num_threads = 1;
  options.weight_format = fastlstm::WeightFormat::int8;
  const Lstm<float> int8_model(random_weights<float>(config, 48), options);
  StreamPool<float> pool(int8_model, 3);
  const StreamId a = pool.open();
  auto solo = int8_model.make_state(1);
  const auto x = random_values<float>(kIn, 49);
  const auto y = pool.step({a}, TensorView<const float>(x.data(), {1, kIn}));
  const auto expected = int8_model.step(TensorView<const float>(x.data(), {1, kIn}), solo);
  CHECK(std::equal(y.data(), y.data() + kHidden, expected.data()));

  const Lstm<double> double_model(random_weights<double>(config, 50), 1);
  StreamPool<double> doubles(double_model, 2);
  const StreamId d = doubles.open();
  const auto xd = random_values<double>(kIn, 51);
  CHECK(doubles.step({d}, TensorView<const double>(xd.data(), {1, kIn})).numel() == kHidden);
}
