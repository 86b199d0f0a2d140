# Installation, included once every installed core is known (FASTLSTM_INSTALLED_ISAS).
# Installation: the public headers, the library (static and position-independent unless
# BUILD_SHARED_LIBS is set) and a CMake package, so that a C++ program writes
# find_package(fastlstm CONFIG REQUIRED) and links fastlstm::fastlstm. The wheel carries the same
# files under site-packages/fastlstm (`python -m fastlstm --cmake-dir`).
if(SKBUILD)
  set(CMAKE_INSTALL_LIBDIR lib)  # the wheel's fixed layout, where --cmake-dir looks
endif()
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(FASTLSTM_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/fastlstm")
install(TARGETS fastlstm EXPORT fastlstmTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
# The other cores the Python build made: a C++ program picks the one of its CPU
# (fastlstm::fastlstm_<isa>).
foreach(isa IN LISTS FASTLSTM_INSTALLED_ISAS)
  if(TARGET fastlstm_${isa})
    install(TARGETS fastlstm_${isa} EXPORT fastlstmTargets ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}")
  endif()
endforeach()
# fastlstm/cuda.hpp only with the CUDA backend, which it declares.
if(FASTLSTM_CUDA)
  install(DIRECTORY csrc/include/fastlstm DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" FILES_MATCHING PATTERN "*.hpp")
else()
  install(DIRECTORY csrc/include/fastlstm DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" FILES_MATCHING PATTERN "*.hpp"
    PATTERN "cuda.hpp" EXCLUDE)
endif()

# The CMake package, once every installed core is known.
install(EXPORT fastlstmTargets NAMESPACE fastlstm:: DESTINATION "${FASTLSTM_INSTALL_CMAKEDIR}")
configure_package_config_file(cmake/fastlstmConfig.cmake.in "${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfig.cmake"
  INSTALL_DESTINATION "${FASTLSTM_INSTALL_CMAKEDIR}")
# 0.x: a minor release may change the API.
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfig.cmake" "${CMAKE_CURRENT_BINARY_DIR}/fastlstmConfigVersion.cmake"
  DESTINATION "${FASTLSTM_INSTALL_CMAKEDIR}")
