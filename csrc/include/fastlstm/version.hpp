#pragma once
// Build facts, for diagnostics. Each call is thread-safe and throws nothing but std::bad_alloc.
#include <string>

namespace fastlstm {

std::string version();
// The instruction set the core was compiled for, e.g. "x86-64-v3 (AVX2+FMA)".
std::string simd_level();
// Compiler name and version that built the core.
std::string compiler();
// The CPU features the core was compiled to use that this CPU lacks, space-separated, e.g.
// "avx512f avx512bw"; "" when it runs here. Safe to call first thing on any x86-64 CPU, even one
// that cannot run the rest of the library (building or loading a model there throws
// fastlstm::Error with these names); thread-safe, throws nothing.
const char* missing_cpu_features() noexcept;
// The threads a model uses when asked for num_threads = 0, and where that number comes from (e.g.
// "2 CPUs in the affinity mask"). In this order: FASTLSTM_NUM_THREADS when it is a positive
// integer; else the CPUs in this process's affinity mask (a container's CPU set, taskset,
// os.sched_setaffinity), at most its cgroup's CPU quota rounded up (cgroup v2 cpu.max, v1
// cpu.cfs_quota_us / cpu.cfs_period_us, the lowest from its cgroup up to the root; the cgroup
// file system is read at FASTLSTM_CGROUP_ROOT, default /sys/fs/cgroup). Read at each call: a
// worker process started with another mask or quota gets its own.
struct ThreadBudget {
  int threads = 1;
  std::string source;
};
ThreadBudget thread_budget();
int default_num_threads();  // thread_budget().threads

}  // namespace fastlstm
