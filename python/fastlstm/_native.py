"""Picks the compiled core this CPU runs. On x86-64 the package carries one core per instruction
set, ``_core_avx512`` (x86-64-v4), ``_core_avx2`` (x86-64-v3: AVX2+FMA) and ``_core_baseline``
(SSE2); it imports the fastest one whose features the CPU has, so one wheel runs on any x86-64 CPU.
``FASTLSTM_ISA=avx512|avx2|baseline`` asks for one (for tests and comparisons)."""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any, List, Tuple

from ._cpu import missing_features

ISAS = ("avx512", "avx2", "baseline")  # fastest first


def built_isas() -> List[str]:
    """The instruction sets this build has a core for, fastest first."""
    return [isa for isa in ISAS if importlib.util.find_spec(f"{__package__}._core_{isa}") is not None]


def _choose() -> Tuple[str, Any]:  # a compiled module: no stubs, so Any
    built = built_isas()
    wanted = os.environ.get("FASTLSTM_ISA", "").strip().lower()
    if wanted:
        if wanted not in ISAS:
            raise ImportError(f"FASTLSTM_ISA={wanted!r}: expected one of {', '.join(ISAS)}")
        if wanted not in built:
            raise ImportError(f"FASTLSTM_ISA={wanted}: this build has no {wanted} core "
                              f"(it has: {', '.join(built) or 'none'})")
        candidates = [wanted]
    else:
        candidates = built
    for isa in candidates:
        missing = missing_features(isa)
        if not missing:
            return isa, importlib.import_module(f"{__package__}._core_{isa}")
    if not candidates:
        raise ImportError("this installation of fastlstm has no compiled core (_core_*)")
    # The least demanding core that was a candidate, and what it lacks.
    missing = missing_features(candidates[-1])
    if wanted:
        raise ImportError(f"FASTLSTM_ISA={wanted}: this CPU lacks " + ", ".join(missing).upper())
    raise ImportError(
        f"fastlstm's compiled core ({candidates[-1]}) needs a CPU with " + ", ".join(missing).upper() + ", "
        "which this CPU lacks, and this build has no core for it. Build from source with "
        "-C cmake.define.FASTLSTM_ISA=baseline to run on this machine."
    )


isa, core = _choose()

__all__ = ["core", "isa", "built_isas", "ISAS"]
