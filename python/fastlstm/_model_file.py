"""Models from files and state_dicts: LSTM.save, LSTM.load and LSTM.from_state_dict.

The compiled core reads and writes the file (safetensors) and infers the configuration from
tensor names and shapes; this module only moves arrays between it and the LSTM class.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, Optional, Type

import numpy as np

from ._native import core as _core
from ._arrays import as_array, resolve_dtype

if TYPE_CHECKING:
    from ._lstm import LSTM


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix: expected a str, got {type(prefix).__name__}")
    return prefix


def save(model: "LSTM", path: Any) -> None:
    model._engine.save(os.fspath(path))


def load(cls: "Type[LSTM]", path: Any, prefix: str, num_threads: Optional[int], dtype: Any) -> "LSTM":
    # One open file gives the configuration, the dtype and the weights: a file replaced meanwhile
    # cannot mix two versions.
    file = _core.ModelFileReader(os.fspath(path), _check_prefix(prefix))
    return cls._for_weights(file.config, file.dtype if dtype is None else dtype, num_threads, file)


def from_state_dict(
    cls: "Type[LSTM]", state_dict: Mapping[str, Any], prefix: str, dtype: Any, num_threads: Optional[int]
) -> "LSTM":
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    prefix = _check_prefix(prefix)
    # Only the keys directly under the prefix need shapes; the others' names help the error that
    # says where the LSTM parameters are when the prefix is wrong.
    shapes = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            continue
        mine = key.startswith(prefix) and "." not in key[len(prefix):]
        shapes[key] = tuple(as_array(value, key).shape) if mine else ()
    config, keys = _core.infer_lstm(shapes, prefix)
    arrays = {name: as_array(state_dict[key], key) for name, key in keys}
    if dtype is None:
        all_f64 = all(array.dtype == np.float64 for array in arrays.values())
        dtype = np.float64 if all_f64 else np.float32
    model = cls._for_weights(config, resolve_dtype(dtype), num_threads)
    model._set_parameters(arrays, cast=True)
    return model
