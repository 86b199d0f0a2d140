// How fast one core reads a block of floats that stays in its cache: the bound on a step whose
// weights are read once per step (case S7: 2 MB of weights, 1 MB per core at 2 threads).
// Usage: cache_read [KiB per thread = 1024] [threads = 1]. Prints each thread's median rate of
// 2000 passes over its own block, each pass in the opposite order to the one before (as the
// recurrent steps run their gate blocks).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include <immintrin.h>

namespace {

// Adds `n` floats (a multiple of eight vectors) to eight vector accumulators, forwards or
// backwards: independent loads, as many as the core keeps in flight (built with -march=native).
#if defined(__AVX512F__)
using Vector = __m512;
constexpr size_t kLanes = 16;
inline Vector load(const float* p) { return _mm512_load_ps(p); }
inline Vector add(Vector a, Vector b) { return _mm512_add_ps(a, b); }
#elif defined(__AVX__)
using Vector = __m256;
constexpr size_t kLanes = 8;
inline Vector load(const float* p) { return _mm256_load_ps(p); }
inline Vector add(Vector a, Vector b) { return _mm256_add_ps(a, b); }
#else
#error "cache_read needs AVX or AVX-512: build with -march=native on x86-64"
#endif
constexpr size_t kChunk = 8 * kLanes;

void read_pass(const float* data, size_t n, bool backwards, Vector* sums) {
  Vector acc[8];
  std::copy_n(sums, 8, acc);
  for (size_t i = 0; i < n; i += kChunk) {
    const float* chunk = data + (backwards ? n - kChunk - i : i);
    for (size_t j = 0; j < 8; ++j) acc[j] = add(acc[j], load(chunk + j * kLanes));
  }
  std::copy_n(acc, 8, sums);
}

double median_gb_per_s(size_t bytes) {
  const size_t n = std::max(bytes / sizeof(float) / kChunk, size_t(1)) * kChunk;
  float* data = static_cast<float*>(std::aligned_alloc(64, n * sizeof(float)));
  std::fill_n(data, n, 1e-7f);
  Vector sums[8] = {};
  std::vector<double> rates;
  for (int pass = 0; pass < 2000; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    read_pass(data, n, pass % 2 == 1, sums);
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    if (pass >= 100) rates.push_back(double(n * sizeof(float)) / seconds.count() / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  alignas(64) float lanes[8 * kLanes];
  std::memcpy(lanes, sums, sizeof(lanes));
  if (std::accumulate(lanes, lanes + 8 * kLanes, 0.0f) == 42.0f) std::puts("");  // every load is used
  std::free(data);
  return rates[rates.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const size_t kib = std::max<size_t>(argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024, 1);
  const int threads = std::max(argc > 2 ? std::atoi(argv[2]) : 1, 1);
  std::vector<double> rates(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) workers.emplace_back([&, t] { rates[size_t(t)] = median_gb_per_s(kib * 1024); });
  for (auto& worker : workers) worker.join();
  for (int t = 0; t < threads; ++t) {
    std::printf("thread %d: %zu KiB read at %.1f GB/s (median of 1900 passes): %.2f us per pass\n", t, kib,
                rates[size_t(t)], kib * 1024 / rates[size_t(t)] / 1e3);
  }
}
