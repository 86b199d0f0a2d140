"""Steps that arrive one at a time, from many threads, run as batched steps of a StreamPool."""

from __future__ import annotations

import numbers
from typing import Any, Optional, Protocol

import numpy as np

from ._arrays import as_array, check_dtype
from ._errors import InputError
from ._native import core
from ._stream_pool import _INT64_MAX, StreamPool


class StepFuture(Protocol):
    """A submitted step's output, once the batch that runs it is done."""

    def done(self) -> bool:
        """Whether the step has run (or failed)."""

    def result(self, timeout: Optional[float] = None) -> np.ndarray:
        """The output (H_out,), waiting at most `timeout` seconds (None: as long as it takes).
        Raises the step's error (UnknownStreamError when its stream was not open, BatcherClosedError
        when the batcher closed without running it), or TimeoutError."""


class StepBatcher:
    """Coalesces single steps of a StreamPool's streams, submitted from any number of threads, into
    batched steps, run on a thread of the batcher's own: a batch goes when ``max_batch`` steps
    wait or the oldest has waited ``max_delay_us`` microseconds. Each stream's steps run in the
    order they were submitted (one per batch).

    Example:
        >>> pool = lstm.stream_pool(1000)
        >>> with fastlstm.StepBatcher(pool, max_batch=256, max_delay_us=500) as batcher:
        ...     sid = pool.open()
        ...     future = batcher.submit(sid, x_t)      # x_t (H_in,), from any thread
        ...     y_t = future.result()                  # (H_out,)
    """

    max_batch: int
    max_delay_us: float
    _batcher: Any
    _pool: StreamPool
    _dtype: np.dtype
    _shape: tuple

    def __init__(self, pool: StreamPool, max_batch: int = 256, max_delay_us: float = 1000.0) -> None:
        if not isinstance(pool, StreamPool):
            raise TypeError(f"pool: expected a fastlstm.StreamPool, got {type(pool).__name__}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise ValueError(f"max_batch: expected an int >= 1, got {max_batch!r}")
        if isinstance(max_delay_us, bool) or not isinstance(max_delay_us, numbers.Real) or not 0 <= max_delay_us <= 3.6e9:
            raise ValueError(f"max_delay_us: expected a number of microseconds in [0, 3.6e9], got {max_delay_us!r}")
        batcher_class = core.StepBatcherFloat64 if pool._dtype == np.float64 else core.StepBatcherFloat32
        self._batcher = batcher_class(pool._pool, int(max_batch), float(max_delay_us))
        self._pool = pool
        self._dtype = pool._dtype
        self._shape = (pool._input_size,)
        self.max_batch = int(max_batch)
        self.max_delay_us = float(max_delay_us)

    def submit(self, stream_id: int, x_t: Any) -> StepFuture:
        """Queues one step of stream `stream_id` on x_t (H_in,), copied before this returns; the
        future gives its output. Raises BatcherClosedError after close()."""
        if not (type(x_t) is np.ndarray and x_t.dtype is self._dtype and x_t.shape == self._shape):
            x_t = self._input(x_t)  # any strides: the core copies the row
        if type(stream_id) is not int or not 0 <= stream_id <= _INT64_MAX:
            stream_id = self._pool._id(stream_id)  # converted, or the error that says why not
        return self._batcher.submit(stream_id, x_t)

    def close(self, drain: bool = True) -> None:
        """Takes no more steps and waits for the batcher's thread: drain=True runs every queued
        step first, False fails them with BatcherClosedError. Closing again does nothing."""
        self._batcher.close(bool(drain))

    @property
    def batches(self) -> int:
        """Batched steps run so far."""
        return int(self._batcher.batches)

    @property
    def steps(self) -> int:
        """Single steps taken into those batches."""
        return int(self._batcher.steps)

    def __enter__(self) -> "StepBatcher":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StepBatcher(max_batch={self.max_batch}, max_delay_us={self.max_delay_us:g}, steps={self.steps})"

    def _input(self, x_t: Any) -> np.ndarray:
        array = as_array(x_t, "x_t")
        check_dtype(array, self._dtype, "x_t")
        if array.shape != self._shape:
            raise InputError(f"x_t: expected shape {self._shape}, got {array.shape}")
        return array
