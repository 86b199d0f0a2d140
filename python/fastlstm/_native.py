"""Picks the compiled core this CPU runs: ``_core`` (x86-64-v3: AVX2+FMA) where the CPU has those
features, else ``_core_baseline`` (SSE2, about 3x slower), so one wheel runs on any x86-64 CPU.
``FASTLSTM_ISA=baseline`` forces the baseline core (for tests and comparisons)."""

from __future__ import annotations

import os

from ._cpu import missing_features

missing = missing_features()
forced_baseline = os.environ.get("FASTLSTM_ISA", "").strip().lower() == "baseline"

if missing or forced_baseline:
    try:
        from . import _core_baseline as core
    except ImportError:
        if forced_baseline and not missing:
            raise ImportError("FASTLSTM_ISA=baseline: this build has no baseline core (_core_baseline)") from None
        raise ImportError(
            "fastlstm's compiled core needs a CPU with " + ", ".join(missing).upper() + " (x86-64-v3), "
            "which this CPU lacks, and this build has no baseline core. Build from source with "
            "-C cmake.define.FASTLSTM_NATIVE_ISA=OFF to run on this machine."
        ) from None
else:
    from . import _core as core

__all__ = ["core", "missing"]
