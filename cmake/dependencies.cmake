# The header-only dependencies of the build: Eigen and nlohmann/json. Neither is needed by users of
# the installed library (both are private to its sources), so the exported package asks for none.

# Where PyPI packages of them may be: each CMAKE_PREFIX_PATH entry (scikit-build-core lists the
# build environment there) and, for the Python build, the running Python's purelib.
set(_fastlstm_site_folders ${CMAKE_PREFIX_PATH})
if(FASTLSTM_PYTHON)
  if(NOT Python_EXECUTABLE)
    find_package(Python 3.9 REQUIRED COMPONENTS Interpreter)
  endif()
  execute_process(
    COMMAND "${Python_EXECUTABLE}" -c "import sysconfig, sys; sys.stdout.write(sysconfig.get_paths()['purelib'])"
    OUTPUT_VARIABLE _fastlstm_purelib ERROR_QUIET)
  list(APPEND _fastlstm_site_folders "${_fastlstm_purelib}")
endif()

# Eigen (header-only, used to build the library, never by its users): a system Eigen3 (Debian:
# libeigen3-dev), one named by CMAKE_PREFIX_PATH or Eigen3_DIR, or the cmeel-eigen wheel, which
# installs under <site-packages>/cmeel.prefix.
find_package(Eigen3 3.4 CONFIG QUIET)
if(NOT Eigen3_FOUND)
  set(_fastlstm_cmeel_prefixes "")
  foreach(folder IN LISTS _fastlstm_site_folders)
    list(APPEND _fastlstm_cmeel_prefixes "${folder}/cmeel.prefix")
  endforeach()
  find_package(Eigen3 3.4 CONFIG QUIET HINTS ${_fastlstm_cmeel_prefixes})
endif()
if(NOT Eigen3_FOUND)
  set(_fastlstm_eigen_seen "")
  if(Eigen3_CONSIDERED_VERSIONS)
    set(_fastlstm_eigen_seen " (found only versions ${Eigen3_CONSIDERED_VERSIONS}: ${Eigen3_CONSIDERED_CONFIGS})")
  endif()
  message(FATAL_ERROR "fastlstm: Eigen 3.4 not found${_fastlstm_eigen_seen}. Eigen is header-only and "
    "needed only to build fastlstm. Install it "
    "(Debian/Ubuntu: apt-get install libeigen3-dev; or pip install cmeel-eigen) and, if CMake does not "
    "find it by itself, pass -DCMAKE_PREFIX_PATH=<its prefix> (for cmeel-eigen: "
    "<site-packages>/cmeel.prefix) or -DEigen3_DIR=<the folder holding Eigen3Config.cmake>.")
endif()
message(STATUS "fastlstm: Eigen ${Eigen3_VERSION} from ${Eigen3_DIR}")

# nlohmann/json (the model file's JSON header, read with its SAX parser): a system nlohmann_json
# (Debian: nlohmann-json3-dev), or the nlohmann-json wheel, which installs the headers under
# <site-packages>/nlohmann_json/include.
find_package(nlohmann_json 3.10 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  set(_fastlstm_json_hints "")
  foreach(folder IN LISTS _fastlstm_site_folders)
    list(APPEND _fastlstm_json_hints "${folder}/nlohmann_json/include")
  endforeach()
  find_path(FASTLSTM_NLOHMANN_JSON_INCLUDE_DIR nlohmann/json.hpp HINTS ${_fastlstm_json_hints})
  if(NOT FASTLSTM_NLOHMANN_JSON_INCLUDE_DIR)
    message(FATAL_ERROR "fastlstm: nlohmann/json not found. It is header-only and needed only to build "
      "fastlstm. Install it (Debian/Ubuntu: apt-get install nlohmann-json3-dev; or pip install nlohmann-json) "
      "and, if CMake does not find it by itself, pass -DCMAKE_PREFIX_PATH=<its prefix> (for the wheel: "
      "<site-packages>) or -DFASTLSTM_NLOHMANN_JSON_INCLUDE_DIR=<the folder holding nlohmann/json.hpp>.")
  endif()
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  target_include_directories(nlohmann_json::nlohmann_json INTERFACE "${FASTLSTM_NLOHMANN_JSON_INCLUDE_DIR}")
  message(STATUS "fastlstm: nlohmann/json from ${FASTLSTM_NLOHMANN_JSON_INCLUDE_DIR}")
else()
  message(STATUS "fastlstm: nlohmann/json ${nlohmann_json_VERSION} from ${nlohmann_json_DIR}")
endif()
