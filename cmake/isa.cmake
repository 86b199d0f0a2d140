# The core, built once per instruction set: the flags of each, the settings every build shares,
# and fastlstm_add_core(target isa), which makes one copy. The package's Python modules and the
# installed fastlstm::fastlstm_<isa> targets are such copies.
# libstdc++ has two std::string ABIs that do not link together, and the API takes std::string: a
# program must compile with the one the library was built with (manylinux2014's compilers use the
# old one), so the exported target carries it.
include(CheckCXXSourceCompiles)
check_cxx_source_compiles("#include <string>
#if !defined(__GLIBCXX__) || _GLIBCXX_USE_CXX11_ABI != 1
#error not libstdc++ with the C++11 ABI
#endif
int main() { return 0; }" FASTLSTM_LIBSTDCXX_NEW_ABI)
check_cxx_source_compiles("#include <string>
#if !defined(__GLIBCXX__) || _GLIBCXX_USE_CXX11_ABI != 0
#error not libstdc++ with the old ABI
#endif
int main() { return 0; }" FASTLSTM_LIBSTDCXX_OLD_ABI)

# Settings every build of the core shares; `simd_level` is what build_info() reports.
function(fastlstm_configure_core target simd_level)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/csrc/include>
    $<INSTALL_INTERFACE:include>)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/csrc)  # the internal headers
  # Eigen and nlohmann/json stay out of the exported target: installed users never need them.
  target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:Eigen3::Eigen> $<BUILD_INTERFACE:nlohmann_json::nlohmann_json>)
  target_link_libraries(${target} PUBLIC Threads::Threads)
  target_compile_features(${target} PUBLIC cxx_std_17)
  if(FASTLSTM_LIBSTDCXX_NEW_ABI)
    target_compile_definitions(${target} PUBLIC _GLIBCXX_USE_CXX11_ABI=1)
  elseif(FASTLSTM_LIBSTDCXX_OLD_ABI)
    target_compile_definitions(${target} PUBLIC _GLIBCXX_USE_CXX11_ABI=0)
  endif()
  target_compile_definitions(${target} PRIVATE EIGEN_DONT_PARALLELIZE EIGEN_MPL2_ONLY
    FASTLSTM_SIMD_LEVEL="${simd_level}" FASTLSTM_VERSION="${PROJECT_VERSION}")
  if(NOT MSVC)
    target_compile_options(${target} PRIVATE -Wall -Wextra)
  endif()
endfunction()

# The instruction sets the core is built for on x86-64: flags and the name build_info() reports.
# Default x86-64 flags give SSE2-only code, about 3x slower for these kernels than AVX2; AVX-512
# doubles the width again (1.2-1.8x faster than AVX2 where the CPU has it).
set(FASTLSTM_X86_64 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set(FASTLSTM_X86_64 ON)
endif()
set(_fastlstm_isa_baseline_level "x86-64 baseline (SSE2)")
set(_fastlstm_isa_avx2_level "x86-64-v3 (AVX2+FMA)")
set(_fastlstm_isa_avx512_level "x86-64-v4 (AVX-512)")
set(_fastlstm_isa_avx2_flags -mavx2 -mfma -mbmi2 -mf16c -mlzcnt -mmovbe)
set(_fastlstm_isa_avx512_flags ${_fastlstm_isa_avx2_flags} -mavx512f -mavx512bw -mavx512cd -mavx512dq -mavx512vl)
if(MSVC)
  set(_fastlstm_isa_avx2_flags /arch:AVX2)
  set(_fastlstm_isa_avx512_flags /arch:AVX512)
endif()
if(FASTLSTM_X86_64 AND NOT FASTLSTM_ISA MATCHES "^(baseline|avx2|avx512)$")
  message(FATAL_ERROR "fastlstm: FASTLSTM_ISA is '${FASTLSTM_ISA}'; it must be baseline, avx2 or avx512")
endif()

# A copy of the core, `target`, compiled for `isa` (on x86-64) with the shared settings. With
# CUDA, it carries the CUDA backend (csrc/cuda, the target fastlstm_cuda_backend); without, the
# factory that refuses a GPU with the reason.
function(fastlstm_add_core target isa)
  cmake_parse_arguments(PARSE_ARGV 2 core "CUDA" "" "")
  if(NOT target STREQUAL "fastlstm")
    add_library(${target} STATIC ${FASTLSTM_CORE_SOURCES})
  endif()
  if(core_CUDA)
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:fastlstm_cuda_backend>)
    target_link_libraries(${target} PUBLIC ${FASTLSTM_CUDA_LIBRARIES})
  else()
    target_sources(${target} PRIVATE ${PROJECT_SOURCE_DIR}/csrc/cuda_unavailable.cpp)
  endif()
  # The check that this CPU runs `isa`, compiled without the ISA's flags so that it runs on the
  # CPUs it turns away (csrc/cpu_check.cpp), is part of the library.
  add_library(${target}_cpu_check OBJECT ${PROJECT_SOURCE_DIR}/csrc/cpu_check.cpp)
  target_include_directories(${target}_cpu_check PRIVATE ${PROJECT_SOURCE_DIR}/csrc/include)
  target_compile_definitions(${target}_cpu_check PRIVATE FASTLSTM_BUILD_ISA="${isa}")
  target_sources(${target} PRIVATE $<TARGET_OBJECTS:${target}_cpu_check>)
  if(FASTLSTM_X86_64)
    target_compile_options(${target} PRIVATE ${_fastlstm_isa_${isa}_flags})
    if(isa STREQUAL "avx512" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # GCC 12 flags Eigen's AVX-512 double transposes (a false positive inside its intrinsics).
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
    endif()
    set(level "${_fastlstm_isa_${isa}_level}")
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
    set(level "NEON")
  else()
    set(level "generic")
  endif()
  fastlstm_configure_core(${target} "${level}")
endfunction()
