"""fastlstm: torch.nn.LSTM inference without PyTorch.

>>> import numpy as np, fastlstm
>>> lstm = fastlstm.LSTM(input_size=8, hidden_size=16, num_layers=2, batch_first=True)
>>> output, (h_n, c_n) = lstm(np.zeros((4, 10, 8), dtype=np.float32))
>>> output.shape
(4, 10, 16)
"""

from __future__ import annotations

from ._native import core as _core  # the core for the best instruction set this CPU has
from . import _cuda_runtime, _native  # noqa: E402
from ._errors import BatcherClosedError, InputError, OnnxImportError, PoolFullError, UnknownStreamError  # noqa: E402
from ._lstm import LSTM, IncompatibleKeys  # noqa: E402
from ._onnx import OnnxLstm, onnx_lstm  # noqa: E402
from ._stream import LSTMStream  # noqa: E402
from ._stream_pool import StreamPool  # noqa: E402
from ._step_batcher import StepBatcher, StepFuture  # noqa: E402
from ._packing import (  # noqa: E402
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
    unpad_sequence,
)

__version__ = _core.version()

__all__ = [
    "LSTM",
    "IncompatibleKeys",
    "LSTMStream",
    "StreamPool",
    "StepBatcher",
    "StepFuture",
    "InputError",
    "UnknownStreamError",
    "PoolFullError",
    "BatcherClosedError",
    "OnnxImportError",
    "OnnxLstm",
    "onnx_lstm",
    "PackedSequence",
    "pack_padded_sequence",
    "pack_sequence",
    "pad_packed_sequence",
    "pad_sequence",
    "unpack_sequence",
    "unpad_sequence",
    "build_info",
    "cuda_available",
    "cuda_unavailable_reason",
    "cuda_device_count",
    "__version__",
]


def cuda_available() -> bool:
    """Whether models can run on a GPU here: this build has the CUDA module, cuBLAS loads and a
    CUDA device (sm_75 or newer) is visible. ``cuda_unavailable_reason()`` says why not."""
    return _cuda_runtime.available()


def cuda_unavailable_reason() -> str:
    """Why ``cuda_available()`` is False (no CUDA build, no cuBLAS, no driver, no device); an empty
    string when it is True."""
    return _cuda_runtime.unavailable_reason()


def cuda_device_count() -> int:
    """CUDA devices a model can be put on (``device="cuda:N"``, N below this)."""
    return _cuda_runtime.device_count()


def build_info() -> dict:
    """Facts about the compiled core: version, compiler, SIMD level, which core of this build runs
    (``isa``: ``avx512``, ``avx2`` or ``baseline``), default threads (what a model takes with
    num_threads=None) and where that number comes from (FASTLSTM_NUM_THREADS, the affinity mask or
    the cgroup CPU quota), CUDA."""
    threads, threads_source = _core.thread_budget()
    return {
        "version": __version__,
        "compiler": _core.compiler(),
        "simd": _core.simd_level(),
        "isa": _native.isa,
        "default_threads": threads,
        "threads_source": threads_source,
        "cuda": _cuda_build_info(),
    }


def _cuda_build_info() -> str:
    if _cuda_runtime.available():
        count = _cuda_runtime.device_count()
        return f"{count} device(s), cuda:0 = {_cuda_runtime.device_name(0)}"
    return f"unavailable: {_cuda_runtime.unavailable_reason()}"
