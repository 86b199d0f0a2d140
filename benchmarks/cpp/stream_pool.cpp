// Many streams from C++: StreamPool::step of random subsets of 1,000 open streams against one
// batched step of all of them, and a StepBatcher fed single steps by a driver thread (throughput
// with two steps of every stream in flight; latency under Poisson arrivals at half the pool's
// rate, from each step's arrival to its completion).
//   stream_pool [size = 128] [threads = 0: every core] [streams = 1000]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include <fastlstm/fastlstm.hpp>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(p / 100.0 * double(values.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t size = argc > 1 ? std::atoll(argv[1]) : 128;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 0;
  const int64_t streams = argc > 3 ? std::atoll(argv[3]) : 1000;
  fastlstm::LstmConfig config;
  config.input_size = size;
  config.hidden_size = size;
  fastlstm::LstmWeights<float> weights(config);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(-0.08f, 0.08f);
  for (auto& parameter : weights.parameters()) {
    for (float& value : parameter.values) value = uniform(rng);
  }
  const fastlstm::Lstm<float> model(std::move(weights), threads);
  std::vector<float> x(static_cast<size_t>(streams * size)), y(static_cast<size_t>(streams * size));
  for (float& value : x) value = uniform(rng);

  // One batched step of all streams, and pool steps of random halves.
  auto batch = model.make_state(streams);
  const fastlstm::TensorView<const float> all_x(x.data(), {streams, size});
  const fastlstm::TensorView<float> all_y(y.data(), {streams, size});
  fastlstm::StreamPool<float> pool(model, streams);
  std::vector<fastlstm::StreamId> ids(static_cast<size_t>(streams)), due;
  for (auto& id : ids) id = pool.open();
  std::bernoulli_distribution half(0.5);
  double batch_s = 0, pool_s = 0;
  int64_t batch_steps = 0, pool_steps = 0;
  for (int round = 0; round < 200; ++round) {  // interleaved
    auto start = Clock::now();
    model.step(all_x, batch, all_y);
    batch_s += seconds_since(start);
    batch_steps += streams;
    due.clear();
    for (auto id : ids) {
      if (half(rng)) due.push_back(id);
    }
    const auto count = static_cast<int64_t>(due.size());
    start = Clock::now();
    pool.step(due.data(), count, fastlstm::TensorView<const float>(x.data(), {count, size}),
              fastlstm::TensorView<float>(y.data(), {count, size}));
    pool_s += seconds_since(start);
    pool_steps += count;
  }
  const double batch_rate = double(batch_steps) / batch_s, pool_rate = double(pool_steps) / pool_s;

  // The batcher, each stream with two steps in flight (the next one queued while a batch runs),
  // the driver sleeping when it has nothing to submit: a server's threads wait for their
  // clients, they do not spin beside the computing threads.
  const auto max_delay = std::chrono::microseconds(1000);
  const auto nap = std::chrono::microseconds(50);
  double batcher_rate = 0, mean_batch = 0;
  {
    fastlstm::StepBatcher<float> batcher(pool, streams, max_delay);
    std::atomic<int64_t> completed{0};
    std::vector<std::atomic<int>> in_flight(static_cast<size_t>(streams));
    for (auto& count : in_flight) count = 0;
    const auto start = Clock::now();
    while (seconds_since(start) < 2.0) {
      bool submitted = false;
      for (int64_t i = 0; i < streams; ++i) {
        if (in_flight[static_cast<size_t>(i)] >= 2) continue;
        ++in_flight[static_cast<size_t>(i)];
        batcher.submit(ids[static_cast<size_t>(i)], x.data() + i * size, [&, i](const float*, std::exception_ptr) {
          ++completed;
          --in_flight[static_cast<size_t>(i)];
        });
        submitted = true;
      }
      if (!submitted) std::this_thread::sleep_for(nap);
    }
    batcher_rate = double(completed) / seconds_since(start);
    batcher.close(true);
    mean_batch = double(batcher.steps()) / double(std::max<int64_t>(1, batcher.batches()));
  }

  // Latency: Poisson arrivals at half the pool's rate, submitted in the driver's rounds (every
  // ~50 us it submits what has arrived, then sleeps); latency from each arrival to its completion.
  std::vector<double> latencies;
  {
    fastlstm::StepBatcher<float> batcher(pool, streams, max_delay);
    const double rate = 0.5 * pool_rate;
    std::exponential_distribution<double> gap(rate);
    std::uniform_int_distribution<int64_t> which(0, streams - 1);
    const auto total = static_cast<int64_t>(rate * 1.0);
    std::vector<double> arrival(static_cast<size_t>(total)), latency(static_cast<size_t>(total));
    double at = 0;
    for (double& each : arrival) each = at += gap(rng);
    const auto start = Clock::now();
    for (int64_t k = 0; k < total;) {
      const double now = seconds_since(start);
      for (; k < total && arrival[static_cast<size_t>(k)] <= now; ++k) {
        const int64_t stream = which(rng);
        batcher.submit(ids[static_cast<size_t>(stream)], x.data() + stream * size,
                       [&latency, &arrival, k, start](const float*, std::exception_ptr) {
                         latency[static_cast<size_t>(k)] = (seconds_since(start) - arrival[static_cast<size_t>(k)]) * 1e6;
                       });
      }
      std::this_thread::sleep_for(nap);
    }
    batcher.close(true);
    latencies = std::move(latency);
  }
  const double pool_tick_us = 1e6 * pool_s / 200.0;
  std::printf("I = H = %lld, %d thread(s), %lld streams\n", static_cast<long long>(size), model.num_threads(),
              static_cast<long long>(streams));
  std::printf("  stream(N).step of all:   %10.0f steps/s (%.0f us a step of all)\n", batch_rate, 1e6 * batch_s / 200.0);
  std::printf("  pool.step of random half: %9.0f steps/s (%.0f us a tick)\n", pool_rate, pool_tick_us);
  std::printf("  batcher, closed loop:    %10.0f steps/s (%.2fx the pool's; %.0f steps a batch)\n", batcher_rate,
              batcher_rate / pool_rate, mean_batch);
  std::printf("  batcher latency at %.0f steps/s: p50 %.0f us, p99 %.0f us (max_delay %lld us + 2 ticks = %.0f us)\n",
              0.5 * pool_rate, percentile(latencies, 50), percentile(latencies, 99),
              static_cast<long long>(max_delay.count()), double(max_delay.count()) + 2 * pool_tick_us);
  return 0;
}
