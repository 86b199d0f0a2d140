/* The CPU features that each instruction set's compiler flags (CMakeLists.txt) let the compiler
 * use, and whether this CPU has them. C, shared by the core (cpu_check.cpp) and the Python
 * package's _cpu module; whatever includes it must be compiled for the baseline ISA, so that it
 * runs on the very CPUs it has to turn away. */
#ifndef FASTLSTM_CPU_FEATURES_H
#define FASTLSTM_CPU_FEATURES_H

#include <stddef.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FASTLSTM_CPU_QUERY 1
#include <cpuid.h>

static const char* const fastlstm_avx2_features[] = {"avx2", "fma", "bmi2", "f16c", NULL};
static const char* const fastlstm_avx512_features[] = {"avx2",     "fma",      "bmi2",     "f16c",     "avx512f",
                                                       "avx512bw", "avx512cd", "avx512dq", "avx512vl", NULL};

/* Whether this CPU has `feature`, one of the names above. */
static inline int fastlstm_cpu_supports(const char* feature) {
  __builtin_cpu_init();
  /* __builtin_cpu_supports takes only string literals. */
#define FASTLSTM_CHECK(name) \
  if (strcmp(feature, name) == 0) return __builtin_cpu_supports(name);
  FASTLSTM_CHECK("avx2") FASTLSTM_CHECK("fma") FASTLSTM_CHECK("bmi2")
  FASTLSTM_CHECK("avx512f") FASTLSTM_CHECK("avx512bw") FASTLSTM_CHECK("avx512cd")
  FASTLSTM_CHECK("avx512dq") FASTLSTM_CHECK("avx512vl")
#undef FASTLSTM_CHECK
  if (strcmp(feature, "f16c") == 0) {
    /* Not a name clang (before 16) takes in __builtin_cpu_supports: CPUID leaf 1, ECX bit 29. */
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  }
  return 0;
}
#endif

/* The features the core built for `isa` needs, NULL-terminated; an empty list for "baseline" and
 * off x86-64; NULL for a name that is not an instruction set of this platform. */
static inline const char* const* fastlstm_isa_features(const char* isa) {
  static const char* const none[] = {NULL};
  if (strcmp(isa, "baseline") == 0) return none;
#ifdef FASTLSTM_CPU_QUERY
  if (strcmp(isa, "avx2") == 0) return fastlstm_avx2_features;
  if (strcmp(isa, "avx512") == 0) return fastlstm_avx512_features;
#endif
  return NULL;
}

#endif
