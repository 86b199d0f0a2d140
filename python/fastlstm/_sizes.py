"""Size arithmetic that cannot wrap, the mirror of csrc/checked_size.hpp for the sizes Python
computes: NumPy's int64 sums and products wrap silently, so a size that a caller or a file gives
goes through these before it is compared or used. An overflow is an InputError naming it."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ._errors import InputError

INT64_MAX = np.iinfo(np.int64).max
# The largest element count of any buffer (fastlstm::kMaxElements).
MAX_ELEMENTS = INT64_MAX // 16


def _overflow(name: str) -> InputError:
    return InputError(f"{name}: size overflows (more than {MAX_ELEMENTS} elements)")


def checked_sum(values: np.ndarray, name: str) -> int:
    """The sum of non-negative int64 `values`, at most MAX_ELEMENTS."""
    if values.size == 0:
        return 0
    if int(values.max()) * values.size <= MAX_ELEMENTS:  # cannot wrap: NumPy's sum is exact
        return int(values.sum())
    total = sum(int(v) for v in values.tolist())
    if total > MAX_ELEMENTS:
        raise _overflow(name)
    return total


def check_size(value: int, name: str) -> int:
    """A size a caller gives, at most MAX_ELEMENTS (larger ones cannot reach the engine, whose
    sizes are int64)."""
    if value > MAX_ELEMENTS:
        raise _overflow(name)
    return value


def checked_product(values: Iterable[int], name: str) -> int:
    """The product of non-negative sizes, at most MAX_ELEMENTS."""
    product = 1
    for value in values:
        product *= int(value)
    if product > MAX_ELEMENTS:
        raise _overflow(name)
    return product


def as_int64(array: np.ndarray, name: str) -> np.ndarray:
    """Integers as int64, refusing values that do not fit (a uint64 beyond 2**63 - 1 would
    otherwise wrap to a negative number and be reported as one)."""
    if array.size and array.dtype.kind == "u" and int(array.max()) > INT64_MAX:
        raise InputError(f"{name}: value {int(array.max())} is too large (at most {INT64_MAX})")
    return array.astype(np.int64)
