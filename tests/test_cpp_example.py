"""The C++ example (examples/cpp) builds against an installed fastlstm through
find_package(fastlstm) and computes what the Python LSTM computes.

Two installations, each a parameter of the tests:

- "wheel": the CMake package that this Python installation carries
  (``python -m fastlstm --cmake-dir``), as a C++ user gets it from ``pip install fastlstm``.
- "cmake-install": a C++-only build (-DFASTLSTM_PYTHON=OFF) installed with ``cmake --install``
  into a temporary prefix. Building the library needs Eigen 3.4 (a system Eigen3 or the cmeel-eigen
  wheel in this Python) and nlohmann/json (a system package or the nlohmann-json wheel) and takes about a minute on 2 cores the first time; the build folder
  (build/test-cpp-install) is reused, so later sessions only rebuild what changed.

Skipped with the reason when cmake or a C++ compiler is missing.
"""

import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import fastlstm
from fastlstm import _cpu

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cpp"
LIBRARY_BUILD = ROOT / "build" / "test-cpp-install"


def _run(cmd, **kwargs):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


def _check(result, what):
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="session")
def cmake():
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found: the C++ example is built with CMake (pip install cmake; apt-get install cmake)")
    compilers = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    if not any(name and shutil.which(name) for name in compilers):
        pytest.skip("no C++ compiler found (CXX, c++, g++, clang++): the C++ example cannot be built")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    return [cmake], generator


def _cmake_install_prefix(cmake, tmp_path_factory):
    """A C++-only build of fastlstm, installed into a fresh prefix: <prefix>/lib/cmake/fastlstm."""
    (exe, generator) = cmake
    purelib = Path(sysconfig.get_paths()["purelib"])
    hints = [purelib / "cmeel.prefix", purelib if (purelib / "nlohmann_json").is_dir() else purelib / "-"]
    prefix_path = ";".join(str(h) for h in hints if h.is_dir())
    LIBRARY_BUILD.mkdir(parents=True, exist_ok=True)
    with open(LIBRARY_BUILD / ".lock", "w") as lock:  # one build at a time in the shared folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        configure = [*exe, "-S", ROOT, "-B", LIBRARY_BUILD, "-DFASTLSTM_PYTHON=OFF", "-DCMAKE_BUILD_TYPE=Release"]
        if not (LIBRARY_BUILD / "CMakeCache.txt").exists():
            configure += generator
        if prefix_path:
            configure.append(f"-DCMAKE_PREFIX_PATH={prefix_path}")
        result = _run(configure)
        if result.returncode != 0 and "Eigen 3.4 not found" in result.stderr:
            pytest.skip("Eigen 3.4 not found (apt-get install libeigen3-dev, or pip install cmeel-eigen): "
                        "cannot build the C++-only library")
        if result.returncode != 0 and "nlohmann/json not found" in result.stderr:
            pytest.skip("nlohmann/json not found (apt-get install nlohmann-json3-dev, or pip install nlohmann-json): "
                        "cannot build the C++-only library")
        _check(result, "configuring the C++-only library")
        _check(_run([*exe, "--build", LIBRARY_BUILD, "--parallel", "2"]), "building the C++-only library")
        prefix = tmp_path_factory.mktemp("prefix")
        _check(_run([*exe, "--install", LIBRARY_BUILD, "--prefix", prefix]), "cmake --install")
    return prefix / "lib" / "cmake" / "fastlstm"


def _wheel_cmake_dir():
    result = _run([sys.executable, "-m", "fastlstm", "--cmake-dir"])
    _check(result, "python -m fastlstm --cmake-dir")
    return Path(result.stdout.strip())


@pytest.fixture(scope="session", params=["wheel", "cmake-install"])
def example(request, cmake, tmp_path_factory):
    """The example program, built against one installation of fastlstm."""
    (exe, generator) = cmake
    if request.param == "wheel":
        cmake_dir = _wheel_cmake_dir()
    else:
        cmake_dir = _cmake_install_prefix(cmake, tmp_path_factory)
    assert (cmake_dir / "fastlstmConfig.cmake").is_file(), f"no fastlstmConfig.cmake in {cmake_dir}"
    # The installed headers and library are all the example may use: Eigen is not needed.
    assert (cmake_dir.parent.parent.parent / "include" / "fastlstm" / "fastlstm.hpp").is_file()

    build = tmp_path_factory.mktemp(f"example-{request.param}")
    _check(_run([*exe, "-S", EXAMPLE, "-B", build, *generator, f"-Dfastlstm_DIR={cmake_dir}",
                 "-DCMAKE_BUILD_TYPE=Release"]), "configuring examples/cpp")
    _check(_run([*exe, "--build", build, "--parallel", "2"]), "building examples/cpp")
    return build / "fastlstm_run"


