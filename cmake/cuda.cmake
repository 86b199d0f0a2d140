# The CUDA backend: fastlstm._cuda, a second extension module that the package imports only when a
# model is put on a GPU, so the CPU package never needs CUDA libraries. The CUDA runtime is linked
# statically; cuBLAS comes from the nvidia-cublas wheel (nvidia/cu<major>/ or nvidia/cublas/ under
# site-packages) and is found at run time through RUNPATH, relative to the installed module.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  # sm_75 (Turing) to sm_90 (Hopper) as machine code, plus sm_90 PTX for newer GPUs.
  set(CMAKE_CUDA_ARCHITECTURES 75-real 80-real 86-real 89-real 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(_fastlstm_cuda_major ${CUDAToolkit_VERSION_MAJOR})

# Every folder on the build Python's sys.path: pip installs the backend's extra requirements (here
# nvidia-cublas) into a build-environment prefix that only sys.path names.
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c "import sys; sys.stdout.write(';'.join(p for p in sys.path if p))"
  OUTPUT_VARIABLE _fastlstm_site_dirs ERROR_QUIET)
set(_fastlstm_cublas_roots ${FASTLSTM_CUBLAS_ROOT})
foreach(site IN LISTS _fastlstm_site_dirs CMAKE_PREFIX_PATH)
  list(APPEND _fastlstm_cublas_roots "${site}/nvidia/cu${_fastlstm_cuda_major}" "${site}/nvidia/cublas")
endforeach()
find_path(FASTLSTM_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${_fastlstm_cublas_roots} ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES include)
find_library(FASTLSTM_CUBLAS_LIBRARY NAMES cublas libcublas.so.${_fastlstm_cuda_major}
  HINTS ${_fastlstm_cublas_roots} ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
if(NOT FASTLSTM_CUBLAS_INCLUDE_DIR OR NOT FASTLSTM_CUBLAS_LIBRARY)
  message(FATAL_ERROR "fastlstm: FASTLSTM_CUDA=ON needs cuBLAS ${_fastlstm_cuda_major}.x (for nvcc "
    "${CUDAToolkit_VERSION}). Install it into the build environment (pip install nvidia-cublas; the "
    "package's build backend does this itself when -C cmake.define.FASTLSTM_CUDA=ON is given) or point "
    "-DFASTLSTM_CUBLAS_ROOT=<folder with include/cublas_v2.h and lib/libcublas.so*> at it.")
endif()
message(STATUS "fastlstm: CUDA ${CUDAToolkit_VERSION}, cuBLAS ${FASTLSTM_CUBLAS_LIBRARY}, "
  "architectures ${CMAKE_CUDA_ARCHITECTURES}")

add_library(fastlstm_cuda STATIC csrc/cuda/cuda_lstm.cu)
set_target_properties(fastlstm_cuda PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON CUDA_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden)
target_include_directories(fastlstm_cuda PRIVATE ${FASTLSTM_CUBLAS_INCLUDE_DIR})
target_link_libraries(fastlstm_cuda PUBLIC ${FASTLSTM_PYTHON_CORE} PRIVATE CUDA::cudart_static ${FASTLSTM_CUBLAS_LIBRARY})
# 554: TensorView<const T>'s conversion to TensorView<const T> is never called (by design).
target_compile_options(fastlstm_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall --diag-suppress=554>)

pybind11_add_module(_cuda MODULE csrc/python/cuda_module.cpp)
target_link_libraries(_cuda PRIVATE fastlstm_cuda)
set_target_properties(_cuda PROPERTIES
  INSTALL_RPATH "$ORIGIN/../nvidia/cu${_fastlstm_cuda_major}/lib;$ORIGIN/../nvidia/cublas/lib"
  BUILD_RPATH "$ORIGIN/../nvidia/cu${_fastlstm_cuda_major}/lib;$ORIGIN/../nvidia/cublas/lib")
if(NOT APPLE AND NOT WIN32)
  target_link_options(_cuda PRIVATE "LINKER:--enable-new-dtags")  # RUNPATH: LD_LIBRARY_PATH may override
endif()
install(TARGETS _cuda LIBRARY DESTINATION .)
