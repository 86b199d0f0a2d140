// Which CPU features the core was compiled to use that this CPU lacks. Built as an object of its
// own for the baseline ISA (CMakeLists.txt: the core's instruction-set flags do not reach it), and
// using nothing that another translation unit could instantiate with those flags: it must run on
// the very CPUs it reports.
#include "cpu_check.hpp"

#include "cpu_features.h"
#include "fastlstm/version.hpp"

#ifndef FASTLSTM_BUILD_ISA
#error "FASTLSTM_BUILD_ISA (baseline, avx2, avx512) names the instruction set of the core"
#endif

namespace fastlstm {
namespace detail {

char* missing_features(const char* const* needed, int (*supports)(const char*), char* out, std::size_t size) noexcept {
  std::size_t used = 0;
  if (size == 0) return out;
  out[0] = '\0';
  for (; needed && *needed; ++needed) {
    if (supports(*needed)) continue;
    for (const char* c = used > 0 ? " " : ""; *c && used + 1 < size; ++c) out[used++] = *c;
    for (const char* c = *needed; *c && used + 1 < size; ++c) out[used++] = *c;
    out[used] = '\0';
  }
  return out;
}

}  // namespace detail

const char* missing_cpu_features() noexcept {
#ifdef FASTLSTM_CPU_QUERY
  struct Missing {
    char names[256];
    Missing() { detail::missing_features(fastlstm_isa_features(FASTLSTM_BUILD_ISA), fastlstm_cpu_supports, names, sizeof names); }
  };
  static const Missing missing;  // thread-safe initialisation; the CPU does not change
  return missing.names;
#else
  return "";
#endif
}

}  // namespace fastlstm
