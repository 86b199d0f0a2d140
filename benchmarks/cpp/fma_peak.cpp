// The register-only FMA peak of this CPU: what no product can beat. Each thread runs 24
// independent chains of fused multiply-adds on registers (no loads), enough to cover the FMA
// latency of every x86 core since Haswell on each FMA unit, and reports GFLOP/s for 256-bit (AVX2)
// and, where the build has it, 512-bit (AVX-512) vectors.
// Usage: fma_peak [threads = 1]. Built with -march=native (benchmarks/cpp/CMakeLists.txt).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <immintrin.h>

namespace {

constexpr int kChains = 24;
constexpr long kIterations = 20'000'000;

template <typename Vector, Vector (*Fma)(Vector, Vector, Vector), Vector (*Set)(float), int kLanes>
double gflops_per_second() {
  Vector acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = Set(1.0f + 1e-7f * float(i));
  const Vector a = Set(0.999999f), b = Set(1e-8f);
  const auto start = std::chrono::steady_clock::now();
  for (long it = 0; it < kIterations; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = Fma(acc[i], a, b);
  }
  const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
  alignas(64) float lanes[kLanes];
  float total = 0;
  for (int i = 0; i < kChains; ++i) {
    std::memcpy(lanes, &acc[i], sizeof(lanes));
    total += lanes[0];
  }
  if (total == 42.0f) std::puts("");  // every chain is used
  return 2.0 * kLanes * kChains * double(kIterations) / seconds.count() / 1e9;
}

#if defined(__FMA__)
__m256 fma256(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
__m256 set256(float x) { return _mm256_set1_ps(x); }
#endif
#if defined(__AVX512F__)
__m512 fma512(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
__m512 set512(float x) { return _mm512_set1_ps(x); }
#endif

// Every thread at once, each its own chains; the median of three runs per thread.
template <double (*Run)()>
std::vector<double> per_thread(int threads) {
  std::vector<double> rates(static_cast<size_t>(threads));
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&rates, t] {
      double runs[3] = {Run(), Run(), Run()};
      std::sort(runs, runs + 3);
      rates[static_cast<size_t>(t)] = runs[1];
    });
  }
  for (auto& worker : workers) worker.join();
  return rates;
}

void report(const char* name, const std::vector<double>& rates) {
  double sum = 0;
  for (double rate : rates) sum += rate;
  std::printf("%s: %.1f GFLOP/s in all over %zu thread(s) (", name, sum, rates.size());
  for (size_t t = 0; t < rates.size(); ++t) std::printf("%s%.1f", t ? ", " : "", rates[t]);
  std::printf(" per thread)\n");
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = std::max(argc > 1 ? std::atoi(argv[1]) : 1, 1);
#if defined(__FMA__)
  report("AVX2 (256-bit FMA)", per_thread<gflops_per_second<__m256, fma256, set256, 8>>(threads));
#endif
#if defined(__AVX512F__)
  report("AVX-512 (512-bit FMA)", per_thread<gflops_per_second<__m512, fma512, set512, 16>>(threads));
#endif
#if !defined(__FMA__) && !defined(__AVX512F__)
  std::puts("fma_peak: this build has neither FMA nor AVX-512 (build with -march=native on x86-64)");
#endif
}
