"""A model's operands on their way to its engine, and its results on their way back. Every model
reads NumPy arrays (and what converts to them without a copy); a model on a GPU also reads GPU
arrays (torch, CuPy, anything speaking DLPack or ``__cuda_array_interface__``) in place and returns
its results for them on the GPU, in the same framework. Where an operand lives decides only this."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _cuda_runtime
from ._arrays import as_array, engine_compatible


def read(value: Any, name: str, on_gpu: bool) -> Any:
    """`value` as the engine reads it: a DeviceOperand for a GPU array given to a model on a GPU,
    else a NumPy array (TypeError naming `name` for what is neither)."""
    if on_gpu and _cuda_runtime.is_device_array(value):
        return _cuda_runtime.device_operand(value, name)
    return as_array(value, name)


def for_engine(operand: Any) -> Any:
    """What the compiled engine takes for an operand `read` returned (None stays None)."""
    if operand is None:
        return None
    if type(operand) is _cuda_runtime.DeviceOperand:
        return operand.tensor
    return engine_compatible(operand)


def insert_axis(operand: Any, axis: int) -> Any:
    """`operand` with a size-1 axis at `axis`: a NumPy view, or a GPU operand's view."""
    if isinstance(operand, np.ndarray):
        return np.expand_dims(operand, axis)
    return operand.unsqueeze(axis)


def reshape(result: Any, shape: Sequence[int]) -> Any:
    """A result (a NumPy array or a fastlstm DeviceArray) under another shape, without a copy."""
    return result.reshape(tuple(shape))


def as_result(result: Any, like: Any) -> Any:
    """`result` in the framework of the input `like`: results of GPU input are GPU arrays of the
    input's framework; the rest are NumPy arrays."""
    if isinstance(like, _cuda_runtime.DeviceOperand):
        return _cuda_runtime.wrap_output(result, like.framework)
    return result
