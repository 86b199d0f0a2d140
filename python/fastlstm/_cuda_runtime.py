"""The CUDA backend seen from Python: loads ``fastlstm._cuda`` on first use (the CPU package never
needs CUDA libraries), says why CUDA is unavailable, and converts GPU arrays that speak DLPack or
``__cuda_array_interface__`` into operands the engine reads in place."""

from __future__ import annotations

import importlib.util
import re
import threading
from typing import Any, Optional, Tuple

import numpy as np

_lock = threading.Lock()
_loaded: Optional[Tuple[Any, int, str]] = None  # (module or None, usable devices, reason)

_KDL_CUDA, _KDL_CUDA_MANAGED = 2, 13
_LEGACY_DEFAULT_STREAM = 1  # as DLPack and __cuda_array_interface__ name it


def _load() -> Tuple[Any, int, str]:
    global _loaded
    with _lock:
        if _loaded is None and importlib.util.find_spec(f"{__package__}._cuda") is None:
            _loaded = (None, 0, "this fastlstm was built without CUDA (rebuild with "
                                "pip install '.[cuda]' -C cmake.define.FASTLSTM_CUDA=ON)")
        if _loaded is None:
            try:
                missing = _missing_cpu_features()
            except ImportError as error:  # an installation without the module's build description
                _loaded = (None, 0, f"the CUDA module's build description is missing ({error}): reinstall fastlstm")
            else:
                if missing:
                    _loaded = (None, 0, "the CUDA module is built for CPUs with " + ", ".join(missing).upper()
                                        + ", which this CPU lacks")
        if _loaded is None:
            try:
                _cuda = importlib.import_module(f"{__package__}._cuda")
            except ImportError as error:
                text = str(error)
                if "cublas" in text.lower():
                    reason = f"cuBLAS could not be loaded ({text}); pip install 'nvidia-cublas>=13,<14'"
                else:
                    reason = f"the CUDA module could not be loaded: {text}"
                _loaded = (None, 0, reason)
            else:
                count, reason = _cuda.device_count()
                _loaded = (_cuda, int(count), str(reason))
        return _loaded


def _missing_cpu_features() -> list:
    """What this CPU lacks of the instruction set the CUDA module's core is built for (its
    _cuda_build.ISA), checked before the module loads."""
    from ._cpu import missing_features

    build = importlib.import_module(f"{__package__}._cuda_build")
    return list(missing_features(build.ISA))


def available() -> bool:
    return _load()[1] > 0


def unavailable_reason() -> str:
    """Why CUDA cannot be used here; an empty string when it can."""
    return _load()[2]


def device_count() -> int:
    return _load()[1]


def module() -> Any:
    """fastlstm._cuda; RuntimeError with the reason when CUDA is unavailable."""
    mod, count, reason = _load()
    if mod is None or count == 0:
        raise RuntimeError(f"CUDA is not available: {reason}")
    return mod


def parse_device(device: Any) -> Optional[int]:
    """None for the CPU, the device index for CUDA. Takes 'cpu', 'cuda', 'cuda:N', a torch.device
    or an int (a CUDA index, as torch takes it)."""
    if device is None:
        return None
    if isinstance(device, (int, np.integer)) and not isinstance(device, bool):
        if device < 0:
            raise ValueError(f"device: expected a non-negative CUDA index, got {device}")
        return int(device)
    text = str(device)
    if text == "cpu":
        return None
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return int(match.group(1) or 0)


def device_name(index: int) -> str:
    return module().device_name(index)


# ----------------------------------------------------------------------------- device arrays
class DeviceOperand:
    """A GPU array handed to a CUDA model: the engine's view of it plus the dtype, shape and
    framework of the object it came from (outputs go back in the same framework)."""

    __slots__ = ("tensor", "dtype", "shape", "ndim", "framework")

    def __init__(self, tensor: Any, dtype: Any, framework: str) -> None:
        self.tensor = tensor
        self.dtype = dtype
        self.shape = tuple(tensor.shape)
        self.ndim = len(self.shape)
        self.framework = framework

    def unsqueeze(self, axis: int) -> "DeviceOperand":
        return DeviceOperand(self.tensor.unsqueeze(axis), self.dtype, self.framework)


def is_device_array(value: Any) -> bool:
    """True for an array in GPU memory (DLPack device CUDA, or __cuda_array_interface__)."""
    if hasattr(value, "__dlpack_device__"):
        try:
            return value.__dlpack_device__()[0] in (_KDL_CUDA, _KDL_CUDA_MANAGED)
        except Exception:  # noqa: BLE001 - a broken producer is simply not a GPU array
            return False
    return hasattr(value, "__cuda_array_interface__")


def _framework(value: Any) -> str:
    root = type(value).__module__.split(".")[0]
    return root if root in ("torch", "cupy") else "fastlstm"


def device_operand(value: Any, name: str) -> DeviceOperand:
    """Reads a GPU array in place. A model's GPU work waits for what is queued on the legacy
    default stream when it starts (fastlstm/cuda.hpp): DLPack producers are asked to order their
    pending work before that stream; work on a stream a ``__cuda_array_interface__`` producer
    names is waited for here."""
    mod = module()
    if hasattr(value, "detach"):
        value = value.detach()  # torch refuses to export tensors that require grad
    framework = _framework(value)
    if hasattr(value, "__dlpack__") and hasattr(value, "__dlpack_device__"):
        try:
            capsule = value.__dlpack__(stream=_LEGACY_DEFAULT_STREAM)
        except (TypeError, BufferError, RuntimeError, ValueError) as error:
            raise TypeError(f"{name}: cannot read {type(value).__name__} through DLPack ({error})") from None
        tensor = mod.DeviceTensor.from_dlpack(capsule)
        return DeviceOperand(tensor, _dtype_of_itemsize(tensor.itemsize), framework)
    interface = value.__cuda_array_interface__
    if interface.get("mask") is not None:
        raise TypeError(f"{name}: masked arrays are not supported")
    dtype = np.dtype(interface["typestr"])
    shape = tuple(int(s) for s in interface["shape"])
    strides = interface.get("strides")
    if strides is None:
        elements = []
        step = 1
        for extent in reversed(shape):
            elements.append(step)
            step *= extent
        elements.reverse()
    else:
        if any(s % dtype.itemsize for s in strides):
            raise ValueError(f"{name}: strides must be multiples of the item size")
        elements = [int(s) // dtype.itemsize for s in strides]
    itemsize = dtype.itemsize if dtype.kind == "f" and dtype.itemsize in (4, 8) else 0
    pointer = int(interface["data"][0])
    producer = interface.get("stream", _LEGACY_DEFAULT_STREAM)  # absent (version < 3): the legacy default
    if producer is not None and int(producer) != _LEGACY_DEFAULT_STREAM:
        mod.synchronize_stream(int(producer))
    return DeviceOperand(mod.DeviceTensor(pointer, shape, elements, itemsize, value), dtype, framework)


def _dtype_of_itemsize(itemsize: int) -> Any:
    return {4: np.dtype(np.float32), 8: np.dtype(np.float64)}.get(itemsize, "a non-float32/float64 type")


def wrap_output(array: Any, framework: str) -> Any:
    """A result DeviceArray in the caller's framework (no copy): torch in, torch out; CuPy in,
    CuPy out; otherwise fastlstm's DeviceArray."""
    if framework == "torch":
        import torch

        return torch.from_dlpack(array)
    if framework == "cupy":
        import cupy

        return cupy.from_dlpack(array)
    return array
