// A model on both sides of fork(): the child (whose pool's workers stayed in the parent) runs
// it, and so does the parent after; also when another thread is inside a forward at the fork.
// Each child runs under an alarm, so a hang fails the test instead of stalling the suite.
#if defined(__unix__)
#include <atomic>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "in_child.hpp"

using fastlstm::Lstm;
using fastlstm::TensorView;
using fastlstm_test::in_child;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;

namespace {

struct Model {
  Lstm<float> lstm;
  std::vector<float> x;
  explicit Model(int threads, int64_t steps = 5)
      : lstm(random_weights<float>(make_config(6, 32, 2), 5), threads), x(random_values<float>(steps * 3 * 6, 9)) {}
  std::vector<float> output() const {
    const int64_t steps = static_cast<int64_t>(x.size()) / 18;
    auto result = lstm.forward(TensorView<const float>(x.data(), {steps, 3, 6}));
    return std::vector<float>(result.output.data(), result.output.data() + result.output.numel());
  }
};

}  // namespace

TEST_CASE("fork: a model used before fork gives the same outputs in the child and in the parent") {
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    Model model(threads);
    const std::vector<float> expected = model.output();
    CHECK(in_child([&] { return model.output() == expected && model.output() == expected; }));
    CHECK(model.output() == expected);
    // A grandchild: the child's own pool is replaced again.
    CHECK(in_child([&] { return model.output() == expected && in_child([&] { return model.output() == expected; }); }));
  }
}

TEST_CASE("fork: a stream steps in the child") {
  Model model(2);
  auto state = model.lstm.make_state(3);
  std::vector<float> out(3 * 32), expected(3 * 32);
  model.lstm.step(TensorView<const float>(model.x.data(), {3, 6}), state, TensorView<float>(expected.data(), {3, 32}));
  CHECK(in_child([&] {
    auto fresh = model.lstm.make_state(3);
    model.lstm.step(TensorView<const float>(model.x.data(), {3, 6}), fresh, TensorView<float>(out.data(), {3, 32}));
    return out == expected;
  }));
}

TEST_CASE("fork: forking while another thread is inside a forward waits for it, and the child runs the model") {
  Model model(2);
  Model small(2);
  const std::vector<float> expected = small.output();
  std::atomic<bool> stop{false}, running{false};
  // The busy thread steps a stream into its own buffer: it allocates nothing, so the fork never
  // finds it inside malloc (whose lock a sanitizer's allocator, unlike glibc's, leaves held in the
  // child); the model's lock is held at almost every instant.
  std::thread busy([&] {
    auto state = model.lstm.make_state(3);
    std::vector<float> out(3 * 32);
    while (!stop) {
      model.lstm.step(TensorView<const float>(model.x.data(), {3, 6}), state, TensorView<float>(out.data(), {3, 32}));
      running = true;
    }
  });
  while (!running) std::this_thread::yield();
  int ok = 0;
  for (int fork = 0; fork < 5; ++fork) {
    ok += in_child([&] { return small.output() == expected && model.output().size() == 5 * 3 * 32; });
  }
  stop = true;
  busy.join();
  CHECK(ok == 5);
  CHECK(small.output() == expected);
}
#endif
