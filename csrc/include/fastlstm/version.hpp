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
// Threads a model uses when asked for num_threads = 0.
int default_num_threads();

}  // namespace fastlstm
