"""Streaming: a unidirectional LSTM fed a step or a chunk at a time, carrying (h, c) across calls."""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Tuple, overload

import numpy as np

from . import _operands
from ._arrays import as_array, check_dtype
from ._errors import InputError
from ._sizes import check_size

class StreamedModel(Protocol):
    """What a stream reads of its model: the public configuration (fastlstm.LSTM has it)."""

    input_size: int
    hidden_size: int
    num_layers: int
    proj_size: int
    batch_first: bool
    bidirectional: bool

    @property
    def dtype(self) -> np.dtype: ...


class LSTMStream:
    """The state of `batch_size` parallel streams through one model (make it with ``lstm.stream()``).

    Feeding a sequence in pieces gives the same outputs as one forward over the whole sequence.
    Many streams may share one model and run from different threads; one stream's calls must not
    overlap (it holds one state).

    Example:
        >>> stream = lstm.stream(batch_size=1)
        >>> y_t = stream.step(x_t)          # x_t (H_in,) or (1, H_in) -> y_t (H_out,) or (1, H_out)
        >>> y = stream(chunk)               # chunk (L, H_in) or (L, 1, H_in) -> (L, H_out) or (L, 1, H_out)
        >>> h, c = stream.state             # (num_layers, 1, H_out), (num_layers, 1, hidden_size)
        >>> stream.reset()
    """

    def __init__(self, lstm: StreamedModel, engine: Any, batch_size: int = 1,
                 read: Callable[[Any, str], Any] = as_array) -> None:
        """`engine`: the model's compiled engine, which the model hands over (the stream keeps it,
        and its device, even if the model moves); `read(value, name)`: how the model reads an
        operand (NumPy arrays, and on a GPU also GPU arrays)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
            raise ValueError(f"batch_size: expected an int >= 0, got {batch_size!r}")
        check_size(int(batch_size), "batch_size")
        self._lstm = lstm
        self._engine = engine
        self._read = read
        self._state = self._engine.make_state(int(batch_size))  # raises for bidirectional models
        self._batch = int(batch_size)
        self._h_out = lstm.proj_size or lstm.hidden_size
        # What step checks, looked up once: a step's own work is ~12-20 us, Python's should be small.
        self._dtype = lstm.dtype
        self._step_in = (self._batch, lstm.input_size)
        self._step_out = (self._batch, self._h_out)
        # Inputs the engine takes as they are: an ndarray of the model's own dtype object (NumPy
        # shares one per native dtype; anything else, a non-native byte order included, takes
        # the checked path) and one of these shapes.
        self._step_shapes = (self._step_in, (lstm.input_size,)) if self._batch == 1 else (self._step_in,)

    @property
    def batch_size(self) -> int:
        return self._batch

    # NumPy in, NumPy out; a GPU array gives one of its framework (torch and CuPy are optional): Any.
    @overload
    def step(self, x_t: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray: ...
    @overload
    def step(self, x_t: Any, out: Optional[np.ndarray] = None) -> Any: ...

    def step(self, x_t: Any, out: Optional[np.ndarray] = None) -> Any:
        """One time step: x_t (N, H_in) -> (N, H_out); with batch_size 1 also (H_in,) -> (H_out,).
        ``out``: a writeable C-contiguous array of the model's dtype and the output's shape, not
        sharing memory with x_t, to write into and return instead of a new array. On a GPU model a
        GPU array x_t gives a GPU array of its framework."""
        if out is None and type(x_t) is np.ndarray and x_t.dtype is self._dtype and x_t.shape in self._step_shapes:
            # The engine reads x_t in place (or a copy, where it is misaligned or strided oddly)
            # and returns a new output of x_t's rank.
            return self._engine.step(x_t, self._state)
        return self._checked_step(x_t, out)

    def _checked_step(self, x_t: Any, out: Optional[np.ndarray]) -> Any:
        """step for every other input: converted and checked, errors naming what is wrong."""
        x = x_t if type(x_t) is np.ndarray else self._read(x_t, "x_t")
        if x.dtype != self._dtype:
            check_dtype(x, self._dtype, "x_t")
        single = x.ndim == 1 and self._batch == 1
        if single:
            x = _operands.insert_axis(x, 0)
        if x.shape != self._step_in:
            raise InputError(
                f"x_t: expected shape {self._step_in}"
                + (f" or ({self._step_in[1]},)" if self._batch == 1 else "")
                + f", got {tuple(np.shape(x_t))}"
            )
        if out is None:  # allocated by the engine, where x_t is
            output = self._engine.step(_operands.for_engine(x), self._state)
            output = _operands.reshape(output, (self._h_out,)) if single else output
            return _operands.as_result(output, x)
        try:
            self._engine.step(_operands.for_engine(x), self._state, self._checked_out(out, single))
        except ValueError as error:
            if "share memory" in str(error):
                raise InputError("out: shares memory with x_t (the step reads one while it writes the other)") from None
            raise
        return out

    def _checked_out(self, out: Any, single: bool) -> np.ndarray:
        """`out` as the engine writes it, (N, H_out); raises naming what is wrong with it."""
        if type(out) is np.ndarray:
            output = out[None] if single else out
            flags = out.flags
            if output.shape == self._step_out and out.dtype == self._dtype and flags.c_contiguous and flags.writeable:
                return output
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
        expected = self._step_out[1:] if single else self._step_out
        if out.shape != expected:
            raise InputError(f"out: expected shape {expected}, got {out.shape}")
        if out.dtype != self._dtype:
            raise TypeError(f"out: expected dtype {self._dtype} (the model's), got {out.dtype}")
        raise ValueError("out: must be a writeable, C-contiguous array")

    @overload
    def __call__(self, chunk: np.ndarray) -> np.ndarray: ...
    @overload
    def __call__(self, chunk: Any) -> Any: ...

    def __call__(self, chunk: Any) -> Any:
        """Several steps: chunk (L, N, H_in) ((N, L, H_in) with batch_first) -> the outputs of every
        step; with batch_size 1 also (L, H_in) -> (L, H_out)."""
        x = self._input(chunk, "chunk")
        batch_first = self._lstm.batch_first
        single = x.ndim == 2 and self._batch == 1
        if single:
            x = _operands.insert_axis(x, 0 if batch_first else 1)
        if x.ndim != 3 or x.shape[-1] != self._lstm.input_size or x.shape[0 if batch_first else 1] != self._batch:
            layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
            raise InputError(
                f"chunk: expected {layout} with N={self._batch} and H_in={self._lstm.input_size}, "
                f"got {tuple(np.shape(chunk))}"
            )
        output = self._engine.forward_chunk(_operands.for_engine(x), self._state)
        if single:
            output = _operands.reshape(output, (output.shape[1 if batch_first else 0], self._h_out))
        return _operands.as_result(output, x)

    @property
    def state(self) -> Tuple[np.ndarray, np.ndarray]:
        """Copies of (h, c) in host memory: (num_layers, N, H_out) and (num_layers, N, hidden_size)."""
        return tuple(self._engine.read_state(self._state))

    @state.setter
    def state(self, value: Tuple[Any, Any]) -> None:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"state: expected a tuple (h, c), got {type(value).__name__}")
        h, c = self._read(value[0], "h"), self._read(value[1], "c")
        layers = self._lstm.num_layers
        shapes = {"h": (layers, self._batch, self._h_out), "c": (layers, self._batch, self._lstm.hidden_size)}
        for name, array in (("h", h), ("c", c)):
            if array.shape != shapes[name]:
                raise InputError(f"state: expected {name} of shape {shapes[name]}, got {array.shape}")
            check_dtype(array, self._dtype, name)
        self._engine.set_state(self._state, _operands.for_engine(h), _operands.for_engine(c))

    def reset(self) -> None:
        """Zeros the state, as at the start of a stream."""
        self._engine.reset_state(self._state)

    def _input(self, value: Any, name: str) -> Any:
        x = self._read(value, name)
        check_dtype(x, self._dtype, name)
        return x

    def __repr__(self) -> str:
        return f"LSTMStream({self._lstm!r}, batch_size={self._batch})"