def _package_isas(cmake_dir):
    """fastlstm_ISA and fastlstm_ISAS as the package's fastlstmConfig.cmake sets them."""
    text = (cmake_dir / "fastlstmConfig.cmake").read_text()
    default = re.search(r'set\(fastlstm_ISA "([^"]*)"\)', text).group(1)
    cores = re.search(r'set\(fastlstm_ISAS "([^"]*)"\)', text).group(1).split(";")
    return default, cores


@pytest.fixture(scope="session", params=["baseline", "avx2", "avx512"])
def wheel_core_example(request, cmake, tmp_path_factory):
    """The example linked to the wheel's fastlstm::fastlstm_<isa>, with that core's simd_level()."""
    isa = request.param
    (exe, generator) = cmake
    cmake_dir = _wheel_cmake_dir()
    default, cores = _package_isas(cmake_dir)
    if isa not in cores:
        pytest.skip(f"this fastlstm's CMake package has no {isa} core (it has {', '.join(cores)})")
    missing = _cpu.missing_features(isa)
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(missing)}: the {isa} core cannot run here")
    build = tmp_path_factory.mktemp(f"example-wheel-{isa}")
    configure = _run([*exe, "-S", EXAMPLE, "-B", build, *generator, f"-Dfastlstm_DIR={cmake_dir}",
                      "-DCMAKE_BUILD_TYPE=Release", f"-DFASTLSTM_TARGET=fastlstm::fastlstm_{isa}"])
    _check(configure, "configuring examples/cpp")
    assert f"linking fastlstm::fastlstm_{isa}" in configure.stdout
    _check(_run([*exe, "--build", build, "--parallel", "2"]), "building examples/cpp")
    return build / "fastlstm_run", isa


def test_the_wheel_carries_a_core_for_each_instruction_set():
    default, cores = _package_isas(_wheel_cmake_dir())
    assert default == "avx2"  # what fastlstm::fastlstm links: the library's default FASTLSTM_ISA
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert sorted(cores) == ["avx2", "avx512", "baseline"]
        lib = _wheel_cmake_dir().parent.parent  # <prefix>/lib/cmake/fastlstm -> <prefix>/lib
        for isa in ("baseline", "avx512"):
            assert any(lib.glob(f"*fastlstm_{isa}.*")), f"no fastlstm_{isa} library in {lib}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="libstdc++'s ABI switch")
def test_every_exported_core_carries_the_string_abi_it_was_built_with():
    # A program compiled with the other std::string ABI would not link (manylinux2014 builds
    # with the old one), so each target tells its consumers which one to use.
    targets = (_wheel_cmake_dir() / "fastlstmTargets.cmake").read_text()
    _, cores = _package_isas(_wheel_cmake_dir())
    for core in ["fastlstm"] + [f"fastlstm_{isa}" for isa in cores if isa != "avx2"]:
        block = re.search(rf"set_target_properties\(fastlstm::{core} PROPERTIES(.*?)\n\)", targets, re.S)
        assert block, f"fastlstm::{core} is not exported"
        assert re.search(r'INTERFACE_COMPILE_DEFINITIONS "[^"]*_GLIBCXX_USE_CXX11_ABI=[01]', block.group(1)), core


def test_each_core_of_the_wheel_computes_what_python_computes(wheel_core_example, tmp_path):
    example, isa = wheel_core_example
    model = fastlstm.LSTM(7, 40, num_layers=2, proj_size=5)  # 40 units: whole and partial vector blocks
    model.save(tmp_path / "model.safetensors")
    x = np.random.default_rng(3).standard_normal((6, 3, 7), dtype=np.float32)
    x.tofile(tmp_path / "input.f32")
    result = _run([example, tmp_path / "model.safetensors", "--shape", "6,3,7", "--input", tmp_path / "input.f32",
                   "--output", tmp_path / "output.f32"])
    _check(result, f"fastlstm_run ({isa} core)")
    level = {"baseline": "x86-64 baseline (SSE2)", "avx2": "x86-64-v3 (AVX2+FMA)", "avx512": "x86-64-v4 (AVX-512)"}
    assert level[isa] in result.stderr
    output, _ = model(x)
    np.testing.assert_allclose(_read_f32(tmp_path / "output.f32", output.shape), output, rtol=0, atol=1e-5)


