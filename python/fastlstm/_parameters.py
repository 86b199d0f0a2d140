"""The model's parameters, as torch names and shapes them: reading, drawing and loading them. The
engine holds them; every read is a snapshot, every write is checked whole before any is made."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Iterator, Mapping, NamedTuple, Tuple

import numpy as np

from ._arrays import as_array, as_float_array

ArrayLike = Any


class IncompatibleKeys(NamedTuple):
    """What load_state_dict(strict=False) did not use or did not find, as torch reports it."""

    missing_keys: list
    unexpected_keys: list


class ParameterAccess:
    """LSTM's parameter methods (a part of the class, in a file of its own)."""

    hidden_size: int
    _dtype: np.dtype
    _engine: Any
    _parameter_shapes: "OrderedDict[str, Tuple[int, ...]]"

    def reset_parameters(self) -> None:
        """Draws every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as torch does.

        Uses NumPy's global random state (seed it with ``numpy.random.seed``).
        """
        bound = 1.0 / math.sqrt(self.hidden_size)
        values = []
        for name, shape in self._parameter_shapes.items():
            values.append((name, np.random.uniform(-bound, bound, shape).astype(self._dtype)))
        self._engine.set_parameters(values)

    def named_parameters(self) -> Iterator[Tuple[str, np.ndarray]]:
        """(name, read-only array) for every parameter, in torch's order: one snapshot of all of
        them, taken while no other thread changes the weights."""
        for name, value in self._engine.copy_weights():
            yield name, read_only(value)

    def parameters(self) -> Iterator[np.ndarray]:
        for _, value in self.named_parameters():
            yield value

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """A copy of every parameter, keyed and ordered as torch's state_dict: one snapshot, the
        weights before or after a concurrent update, never a mix."""
        return OrderedDict(self._engine.copy_weights())

    def load_state_dict(self, state_dict: Mapping[str, ArrayLike], strict: bool = True) -> IncompatibleKeys:
        """Loads parameters from a mapping of NumPy arrays or torch tensors (cast to the model's
        dtype, as torch casts). Raises RuntimeError with torch's message for missing or unexpected
        keys (strict) and for shape mismatches; on any error no parameter is changed."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        names = self._parameter_shapes
        missing = [name for name in names if name not in state_dict]
        unexpected = [key for key in state_dict if key not in names]
        errors = []
        values = {}
        for name in names:
            if name not in state_dict:
                continue
            value = as_float_array(state_dict[name], name)
            expected = self._parameter_shapes[name]
            if value.shape != expected:
                errors.append(
                    f"size mismatch for {name}: copying a param with shape {torch_size(value.shape)} "
                    f"from checkpoint, the shape in current model is {torch_size(expected)}."
                )
            values[name] = value
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError(
                "Error(s) in loading state_dict for {}:\n\t{}".format(type(self).__name__, "\n\t".join(errors))
            )
        self._set_parameters(values, cast=True)
        return IncompatibleKeys(missing, unexpected)

    def _set_parameters(self, values: Mapping[str, ArrayLike], cast: bool) -> None:
        arrays = []
        for name, value in values.items():
            array = as_float_array(value, name) if cast else as_array(value, name)
            if array.dtype != self._dtype:
                if not cast:
                    raise TypeError(f"{name}: expected dtype {self._dtype}, got {array.dtype}")
                if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
                    raise TypeError(f"{name}: expected a floating-point array, got dtype {array.dtype}")
            expected = self._parameter_shapes[name]
            if array.shape != expected:
                raise ValueError(f"{name}: expected shape {expected}, got {array.shape}")
            # A fresh contiguous copy: the source may alias the parameter's own storage.
            arrays.append((name, np.array(array, dtype=self._dtype, order="C", copy=True)))
        self._engine.set_parameters(arrays)


def read_only(array: np.ndarray) -> np.ndarray:
    """`array` (a snapshot of a parameter) made read-only: writing to it would change nothing of
    the model, so it refuses, as a view of the weights did; assign a new array to change one."""
    array.flags.writeable = False
    return array


def torch_size(shape: Tuple[int, ...]) -> str:
    return f"torch.Size([{', '.join(str(s) for s in shape)}])"
