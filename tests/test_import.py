"""Importing fastlstm: build facts, and the baseline core (or a clear ImportError) on a CPU without AVX2."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

import fastlstm


def test_build_info_names_the_build():
    info = fastlstm.build_info()
    assert info["version"] == fastlstm.__version__
    assert info["default_threads"] >= 1
    assert info["simd"] and info["compiler"]
    assert isinstance(info["cuda"], str)


def test_this_cpu_has_every_feature_the_core_needs():
    from fastlstm import _cpu

    assert _cpu.missing_features() == []


def _run(code, **env):
    import os

    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **env})
    return result.stdout + result.stderr


HAS_BASELINE = importlib.util.find_spec("fastlstm._core_baseline") is not None
needs_baseline = pytest.mark.skipif(not HAS_BASELINE, reason="this build has no baseline core (not x86-64-v3)")

FAKE_OLD_CPU = """
    import sys, types
    fake = types.ModuleType("fastlstm._cpu")
    fake.missing_features = lambda: ["avx2", "fma"]
    sys.modules["fastlstm._cpu"] = fake
"""


@needs_baseline
def test_a_cpu_without_avx2_gets_the_baseline_core():
    # A stand-in for the CPU check reports AVX2 and FMA missing, as an older CPU would.
    out = _run(FAKE_OLD_CPU + """
    import fastlstm, numpy as np
    print("simd:", fastlstm.build_info()["simd"])
    print("core:", fastlstm._native.core.__name__)
    out, _ = fastlstm.LSTM(3, 4)(np.ones((2, 1, 3), np.float32))
    print("shape:", out.shape)
    """)
    assert "simd: x86-64 baseline (SSE2)" in out, out
    assert "core: fastlstm._core_baseline" in out, out
    assert "shape: (2, 1, 4)" in out, out


@pytest.mark.skipif(HAS_BASELINE, reason="this build has a baseline core")
def test_without_a_baseline_core_an_old_cpu_gets_a_clear_import_error():
    out = _run(FAKE_OLD_CPU + """
    try:
        import fastlstm
    except ImportError as error:
        print("ImportError:", error)
    """)
    assert "ImportError:" in out and "AVX2, FMA" in out and "FASTLSTM_NATIVE_ISA=OFF" in out, out


@needs_baseline
def test_the_baseline_core_matches_torch():
    # The parity grid's essentials, through the baseline core (forced by FASTLSTM_ISA).
    out = _run("""
    import itertools, numpy as np, torch, fastlstm
    assert fastlstm.build_info()["simd"] == "x86-64 baseline (SSE2)"
    worst = 0.0
    for layers, bidir, proj, batch_first, dtype in itertools.product(
            [1, 2], [False, True], [0, 5], [False, True], [np.float32, np.float64]):
        torch.manual_seed(0)
        tdt = torch.float32 if dtype == np.float32 else torch.float64
        m = torch.nn.LSTM(7, 17, layers, batch_first=batch_first, bidirectional=bidir, proj_size=proj,
                          dtype=tdt).eval()
        f = fastlstm.LSTM.from_torch(m)
        x = np.random.default_rng(1).standard_normal((3, 5, 7)).astype(dtype)
        with torch.no_grad():
            ref, (h, c) = m(torch.from_numpy(x))
        out, (fh, fc) = f(x)
        tol = 1e-5 if dtype == np.float32 else 1e-10
        for a, b in ((out, ref), (fh, h), (fc, c)):
            diff = float(np.abs(a - b.numpy()).max())
            assert diff <= tol, (layers, bidir, proj, batch_first, dtype, diff)
    print("parity ok")
    """, FASTLSTM_ISA="baseline")
    assert "parity ok" in out, out
