// The streaming step allocates nothing once the model has run a step of that size: every heap
// allocation of the process (malloc and friends, which operator new and Eigen both use) is
// counted while steps run. A separate executable, since it replaces the allocator.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <vector>

#include "helpers.hpp"

#if defined(__GLIBC__)
#include <malloc.h>

namespace {
std::atomic<long> allocations{0};
}  // namespace

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

void* malloc(size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(count, size);
}
void* realloc(void* pointer, size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(pointer, size);
}
void* memalign(size_t alignment, size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }
int posix_memalign(void** result, size_t alignment, size_t size) {
  *result = memalign(alignment, size);
  return *result ? 0 : 12;  // ENOMEM
}
}  // extern "C"

TEST_CASE("stream: step allocates nothing after the first step, with one thread and with two") {
  for (int threads : {1, 2}) {
    const fastlstm::LstmConfig config = fastlstm_test::make_config(16, 24, 2, false, 8);
    const fastlstm::Lstm<float> model(fastlstm_test::random_weights<float>(config, 5), threads);
    auto state = model.make_state(3);
    const auto x = fastlstm_test::random_values<float>(3 * 16, 6);
    std::vector<float> y(3 * 8);
    const fastlstm::TensorView<const float> input(x.data(), {3, 16});
    const fastlstm::TensorView<float> output(y.data(), {3, 8});
    model.step(input, state, output);  // the first step sizes the workspace

    const long before = allocations.load();
    for (int i = 0; i < 200; ++i) model.step(input, state, output);
    CHECK(allocations.load() == before);
    CHECK(allocations.load() > 0);  // the counter is live: making the model allocated
  }
}
TEST_CASE("stream pool: steps of any subset allocate nothing once a step of all has run") {
  for (int threads : {1, 2}) {
    const fastlstm::LstmConfig config = fastlstm_test::make_config(16, 24, 2, false, 8);
    const fastlstm::Lstm<float> model(fastlstm_test::random_weights<float>(config, 7), threads);
    constexpr int64_t kStreams = 12;
    fastlstm::StreamPool<float> pool(model, kStreams);
    std::vector<fastlstm::StreamId> ids;
    for (int64_t i = 0; i < kStreams; ++i) ids.push_back(pool.open());
    const auto x = fastlstm_test::random_values<float>(kStreams * 16, 8);
    std::vector<float> y(kStreams * 8);
    pool.step(ids.data(), kStreams, fastlstm::TensorView<const float>(x.data(), {kStreams, 16}),
              fastlstm::TensorView<float>(y.data(), {kStreams, 8}));  // the largest step sizes the workspace

    const long before = allocations.load();
    for (int i = 0; i < 200; ++i) {
      const int64_t count = 1 + i % kStreams;  // subsets of every size, in a rotating order
      std::rotate(ids.begin(), ids.begin() + 1, ids.end());
      pool.step(ids.data(), count, fastlstm::TensorView<const float>(x.data(), {count, 16}),
                fastlstm::TensorView<float>(y.data(), {count, 8}));
      if (i % 50 == 0) {  // streams leave and join
        pool.close(ids.back());
        ids.back() = pool.open();
      }
    }
    CHECK(allocations.load() == before);
  }
}
#else
TEST_CASE("stream: step allocates nothing after the first step" * doctest::skip()) {}
#endif
