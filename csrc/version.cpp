// Build facts, and the check that this CPU runs the instruction set the core was built for.
#include "fastlstm/version.hpp"

#include <string>


#include "cpu_check.hpp"
#include "fastlstm/error.hpp"

namespace fastlstm {

namespace detail {
void require_supported_cpu() {
  const char* missing = missing_cpu_features();
  if (*missing == '\0') return;
  throw Error(std::string("fastlstm: this library was built for ") + FASTLSTM_SIMD_LEVEL +
              ", which this CPU cannot run (it lacks " + missing +
              "): link the fastlstm::fastlstm_<isa> target of an instruction set it has (baseline runs on every "
              "x86-64 CPU), or rebuild with -DFASTLSTM_ISA=baseline");
}
}  // namespace detail

std::string version() { return FASTLSTM_VERSION; }
std::string simd_level() { return FASTLSTM_SIMD_LEVEL; }

std::string compiler() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

}  // namespace fastlstm
