#pragma once
// Build facts, for diagnostics. Each call is thread-safe and throws nothing but std::bad_alloc.
#include <string>

namespace fastlstm {

std::string version();
// The instruction set the core was compiled for, e.g. "x86-64-v3 (AVX2+FMA)".
std::string simd_level();
// Compiler name and version that built the core.
std::string compiler();
// Threads a model uses when asked for num_threads = 0.
int default_num_threads();

}  // namespace fastlstm
