"""Models from files and state_dicts: what LSTM.load and LSTM.from_state_dict read.

The compiled core reads the file (safetensors) and infers the configuration from tensor names and
shapes; this module only moves arrays between it and the caller.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from ._native import core as _core
from ._arrays import as_array


def _check_prefix(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix: expected a str, got {type(prefix).__name__}")
    return prefix


def open_model_file(path: Any, prefix: Any) -> Any:
    """The model file at `path`, opened once (a ``ModelFileReader``: ``config``, ``dtype``, and the
    tensors read from the same open file), its LSTM under `prefix`."""
    return _core.ModelFileReader(os.fspath(path), _check_prefix(prefix))


def lstm_in_state_dict(state_dict: Mapping[str, Any], prefix: Any) -> Tuple[dict, Dict[str, np.ndarray], np.dtype]:
    """(configuration, {parameter name: array}, dtype) of the LSTM under `prefix` in a state_dict:
    float64 when every tensor is, else float32."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of names to arrays, got {type(state_dict).__name__}")
    prefix = _check_prefix(prefix)
    # Only the keys directly under the prefix need shapes; the others' names help the error that
    # says where the LSTM parameters are when the prefix is wrong.
    shapes = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            continue
        under_prefix = key.startswith(prefix) and "." not in key[len(prefix):]
        shapes[key] = tuple(as_array(value, key).shape) if under_prefix else ()
    config, keys = _core.infer_lstm(shapes, prefix)
    arrays = {name: as_array(state_dict[key], key) for name, key in keys}
    all_f64 = all(array.dtype == np.float64 for array in arrays.values())
    return config, arrays, np.dtype(np.float64 if all_f64 else np.float32)
