#pragma once
// Whether this CPU runs the instruction set the core was compiled for (cpu_check.cpp).
#include <cstddef>

namespace fastlstm::detail {

// Writes the names in `needed` (NULL-terminated) for which supports(name) is 0 into `out`,
// space-separated and NUL-terminated, truncated to `size` bytes; returns out.
char* missing_features(const char* const* needed, int (*supports)(const char*), char* out, std::size_t size) noexcept;

// Throws fastlstm::Error naming the missing features when this CPU cannot run the core; called
// before a model is built or loaded.
void require_supported_cpu();

}  // namespace fastlstm::detail
