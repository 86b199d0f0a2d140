"""fastlstm's PEP 517 build backend: scikit-build-core, plus cuBLAS in the build environment when
the CUDA module is asked for (``pip install . -C cmake.define.FASTLSTM_CUDA=ON``).

cuBLAS's headers and library come from NVIDIA's wheel for the CUDA major version of the nvcc that
will compile the module: ``nvidia-cublas`` (13.x) for CUDA 13, ``nvidia-cublas-cu12`` for CUDA 12.
A CPU-only build asks for nothing more than scikit-build-core does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from scikit_build_core import build as _scikit_build
from scikit_build_core.build import (  # noqa: F401  (the hooks this backend passes through)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

_TRUE = {"ON", "1", "TRUE", "YES", "Y"}


def _cuda_requested(config_settings) -> bool:
    for key, value in (config_settings or {}).items():
        if key.split(":")[0] in ("cmake.define.FASTLSTM_CUDA", "FASTLSTM_CUDA"):
            return str(value).upper() in _TRUE
    defines = os.environ.get("SKBUILD_CMAKE_DEFINE", "") + ";" + os.environ.get("CMAKE_ARGS", "")
    return re.search(r"FASTLSTM_CUDA(:BOOL)?=(ON|1|TRUE|YES)\b", defines, re.IGNORECASE) is not None


def _cuda_major() -> int | None:
    nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc")
    if not nvcc:
        return None
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+)\.", out)
    return int(match.group(1)) if match else None


def _cublas_requirements(config_settings) -> list[str]:
    if not _cuda_requested(config_settings):
        return []
    major = _cuda_major()
    if major is None:
        return []  # CMake will say that nvcc is missing
    return [f"nvidia-cublas-cu{major}"] if major < 13 else [f"nvidia-cublas>={major},<{major + 1}"]


def get_requires_for_build_wheel(config_settings=None):
    return _scikit_build.get_requires_for_build_wheel(config_settings) + _cublas_requirements(config_settings)


def get_requires_for_build_editable(config_settings=None):
    return _scikit_build.get_requires_for_build_editable(config_settings) + _cublas_requirements(config_settings)
