"""Streaming: a unidirectional LSTM fed a step or a chunk at a time, carrying (h, c) across calls."""

from __future__ import annotations

from typing import Any, Optional, Protocol, Tuple

import numpy as np

from ._arrays import as_array, check_dtype, engine_compatible
from ._errors import InputError
from ._sizes import check_size

class StreamedModel(Protocol):
    """What a stream reads of its model: the public configuration (fastlstm.LSTM has it)."""

    input_size: int
    hidden_size: int
    proj_size: int
    batch_first: bool

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

    def __init__(self, lstm: StreamedModel, engine: Any, batch_size: int = 1) -> None:
        """`engine`: the model's compiled CPU engine, which the model hands over (and which stays the
        same object for the model's lifetime)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 0:
            raise ValueError(f"batch_size: expected an int >= 0, got {batch_size!r}")
        check_size(int(batch_size), "batch_size")
        self._lstm = lstm
        self._engine = engine
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

    def step(self, x_t: Any, out: Optional[np.ndarray] = None) -> np.ndarray:
        """One time step: x_t (N, H_in) -> (N, H_out); with batch_size 1 also (H_in,) -> (H_out,).
        ``out``: a writeable C-contiguous array of the model's dtype and the output's shape, not
        sharing memory with x_t, to write into and return instead of a new array."""
        if out is None and type(x_t) is np.ndarray and x_t.dtype is self._dtype and x_t.shape in self._step_shapes:
            # The engine reads x_t in place (or a copy, where it is misaligned or strided oddly)
            # and returns a new output of x_t's rank.
            return self._engine.step(x_t, self._state)
        return self._checked_step(x_t, out)

    def _checked_step(self, x_t: Any, out: Optional[np.ndarray]) -> np.ndarray:
        """step for every other input: converted and checked, errors naming what is wrong."""
        x = x_t if type(x_t) is np.ndarray else as_array(x_t, "x_t")
        if x.dtype != self._dtype:
            check_dtype(x, self._dtype, "x_t")
        single = x.ndim == 1 and self._batch == 1
        if single:
            x = x[None]
        if x.shape != self._step_in:
            raise InputError(
                f"x_t: expected shape {self._step_in}"
                + (f" or ({self._step_in[1]},)" if self._batch == 1 else "")
                + f", got {tuple(np.shape(x_t))}"
            )
        if out is None:
            output = np.empty(self._step_out, dtype=self._dtype)
        else:
            output = self._checked_out(out, single)
        try:
            self._engine.step(engine_compatible(x), self._state, output)
        except ValueError as error:
            if "share memory" in str(error):
                raise InputError("out: shares memory with x_t (the step reads one while it writes the other)") from None
            raise
        if out is not None:
            return out
        return output[0] if single else output

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

    def __call__(self, chunk: Any) -> np.ndarray:
        """Several steps: chunk (L, N, H_in) ((N, L, H_in) with batch_first) -> the outputs of every
        step; with batch_size 1 also (L, H_in) -> (L, H_out)."""
        x = self._input(chunk, "chunk")
        batch_first = self._lstm.batch_first
        single = x.ndim == 2 and self._batch == 1
        if single:
            x = x[None] if batch_first else x[:, None]
        if x.ndim != 3 or x.shape[-1] != self._lstm.input_size or x.shape[0 if batch_first else 1] != self._batch:
            layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
            raise InputError(
                f"chunk: expected {layout} with N={self._batch} and H_in={self._lstm.input_size}, "
                f"got {tuple(np.shape(chunk))}"
            )
        output = self._engine.forward_chunk(engine_compatible(x), self._state)
        return output.reshape(output.shape[1 if batch_first else 0], -1) if single else output

    @property
    def state(self) -> Tuple[np.ndarray, np.ndarray]:
        """Copies of (h, c): (num_layers, N, H_out) and (num_layers, N, hidden_size)."""
        return self._state.h.copy(), self._state.c.copy()

    @state.setter
    def state(self, value: Tuple[Any, Any]) -> None:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"state: expected a tuple (h, c), got {type(value).__name__}")
        h, c = as_array(value[0], "h"), as_array(value[1], "c")
        for name, array, target in (("h", h, self._state.h), ("c", c, self._state.c)):
            if array.shape != target.shape:
                raise InputError(f"state: expected {name} of shape {target.shape}, got {array.shape}")
            check_dtype(array, self._dtype, name)
        self._state.h[...] = h
        self._state.c[...] = c

    def reset(self) -> None:
        """Zeros the state, as at the start of a stream."""
        self._state.h[...] = 0
        self._state.c[...] = 0

    def _input(self, value: Any, name: str) -> np.ndarray:
        x = as_array(value, name)
        check_dtype(x, self._dtype, name)
        return x

    def __repr__(self) -> str:
        return f"LSTMStream({self._lstm!r}, batch_size={self._batch})"
