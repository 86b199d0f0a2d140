"""Type checks of the arguments a model is built with, shared by the parts of fastlstm.LSTM:
torch's messages, and sizes checked as the engine counts them."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._sizes import check_size


def check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    return check_size(int(value), name)


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return bool(value)
