// The check that this CPU runs the core's instruction set (csrc/cpu_check.cpp).
#include <cstring>
#include <string>

#include "../../csrc/cpu_check.hpp"
#include "helpers.hpp"

namespace {
int has_only_avx2_and_fma(const char* feature) {
  return std::strcmp(feature, "avx2") == 0 || std::strcmp(feature, "fma") == 0;
}
int has_nothing(const char*) { return 0; }
}  // namespace

TEST_CASE("cpu check: the CPU that runs the tests runs the core, so nothing is missing") {
  CHECK(std::string(fastlstm::missing_cpu_features()).empty());
  CHECK(fastlstm::missing_cpu_features() == fastlstm::missing_cpu_features());  // computed once
  CHECK_NOTHROW(fastlstm::detail::require_supported_cpu());
}

TEST_CASE("cpu check: missing features are listed in order, space-separated, and truncated to the buffer") {
  const char* const needed[] = {"avx2", "fma", "bmi2", "avx512f", nullptr};
  char out[64];
  CHECK(std::string(fastlstm::detail::missing_features(needed, has_only_avx2_and_fma, out, sizeof out)) ==
        "bmi2 avx512f");
  CHECK(std::string(fastlstm::detail::missing_features(needed, has_nothing, out, sizeof out)) ==
        "avx2 fma bmi2 avx512f");
  const char* const none[] = {nullptr};
  CHECK(std::string(fastlstm::detail::missing_features(none, has_nothing, out, sizeof out)).empty());
  CHECK(std::string(fastlstm::detail::missing_features(nullptr, has_nothing, out, sizeof out)).empty());
  char small[8];
  CHECK(std::string(fastlstm::detail::missing_features(needed, has_nothing, small, sizeof small)) == "avx2 fm");
  char tiny[1] = {'x'};
  CHECK(fastlstm::detail::missing_features(needed, has_nothing, tiny, sizeof tiny)[0] == '\0');
}
