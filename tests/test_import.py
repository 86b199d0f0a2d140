"""Importing fastlstm: build facts, and a clear ImportError on a CPU the core was not built for."""

import subprocess
import sys
import textwrap

import fastlstm


def test_build_info_names_the_build():
    info = fastlstm.build_info()
    assert info["version"] == fastlstm.__version__
    assert info["default_threads"] >= 1
    assert info["simd"] and info["compiler"]
    assert fastlstm.cuda_available() is False


def test_this_cpu_has_every_feature_the_core_needs():
    from fastlstm import _cpu

    assert _cpu.missing_features() == []


def test_import_on_a_cpu_without_avx2_raises_a_clear_import_error():
    # A stand-in for the CPU check reports AVX2 and FMA missing, as an older CPU would.
    code = textwrap.dedent(
        """
        import sys, types
        fake = types.ModuleType("fastlstm._cpu")
        fake.missing_features = lambda: ["avx2", "fma"]
        sys.modules["fastlstm._cpu"] = fake
        try:
            import fastlstm
        except ImportError as error:
            print("ImportError:", error)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "ImportError:" in result.stdout, result.stdout + result.stderr
    assert "AVX2, FMA" in result.stdout
    assert "FASTLSTM_NATIVE_ISA=OFF" in result.stdout