def test_the_cpp_benchmarks_build_against_the_wheel_and_run(cmake, tmp_path):
    # benchmarks/cpp: the C++ streaming step (case S7) and the cache read rate that bounds it.
    (exe, generator) = cmake
    build = tmp_path / "bench-cpp"
    _check(_run([*exe, "-S", ROOT / "benchmarks" / "cpp", "-B", build, *generator,
                 f"-Dfastlstm_DIR={_wheel_cmake_dir()}"]), "configuring benchmarks/cpp")
    _check(_run([*exe, "--build", build, "--parallel", "2"]), "building benchmarks/cpp")
    for weight_format in ("float32", "int8"):
        result = _run([build / "stream_step", "1", weight_format])
        _check(result, "stream_step")
        assert re.match(rf"S7 from C\+\+ \(N=1, I=H=256\), {weight_format} weights, 1 thread\(s\): median \d+\.\d+ us/step",
                        result.stdout)
    if platform.machine().lower() in ("x86_64", "amd64"):
        result = _run([build / "cache_read", "64", "2"])
        _check(result, "cache_read")
        rates = re.findall(r"thread (\d): 64 KiB read at (\d+\.\d) GB/s", result.stdout)
        assert [thread for thread, _ in rates] == ["0", "1"] and all(float(rate) > 0 for _, rate in rates)


def _read_f32(path, shape):
    return np.fromfile(path, dtype=np.float32).reshape(shape)


def test_example_forward_matches_python(example, tmp_path):
    model = fastlstm.LSTM(6, 10, num_layers=2, bidirectional=True, proj_size=4, batch_first=True)
    model.save(tmp_path / "model.safetensors")
    x = np.random.default_rng(1).standard_normal((3, 7, 6), dtype=np.float32)  # (N, L, H_in)
    x.tofile(tmp_path / "input.f32")
    result = _run([example, tmp_path / "model.safetensors", "--shape", "3,7,6", "--input", tmp_path / "input.f32",
                   "--output", tmp_path / "output.f32", "--state-out", tmp_path / "state.f32"])
    _check(result, "fastlstm_run")

    output, (h_n, c_n) = model(x)
    np.testing.assert_allclose(_read_f32(tmp_path / "output.f32", output.shape), output, rtol=0, atol=1e-6)
    state = np.fromfile(tmp_path / "state.f32", dtype=np.float32)
    np.testing.assert_allclose(state, np.concatenate([h_n.ravel(), c_n.ravel()]), rtol=0, atol=1e-6)


def test_example_stream_through_pipes_matches_python_forward(example, tmp_path):
    model = fastlstm.LSTM(5, 8, num_layers=2, proj_size=3)
    model.save(tmp_path / "model.safetensors")
    x = np.random.default_rng(2).standard_normal((9, 2, 5), dtype=np.float32)  # (L, N, H_in)
    result = subprocess.run([str(example), str(tmp_path / "model.safetensors"), "--shape", "9,2,5", "--stream",
                             "--state-out", str(tmp_path / "state.f32")], input=x.tobytes(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()

    output, (h_n, c_n) = model(x)
    np.testing.assert_allclose(np.frombuffer(result.stdout, dtype=np.float32).reshape(output.shape), output,
                               rtol=0, atol=1e-6)
    state = np.fromfile(tmp_path / "state.f32", dtype=np.float32)
    np.testing.assert_allclose(state, np.concatenate([h_n.ravel(), c_n.ravel()]), rtol=0, atol=1e-6)


def test_example_reports_a_wrong_input_size(example, tmp_path):
    fastlstm.LSTM(5, 8).save(tmp_path / "model.safetensors")
    x = np.zeros((2, 1, 4), dtype=np.float32)
    result = subprocess.run([str(example), str(tmp_path / "model.safetensors"), "--shape", "2,1,4"],
                            input=x.tobytes(), capture_output=True)
    assert result.returncode == 1
    assert b"input: expected size(-1) == input_size = 5, got 4" in result.stderr


def test_example_on_a_gpu_says_why_not_where_none_can_be_used(example, tmp_path):
    if fastlstm.cuda_available():
        pytest.skip("a GPU is usable here: tests/cpp/test_cuda.cpp runs the CUDA backend from C++")
    fastlstm.LSTM(5, 8).save(tmp_path / "model.safetensors")
    x = np.zeros((2, 1, 5), dtype=np.float32)
    result = subprocess.run([str(example), str(tmp_path / "model.safetensors"), "--shape", "2,1,5", "--device",
                             "cuda:0"], input=x.tobytes(), capture_output=True)
    assert result.returncode == 1
    # A library without CUDA says how to get it; one with CUDA, why this machine cannot use it.
    reasons = (b"FASTLSTM_CUDA=ON", b"no NVIDIA driver", b"CUDA is not usable", b"no CUDA device", b"compute capability")
    assert any(reason in result.stderr for reason in reasons), result.stderr.decode()


def test_example_refuses_an_unknown_device(example, tmp_path):
    result = subprocess.run([str(example), str(tmp_path / "model.safetensors"), "--shape", "2,1,5", "--device",
                             "gpu"], capture_output=True)
    assert result.returncode == 2
    assert b"--device: expected cpu, cuda or cuda:N, got 'gpu'" in result.stderr
