// StepBatcher: steps submitted one at a time from many threads run as pool steps, each stream's
// in submission order, and give what each stream gives alone; close() drains or fails.
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "helpers.hpp"

using fastlstm::BatcherClosed;
using fastlstm::Lstm;
using fastlstm::StepBatcher;
using fastlstm::StreamId;
using fastlstm::StreamPool;
using fastlstm::TensorView;
using fastlstm::UnknownStream;
using fastlstm_test::make_config;
using fastlstm_test::random_values;
using fastlstm_test::random_weights;

namespace {
constexpr int64_t kIn = 4, kHidden = 6;
}  // namespace

TEST_CASE("step batcher: threads submitting their streams' steps get each stream's own outputs, in order") {
  const Lstm<float> model(random_weights<float>(make_config(kIn, kHidden, 2), 61), 2);
  StreamPool<float> pool(model, 16);
  StepBatcher<float> batcher(pool, 8, std::chrono::microseconds(200));
  constexpr int kThreads = 4, kStreams = 3, kSteps = 25;
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      StreamId ids[kStreams];
      std::vector<Lstm<float>::State> solo;
      for (auto& id : ids) {
        id = pool.open();
        solo.push_back(model.make_state(1));
      }
      const auto x = random_values<float>(static_cast<size_t>(kSteps * kStreams * kIn), 300 + static_cast<unsigned>(t));
      // Every step of every stream submitted at once: the batcher must keep each stream's order.
      std::vector<std::future<std::vector<float>>> futures;
      for (int s = 0; s < kSteps; ++s) {
        for (int k = 0; k < kStreams; ++k) futures.push_back(batcher.submit(ids[k], x.data() + (s * kStreams + k) * kIn));
      }
      for (int s = 0; s < kSteps; ++s) {
        for (int k = 0; k < kStreams; ++k) {
          const auto y = futures[static_cast<size_t>(s * kStreams + k)].get();
          const auto expected = model.step(TensorView<const float>(x.data() + (s * kStreams + k) * kIn, {1, kIn}),
                                           solo[static_cast<size_t>(k)]);
          for (int64_t j = 0; j < kHidden; ++j) {
            if (std::abs(y[static_cast<size_t>(j)] - expected.data()[j]) > 1e-5f) ++mismatches;
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(mismatches == 0);
  CHECK(batcher.steps() == kThreads * kStreams * kSteps);
  CHECK(batcher.batches() >= kSteps);  // a stream steps once per batch
  CHECK(batcher.batches() < batcher.steps());
}

TEST_CASE("step batcher: a closed stream's step fails alone, close() drains or fails what is queued") {
  const Lstm<float> model(random_weights<float>(make_config(kIn, kHidden), 62), 1);
  StreamPool<float> pool(model, 4);
  const StreamId a = pool.open(), b = pool.open();
  pool.close(b);
  const auto x = random_values<float>(kIn, 63);
  {
    StepBatcher<float> batcher(pool, 4, std::chrono::microseconds(100));
    auto good = batcher.submit(a, x.data());
    auto bad = batcher.submit(b, x.data());
    CHECK(good.get().size() == kHidden);
    CHECK_THROWS_AS(bad.get(), UnknownStream);
    batcher.close(true);
    CHECK_THROWS_AS(batcher.submit(a, x.data()), BatcherClosed);
    batcher.close();  // again: nothing
  }
  {
    // A long delay keeps the requests queued until close(false) fails them.
    StepBatcher<float> batcher(pool, 64, std::chrono::microseconds(10'000'000));
    std::vector<std::future<std::vector<float>>> pending;
    const auto before = pool.get_state(a);
    for (int i = 0; i < 5; ++i) pending.push_back(batcher.submit(a, x.data()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the thread waits for the deadline
    batcher.close(false);
    for (auto& future : pending) CHECK_THROWS_AS(future.get(), BatcherClosed);
    const auto after = pool.get_state(a);
    CHECK(std::equal(after.second.data(), after.second.data() + kHidden, before.second.data()));
  }
  {
    StepBatcher<float> batcher(pool, 64, std::chrono::microseconds(10'000'000));
    auto drained = batcher.submit(a, x.data());
    batcher.close(true);  // runs it now, without waiting for the delay
    CHECK(drained.get().size() == kHidden);
  }
  CHECK_THROWS_AS(StepBatcher<float>(pool, 0, std::chrono::microseconds(10)), fastlstm::InvalidArgument);
  CHECK_THROWS_AS(StepBatcher<float>(pool, 4, std::chrono::microseconds(-1)), fastlstm::InvalidArgument);
}

TEST_CASE("step batcher: a stream's next step waits for a later batch while other streams join the earlier one") {
  const Lstm<float> model(random_weights<float>(make_config(kIn, kHidden), 64), 1);
  StreamPool<float> pool(model, 4);
  const StreamId a = pool.open(), b = pool.open();
  const auto x = random_values<float>(3 * kIn, 65);
  std::mutex order_mutex;
  std::vector<int> order;  // which step completed, in completion order
  const auto record = [&](int which) {
    return [&, which](const float*, std::exception_ptr error) {
      CHECK(!error);
      std::lock_guard<std::mutex> lock(order_mutex);
      order.push_back(which);
    };
  };
  // max_batch 3: a1 and a2 make two batches of one step each (pending 2); b1 joins the first,
  // which then runs as {a1, b1} (pending 3); a2 waits for its deadline, or here for close().
  StepBatcher<float> batcher(pool, 3, std::chrono::microseconds(10'000'000));
  batcher.submit(a, x.data(), record(1));
  batcher.submit(a, x.data() + kIn, record(2));
  batcher.submit(b, x.data() + 2 * kIn, record(3));
  batcher.close(true);
  CHECK(order == std::vector<int>{1, 3, 2});
  CHECK(batcher.batches() == 2);
  CHECK(batcher.steps() == 3);
}
