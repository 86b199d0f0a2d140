"""The forward pass and streams seen from Python: inputs checked with torch's messages, read for
the model's device (_operands), handed to the engine; results shaped and returned as torch does."""

from __future__ import annotations

from typing import Any, Optional, Tuple, overload

import numpy as np

from . import _operands
from ._arrays import check_dtype
from ._errors import InputError
from ._packing import PackedSequence, as_packed_sequence, is_packed_sequence
from ._native import core
from ._stream import LSTMStream
from ._stream_pool import StreamPool

ArrayLike = Any  # numpy.ndarray, anything exposing __dlpack__ / __array_interface__, or a GPU array
State = Tuple[np.ndarray, np.ndarray]
Hx = Optional[Tuple[ArrayLike, ArrayLike]]  # (h_0, c_0)
AnyResult = Tuple[Any, Tuple[Any, Any]]  # output, (h_n, c_n) in a GPU array's own framework

_CPU_ENGINES = (core.LstmFloat32, core.LstmFloat64)  # a model's engine is one of these or a CUDA one


def _in_place(array: np.ndarray) -> bool:
    """Whether the engine reads `array` as it is: C-contiguous and aligned."""
    flags = array.flags
    return flags.c_contiguous and flags.aligned


class Forward:
    """LSTM's forward pass and streams (a part of the class, in a file of its own)."""

    input_size: int
    hidden_size: int
    num_layers: int
    proj_size: int
    batch_first: bool
    bidirectional: bool
    _dtype: np.dtype
    _engine: Any

    @property
    def dtype(self) -> np.dtype:
        """The model's floating-point type; inputs must have it."""
        return self._dtype

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    # NumPy in, NumPy out. A PackedSequence gives one back and GPU arrays give arrays of their own
    # framework (torch and CuPy are optional): Any.
    @overload
    def __call__(self, input: np.ndarray, hx: Hx = None) -> Tuple[np.ndarray, State]: ...
    @overload
    def __call__(self, input: ArrayLike, hx: Hx = None) -> AnyResult: ...

    def __call__(self, input: ArrayLike, hx: Hx = None) -> AnyResult:
        return self.forward(input, hx)

    @overload
    def forward(self, input: np.ndarray, hx: Hx = None) -> Tuple[np.ndarray, State]: ...
    @overload
    def forward(self, input: ArrayLike, hx: Hx = None) -> AnyResult: ...

    def forward(self, input: ArrayLike, hx: Hx = None) -> AnyResult:
        """Runs the LSTM over ``input``; returns ``output, (h_n, c_n)`` as torch does.

        input: (L, H_in) unbatched, (L, N, H_in), or (N, L, H_in) with batch_first, in the
        model's dtype (never cast silently); or a PackedSequence (fastlstm's or torch's), for which
        the output is a fastlstm PackedSequence and h_n, c_n hold each sequence's state at its own
        last step, in the caller's order. hx: (h_0, c_0), each (D * num_layers, N, H_out) and
        (D * num_layers, N, hidden_size), without N for unbatched input; zeros when omitted.
        """
        if type(input) is np.ndarray and input.ndim == 3 and (hx is None or type(hx) is tuple):
            plain = self._forward_plain(input, hx)
            if plain is not None:
                return plain
        x = input if type(input) is np.ndarray else None  # the common case, without further lookups
        if x is None:
            if is_packed_sequence(input):
                return self._forward_packed(input, hx)
            x = self._read(input, "input")
        if x.ndim not in (2, 3):
            raise InputError(f"LSTM: Expected input to be 2D or 3D, got {x.ndim}D instead")
        self._check_input(x)
        batched = x.ndim == 3
        if not batched:
            x = _operands.insert_axis(x, 0 if self.batch_first else 1)
        steps = x.shape[1] if self.batch_first else x.shape[0]
        if steps == 0:
            raise InputError("input: the sequence length (L) must be at least 1, got 0")
        batch = x.shape[0] if self.batch_first else x.shape[1]

        h_0 = c_0 = None
        if hx is not None:
            h_0, c_0 = self._check_hx(hx, batched, batch)
        for_engine = _operands.for_engine
        output, h_n, c_n = self._engine.forward(for_engine(x), for_engine(h_0), for_engine(c_0))
        if not batched:
            output = _operands.reshape(output, (output.shape[1] if self.batch_first else output.shape[0], output.shape[2]))
            h_n = _operands.reshape(h_n, (h_n.shape[0], h_n.shape[2]))
            c_n = _operands.reshape(c_n, (c_n.shape[0], c_n.shape[2]))
        if type(x) is np.ndarray:  # NumPy in, NumPy out
            return output, (h_n, c_n)
        return _operands.as_result(output, x), (_operands.as_result(h_n, x), _operands.as_result(c_n, x))

    def _forward_plain(self, x: np.ndarray, hx: Optional[tuple]) -> Optional[Tuple[np.ndarray, State]]:
        """forward's most common call at the least cost (a step of a stream of calls takes a few
        microseconds): batched C-contiguous NumPy arrays of the model's dtype and shapes, which
        the engine reads in place. None for anything else: the general path checks it and says
        what is wrong."""
        dtype = self._dtype
        batch, steps = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        if x.dtype != dtype or x.shape[2] != self.input_size or steps == 0 or not _in_place(x):
            return None
        if hx is None:
            output, h_n, c_n = self._engine.forward(x, None, None)
            return output, (h_n, c_n)
        if len(hx) != 2:
            return None
        h_0, c_0 = hx
        if type(h_0) is not np.ndarray or type(c_0) is not np.ndarray or h_0.dtype != dtype or c_0.dtype != dtype:
            return None
        layers = self.num_layers * (2 if self.bidirectional else 1)
        if (h_0.shape != (layers, batch, self.proj_size or self.hidden_size) or c_0.shape != (layers, batch, self.hidden_size)
                or not (_in_place(h_0) and _in_place(c_0))):
            return None
        output, h_n, c_n = self._engine.forward(x, h_0, c_0)
        return output, (h_n, c_n)

    def stream(self, batch_size: int = 1) -> "LSTMStream":
        """A stream through this model: ``step(x_t)`` or ``stream(chunk)`` carry (h, c) across
        calls, on the model's device. Bidirectional models raise ValueError (the reverse direction
        needs the whole sequence)."""
        if self.bidirectional:
            raise ValueError(
                "stream: needs a unidirectional model; the reverse direction of a bidirectional LSTM "
                "needs the whole sequence"
            )
        return LSTMStream(self, self._engine, batch_size, self._read)

    def stream_pool(self, capacity: int) -> StreamPool:
        """A pool of up to `capacity` streams through this model, which open and close at any time
        and step in any subset as one batch (see StreamPool). Needs a unidirectional model on the
        CPU; raises ValueError otherwise."""
        return StreamPool(self, self._engine, capacity)

    def _forward_packed(self, input: Any, hx: Optional[Tuple[ArrayLike, ArrayLike]]):
        packed = as_packed_sequence(input, data_reader=self._read)
        data = packed.data
        if data.ndim != 2:
            raise InputError(f"input must have 2 dimensions, got {data.ndim}")
        self._check_input(data)
        h_0 = c_0 = None
        if hx is not None:  # in the caller's order, as in torch: the engine sorts them by sorted_indices
            h_0, c_0 = self._check_hx(hx, True, int(packed.batch_sizes[0]))
        sorted_indices = None if packed.sorted_indices is None else [int(i) for i in packed.sorted_indices]
        output, h_n, c_n = self._engine.forward_packed(
            _operands.for_engine(data), [int(b) for b in packed.batch_sizes],
            _operands.for_engine(h_0), _operands.for_engine(c_0), sorted_indices)
        output = _operands.as_result(output, data)
        return PackedSequence(output, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), (
            _operands.as_result(h_n, data), _operands.as_result(c_n, data))

    def _read(self, value: Any, name: str) -> Any:
        """An operand as this model's engine reads it (see _operands.read)."""
        return _operands.read(value, name, not isinstance(self._engine, _CPU_ENGINES))

    def _check_input(self, x: Any) -> None:
        """The input's dtype and width (its last extent), with torch's message for the width."""
        self._check_dtype(x, "input")
        if x.shape[-1] != self.input_size:
            raise InputError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}"
            )

    def _check_dtype(self, array: np.ndarray, name: str) -> None:
        check_dtype(array, self._dtype, name)

    def _check_hx(self, hx: Any, batched: bool, batch: int) -> Tuple[Any, Any]:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(
                f"hx: expected a tuple (h_0, c_0) of two arrays, got {type(hx).__name__}"
                + (f" of length {len(hx)}" if isinstance(hx, (tuple, list)) else "")
            )
        h_0, c_0 = self._read(hx[0], "h_0"), self._read(hx[1], "c_0")
        expected_dim = 3 if batched else 2
        if h_0.ndim != expected_dim or c_0.ndim != expected_dim:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise InputError(
                f"For {kind} input, hx and cx should also be {expected_dim}-D but got "
                f"({h_0.ndim}-D, {c_0.ndim}-D) tensors"
            )
        self._check_dtype(h_0, "h_0")
        self._check_dtype(c_0, "c_0")
        layers = self.num_directions * self.num_layers
        h_shape = (layers, batch, self.proj_size or self.hidden_size)
        c_shape = (layers, batch, self.hidden_size)
        if not batched:
            h_0, c_0 = _operands.insert_axis(h_0, 1), _operands.insert_axis(c_0, 1)
        for name, array, shape in (("h_0", h_0, h_shape), ("c_0", c_0, c_shape)):
            if array.shape != shape:
                shown = shape if batched else (shape[0], shape[2])
                got = array.shape if batched else (array.shape[0], array.shape[2])
                raise InputError(f"{name}: Expected hidden size {shown}, got {got}")
        return h_0, c_0
