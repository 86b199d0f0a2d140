"""Many streams through one model: a pool of stream states, any subset of them stepped as one batch."""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from ._arrays import as_array, check_dtype
from ._errors import InputError, UnknownStreamError
from ._native import core
from ._sizes import check_size
from ._stream import StreamedModel

StreamIds = Union[Sequence[int], np.ndarray]
_INT64_MAX = np.iinfo(np.int64).max


class StreamPool:
    """The states of up to ``capacity`` streams through one model (make one with
    ``lstm.stream_pool(capacity)``). Streams open and close at any time; ``step`` advances any of
    them, in any order, by one time step as one batched step, so that a thousand streams stepping
    together cost about what one batch of a thousand does.

    Thread-safe: the pool's calls and the model's forward passes are serialised on the model. A
    rejected call (an unknown or repeated id, wrong shapes or dtypes) changes no stream's state.
    The model must be unidirectional and on the CPU; its weights may change meanwhile (the streams
    go on with the new ones).

    Example:
        >>> pool = lstm.stream_pool(capacity=1000)
        >>> a, b = pool.open(), pool.open()
        >>> y = pool.step([b, a], x)        # x (2, H_in): row 0 is b's input -> y (2, H_out)
        >>> h, c = pool.get_state(a)        # (num_layers, 1, H_out), (num_layers, 1, hidden_size)
        >>> pool.close(a)
    """

    def __init__(self, lstm: StreamedModel, engine: Any, capacity: int) -> None:
        if lstm.bidirectional:
            raise ValueError(
                "stream_pool: needs a unidirectional model; the reverse direction of a bidirectional LSTM "
                "needs the whole sequence"
            )
        if not isinstance(engine, (core.LstmFloat32, core.LstmFloat64)):
            raise ValueError(f"stream_pool: needs a model on the CPU, this one is on {engine.device}")
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity: expected an int >= 1, got {capacity!r}")
        check_size(int(capacity), "capacity")
        pool_class = core.StreamPoolFloat64 if lstm.dtype == np.float64 else core.StreamPoolFloat32
        self._pool = pool_class(engine, int(capacity))
        self._dtype = lstm.dtype
        self._input_size = lstm.input_size
        self._h_out = lstm.proj_size or lstm.hidden_size
        self._state_shapes = ((lstm.num_layers, 1, self._h_out), (lstm.num_layers, 1, lstm.hidden_size))

    @property
    def capacity(self) -> int:
        """The most streams open at once."""
        return int(self._pool.capacity)

    def __len__(self) -> int:
        """The open streams."""
        return len(self._pool)

    def __contains__(self, stream_id: object) -> bool:
        """Whether `stream_id` is an open stream of this pool."""
        if isinstance(stream_id, bool) or not isinstance(stream_id, numbers.Integral):
            return False
        return 0 <= int(stream_id) <= _INT64_MAX and int(stream_id) in self._pool

    def open(self, state: Optional[Tuple[Any, Any]] = None) -> int:
        """A new stream's id; its state is zeros, or ``state`` = (h, c) as ``get_state`` gives it
        (or without the batch axis: (num_layers, H_out), (num_layers, hidden_size)). Ids are never
        reused. Raises PoolFullError when ``capacity`` streams are open."""
        if state is None:
            return int(self._pool.open())
        return int(self._pool.open(*self._state_values(state)))

    def close(self, stream_id: int) -> None:
        """Closes a stream: its id is then unknown. Raises UnknownStreamError."""
        self._pool.close(self._id(stream_id))

    def step(self, ids: StreamIds, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """One time step of the streams ``ids`` (any open streams, in any order, each once): row i
        of ``x`` (k, H_in) is the input of ``ids[i]``, row i of the result (k, H_out) its output.
        ``out``: a writeable C-contiguous array of the model's dtype and shape (k, H_out), not
        sharing memory with x, to write into and return. Raises UnknownStreamError for an id that
        is not open, InputError for a repeated id, wrong shapes or dtypes; then no stream moved."""
        ids = self._ids(ids)
        count = ids.shape[0]
        if not (type(x) is np.ndarray and x.dtype is self._dtype and x.shape == (count, self._input_size)):
            x = self._input(x, count)
        if out is None:
            out = np.empty((count, self._h_out), dtype=self._dtype)
        else:
            self._check_out(out, count)
        try:
            self._pool.step(ids, x, out)
        except ValueError as error:
            if "share memory" in str(error):
                raise InputError("out: shares memory with x (the step reads one while it writes the other)") from None
            if "more than once" in str(error):
                raise InputError(str(error)) from None
            raise
        return out

    def get_state(self, stream_id: int) -> Tuple[np.ndarray, np.ndarray]:
        """Copies of a stream's (h, c): (num_layers, 1, H_out), (num_layers, 1, hidden_size), the
        shapes of ``lstm.stream(1).state``. Raises UnknownStreamError."""
        h, c = self._pool.get_state(self._id(stream_id))
        return h, c

    def set_state(self, stream_id: int, state: Tuple[Any, Any]) -> None:
        """Sets a stream's (h, c), shaped as ``get_state`` gives them (or without the batch axis).
        Raises UnknownStreamError, or InputError for wrong shapes or dtypes."""
        self._pool.set_state(self._id(stream_id), *self._state_values(state))

    def reset(self, stream_id: int) -> None:
        """Sets a stream's state to zeros. Raises UnknownStreamError."""
        self._pool.reset_state(self._id(stream_id))

    def __repr__(self) -> str:
        return f"StreamPool(capacity={self.capacity}, open={len(self)})"

    def _id(self, stream_id: Any) -> int:
        """A stream id as the core takes it: an int of int64's range (others cannot be open)."""
        if isinstance(stream_id, bool) or not isinstance(stream_id, numbers.Integral):
            raise TypeError(f"stream id: expected an int, got {type(stream_id).__name__}")
        value = int(stream_id)
        if not 0 <= value <= _INT64_MAX:
            raise UnknownStreamError(value, f"stream {value}: not an open stream of this pool (never opened, or closed)")
        return value

    def _ids(self, ids: Any) -> np.ndarray:
        """`ids` as a C-contiguous int64 vector; integers only."""
        if type(ids) is np.ndarray and ids.dtype == np.int64 and ids.ndim == 1 and ids.flags.c_contiguous:
            return ids
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (Iterable, np.ndarray)):
            raise TypeError(f"ids: expected a sequence of stream ids, got {type(ids).__name__}")
        values = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        if values.size == 0:
            return np.empty(0, dtype=np.int64)
        if values.ndim != 1:
            raise InputError(f"ids: expected one dimension, got shape {values.shape}")
        if values.dtype == bool or values.dtype.kind not in "iu":
            raise InputError(f"ids: expected integers, got dtype {values.dtype}")
        if values.dtype.kind == "u" and values.max() > _INT64_MAX:
            bad = int(values.max())
            raise UnknownStreamError(bad, f"stream {bad}: not an open stream of this pool (never opened, or closed)")
        return np.ascontiguousarray(values, dtype=np.int64)

    def _input(self, x: Any, count: int) -> np.ndarray:
        """x checked: an array of the model's dtype, (count, H_in)."""
        array = as_array(x, "x")
        check_dtype(array, self._dtype, "x")
        if array.shape != (count, self._input_size):
            raise InputError(f"x: expected shape {(count, self._input_size)} (a row per id), got {array.shape}")
        return array

    def _check_out(self, out: Any, count: int) -> None:
        if type(out) is not np.ndarray:
            raise TypeError(f"out: expected a NumPy array, got {type(out).__name__}")
        check_dtype(out, self._dtype, "out")
        if out.shape != (count, self._h_out):
            raise InputError(f"out: expected shape {(count, self._h_out)}, got {out.shape}")
        if not (out.flags.c_contiguous and out.flags.writeable):
            raise InputError("out: must be C-contiguous and writeable")

    def _state_values(self, state: Any) -> Tuple[np.ndarray, np.ndarray]:
        """(h, c) checked and shaped (num_layers, 1, H): the model's dtype, host memory."""
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError("state: expected a pair (h, c)")
        values = []
        for value, name, shape in zip(state, ("h", "c"), self._state_shapes):
            array = as_array(value, name)
            check_dtype(array, self._dtype, name)
            if array.shape == (shape[0], shape[2]):
                array = array[:, None, :]
            if array.shape != shape:
                raise InputError(f"{name}: expected shape {shape} or {(shape[0], shape[2])}, got {array.shape}")
            values.append(array)
        return values[0], values[1]
