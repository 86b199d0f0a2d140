"""Importing fastlstm: build facts, and the choice of compiled core (one per instruction set on
x86-64): the fastest one the CPU runs, the next one down on a CPU that lacks features, a clear
ImportError where none runs."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

import fastlstm
from fastlstm import _cpu, _native


def test_build_info_names_the_build():
    info = fastlstm.build_info()
    assert info["version"] == fastlstm.__version__
    assert info["default_threads"] >= 1
    assert info["simd"] and info["compiler"]
    assert info["isa"] in _native.ISAS
    assert isinstance(info["cuda"], str)


@pytest.mark.skipif(bool(os.environ.get("FASTLSTM_ISA")), reason="FASTLSTM_ISA picks the core")
def test_the_core_in_use_is_the_fastest_this_cpu_runs():
    runnable = [isa for isa in _native.built_isas() if not _cpu.missing_features(isa)]
    assert runnable, "no core of this build runs on this CPU"
    assert _native.isa == runnable[0]
    assert _native.core.__name__ == f"fastlstm._core_{runnable[0]}"


def test_this_cpu_has_every_feature_of_the_core_in_use():
    assert _cpu.missing_features(_native.isa) == []
    assert _cpu.missing_features("baseline") == []


def test_missing_features_names_an_unknown_isa():
    with pytest.raises(ValueError, match="'avx9'"):
        _cpu.missing_features("avx9")


def _run(code, **env):
    """Runs `code` in a fresh interpreter; FASTLSTM_ISA only as `env` gives it."""
    base = {name: value for name, value in os.environ.items() if name != "FASTLSTM_ISA"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=300, env={**base, **env})
    return result.stdout + result.stderr


def _fake_cpu(missing_by_isa, hide_cores=()):
    """Code that makes the package see a CPU lacking `missing_by_isa` features and a build
    without the cores named in `hide_cores`."""
    return f"""
    import importlib.util, sys, types
    fake = types.ModuleType("fastlstm._cpu")
    fake.missing_features = lambda isa="avx2": {missing_by_isa!r}.get(isa, [])
    sys.modules["fastlstm._cpu"] = fake
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: (
        None if name in {[f"fastlstm._core_{isa}" for isa in hide_cores]!r} else real_find_spec(name, *a))
    """


NO_AVX512 = {"avx512": ["avx512f", "avx512bw"]}
NO_AVX2 = {"avx512": ["avx2", "fma", "avx512f"], "avx2": ["avx2", "fma"]}
SHOW_CORE = """
    import fastlstm, numpy as np
    print("simd:", fastlstm.build_info()["simd"])
    print("core:", fastlstm._native.core.__name__)
    out, _ = fastlstm.LSTM(3, 4)(np.ones((2, 1, 3), np.float32))
    print("shape:", out.shape)
"""


def needs_core(isa):
    return pytest.mark.skipif(isa not in _native.built_isas(), reason=f"this build has no {isa} core")


@pytest.mark.parametrize("missing,isa,simd", [
    (NO_AVX512, "avx2", "x86-64-v3 (AVX2+FMA)"),
    (NO_AVX2, "baseline", "x86-64 baseline (SSE2)"),
], ids=["no-avx512-gets-avx2", "no-avx2-gets-baseline"])
def test_a_cpu_without_a_feature_gets_the_next_core_down(missing, isa, simd):
    if isa not in _native.built_isas():
        pytest.skip(f"this build has no {isa} core")
    out = _run(_fake_cpu(missing) + SHOW_CORE)
    assert f"simd: {simd}" in out, out
    assert f"core: fastlstm._core_{isa}" in out, out
    assert "shape: (2, 1, 4)" in out, out


@needs_core("avx2")
def test_without_a_baseline_core_an_old_cpu_gets_a_clear_import_error():
    out = _run(_fake_cpu(NO_AVX2, hide_cores=("baseline",)) + """
    try:
        import fastlstm
    except ImportError as error:
        print("ImportError:", error)
    """)
    assert "ImportError:" in out and "AVX2, FMA" in out and "FASTLSTM_ISA=baseline" in out, out


def test_fastlstm_isa_names_a_core():
    out = _run("""
    try:
        import fastlstm
    except ImportError as error:
        print("ImportError:", error)
    """, FASTLSTM_ISA="avx9")
    assert "ImportError: FASTLSTM_ISA='avx9': expected one of avx512, avx2, baseline" in out, out


@needs_core("avx512")
def test_fastlstm_isa_refuses_a_core_this_cpu_cannot_run():
    out = _run(_fake_cpu(NO_AVX512) + """
    try:
        import fastlstm
    except ImportError as error:
        print("ImportError:", error)
    """, FASTLSTM_ISA="avx512")
    assert "ImportError: FASTLSTM_ISA=avx512: this CPU lacks AVX512F, AVX512BW" in out, out


@pytest.mark.parametrize("isa", _native.ISAS)
def test_every_core_this_cpu_runs_matches_torch(isa):
    if isa not in _native.built_isas():
        pytest.skip(f"this build has no {isa} core")
    if _cpu.missing_features(isa):
        pytest.skip(f"this CPU lacks {', '.join(_cpu.missing_features(isa))}")
    # The parity grid's essentials, through the core FASTLSTM_ISA asks for.
    out = _run("""
    import itertools, numpy as np, torch, fastlstm
    print("isa:", fastlstm.build_info()["isa"])
    worst = 0.0
    for layers, bidir, proj, batch_first, dtype in itertools.product(
            [1, 2], [False, True], [0, 5], [False, True], [np.float32, np.float64]):
        torch.manual_seed(0)
        tdt = torch.float32 if dtype == np.float32 else torch.float64
        m = torch.nn.LSTM(7, 53, layers, batch_first=batch_first, bidirectional=bidir, proj_size=proj,
                          dtype=tdt).eval()
        f = fastlstm.LSTM.from_torch(m, num_threads=2)
        x = np.random.default_rng(1).standard_normal((3, 5, 7)).astype(dtype)
        with torch.no_grad():
            ref, (h, c) = m(torch.from_numpy(x))
        out, (fh, fc) = f(x)
        tol = 1e-5 if dtype == np.float32 else 1e-10
        for a, b in ((out, ref), (fh, h), (fc, c)):
            diff = float(np.abs(a - b.numpy()).max())
            assert diff <= tol, (layers, bidir, proj, batch_first, dtype, diff)
    print("parity ok")
    """, FASTLSTM_ISA=isa)
    assert f"isa: {isa}" in out and "parity ok" in out, out
