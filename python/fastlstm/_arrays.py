"""Turning what callers pass into arrays the engine reads in place."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

_DTYPES: Dict[str, np.dtype] = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def resolve_dtype(dtype: Any) -> np.dtype:
    """float32 or float64, given as a NumPy type, a string or a torch dtype; None means float32,
    torch's default."""
    if dtype is None:
        return _DTYPES["float32"]
    name = str(dtype).replace("torch.", "")
    aliases = {"float": "float32", "double": "float64", "f4": "float32", "f8": "float64"}
    name = aliases.get(name, name)
    if name not in _DTYPES:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = ""
    if name not in _DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}")
    return _DTYPES[name]


def as_array(value: Any, name: str) -> np.ndarray:
    """A NumPy array over `value`'s memory: ndarrays as they are, torch CPU tensors and other
    DLPack or array-interface objects without a copy. Anything else is a TypeError naming `name`."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__"):
        if hasattr(value, "detach"):  # torch tensors that require grad refuse to export
            value = value.detach()
        try:
            return np.from_dlpack(value)
        except (TypeError, RuntimeError, BufferError, ValueError) as error:
            raise TypeError(f"{name}: cannot read {type(value).__name__} as a CPU array ({error})") from None
    if hasattr(value, "__array_interface__") or hasattr(value, "__array_struct__"):
        return np.asarray(value)
    raise TypeError(f"{name}: expected a numpy.ndarray, got {type(value).__name__}")


def engine_compatible(array: np.ndarray) -> np.ndarray:
    """`array` itself when the engine can read it in place (aligned, non-negative strides), else a
    contiguous copy. Batch-first, sliced or transposed layouts are read in place."""
    flags = array.flags
    if flags.aligned and (flags.c_contiguous or all(s >= 0 for s in array.strides)):
        return array  # NumPy's `aligned` also means every stride is a whole number of elements
    return np.ascontiguousarray(array)


def as_float_array(value: Any, name: str) -> np.ndarray:
    """as_array, and for a torch tensor of a float type NumPy lacks (bfloat16, the float8 types)
    its values as float32, exactly (each of those types is a subset of float32)."""
    try:
        return as_array(value, name)
    except TypeError:
        kind = str(getattr(value, "dtype", ""))
        if not (kind.startswith("torch.") and ("bfloat16" in kind or "float8" in kind) and hasattr(value, "float")):
            raise
    return as_array(value.detach().float(), name)


def check_dtype(array: Any, dtype: np.dtype, name: str) -> None:
    """TypeError naming `name` unless `array` has the model's dtype: fastlstm never casts silently."""
    if array.dtype != dtype:
        raise TypeError(
            f"{name}: expected dtype {dtype} (the model's dtype; fastlstm does not cast silently), got {array.dtype}"
        )
