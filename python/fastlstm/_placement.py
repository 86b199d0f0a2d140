"""Where a model's engine runs and how it holds its weights: moving it between the CPU and GPUs
(to, cuda, cpu) and changing its weight format (quantize) build a new engine from a snapshot of
the weights; the model's configuration and weights stay the same."""

from __future__ import annotations

import os
from typing import Any, Optional, TypeVar

import numpy as np

from . import _cuda_runtime
from ._arguments import check_bool
from ._native import core as _core

_ENGINES = {np.dtype(np.float32): _core.LstmFloat32, np.dtype(np.float64): _core.LstmFloat64}

_Model = TypeVar("_Model", bound="EnginePlacement")


class EnginePlacement:
    """LSTM's device and weight-format methods (a part of the class, in a file of its own)."""

    _dtype: np.dtype
    _engine: Any
    _allow_tf32: bool

    @property
    def device(self) -> str:
        """Where forward runs: ``"cpu"`` or ``"cuda:N"``."""
        return self._engine.device

    @property
    def allow_tf32(self) -> bool:
        """Whether the GPU's GEMMs may use TF32 tensor cores."""
        return self._allow_tf32

    def to(self: _Model, device: Any = None, *, allow_tf32: Optional[bool] = None) -> _Model:
        """Moves the model to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``) in place and returns
        it, as torch's ``Module.to`` does. The weights stay the same; on failure (no GPU) the model
        is unchanged and RuntimeError says why. Streams made before keep running where they were."""
        # Checked and applied only once the move has worked: a failed move changes nothing.
        tf32 = self._allow_tf32 if allow_tf32 is None else check_bool(allow_tf32, "allow_tf32")
        current = _cuda_runtime.parse_device(self._engine.device)
        index = current if device is None else _cuda_runtime.parse_device(device)
        if index != current or (index is not None and self._engine.allow_tf32 != tf32):
            self.__dict__["_engine"] = self._engine_on(index, tf32)
        self.__dict__["_allow_tf32"] = tf32
        return self

    def cuda(self: _Model, device: Optional[int] = None) -> _Model:
        """``to("cuda:device")`` (device 0 by default)."""
        return self.to(f"cuda:{device or 0}")

    def cpu(self: _Model) -> _Model:
        return self.to("cpu")

    def _engine_on(self, index: Optional[int], allow_tf32: bool, weight_format: Optional[str] = None,
                   scales: Optional[dict] = None, input_bits: Optional[int] = None) -> Any:
        """A new engine holding this model's weights: on the CPU (index None) or on cuda:index, its
        weights in `weight_format` (default: this model's); int8 matrices keep their row scales
        (`scales`, default this model's: none unless it is int8) and quantize the model's input to
        `input_bits` (default: this model's)."""
        threads = self._engine.num_threads
        fmt = _engine_format(self.weight_format if weight_format is None else weight_format)
        bits = self._engine.int8_input_bits if input_bits is None else input_bits
        if index is None:
            engine = _ENGINES[self._dtype](self._engine.config, threads, fmt, bits)
        else:
            mod = _cuda_runtime.module()  # RuntimeError with the reason when CUDA is unavailable
            if index >= _cuda_runtime.device_count():
                raise ValueError(f"device: cuda:{index} does not exist ({_cuda_runtime.device_count()} CUDA device(s))")
            engine_class = mod.LstmFloat32 if self._dtype == np.float32 else mod.LstmFloat64
            graphs = os.environ.get("FASTLSTM_CUDA_GRAPHS", "1") != "0"
            engine = engine_class(self._engine.config, index, threads, allow_tf32, graphs, fmt)
        engine.set_weights(self._engine.copy_weights(), self._engine.copy_scales() if scales is None else scales)
        return engine

    @property
    def weight_format(self) -> str:
        """How the weight matrices are held: ``"float32"`` (``"float64"``) or, after
        ``quantize``, ``"float16"``, ``"bfloat16"`` or ``"int8"``."""
        return self._engine.weight_format

    @property
    def int8_input_bits(self) -> int:
        """The bits to which an int8 model quantizes its input (what layer 0's weight_ih
        multiplies): 16 (the default) or 8 (``quantize("int8", input_bits=8)``)."""
        return self._engine.int8_input_bits

    def quantize(self: _Model, weight_format: str, *, input_bits: Optional[int] = None) -> _Model:
        """A new model whose weight matrices (weight_ih, weight_hh, weight_hr) are held in
        ``weight_format``, or ``"float32"`` to hold them in full again; biases stay float32:

        - ``"float16"``, ``"bfloat16"``: each weight rounded to nearest (ties to even); the model
          computes in float32 with the rounded weights (outputs within ~3e-4 of float32's for
          float16, ~3e-3 for bfloat16) and on CPUs with AVX-512 reads them at half the bytes,
          which is what bounds steps of small batches.
        - ``"int8"``: each row of a matrix as integers in [-127, 127] times a scale (its largest
          magnitude / 127); the activations each matrix multiplies (x_t, h_{t-1}) are quantized the
          same way, a row at a time, when used; products accumulate in int32, the cell state and
          the gates stay float32. A quarter of the weight bytes; CPU only. ``input_bits``: the
          bits of the model's input (what layer 0's weight_ih multiplies), 16 (the default: 8
          leave features with outliers coarse, which was most of an int8 model's error) or 8
          (that product twice as fast, the error about 1.5-2x larger).

        This model is left as it is; float32 models only."""
        if weight_format not in ("float32", "float16", "bfloat16", "int8"):
            raise ValueError(
                f"weight_format: expected 'float16', 'bfloat16', 'int8' or 'float32', got {weight_format!r}")
        if self._dtype != np.float32:
            raise ValueError(f"quantize: {weight_format} weights need a float32 model; this one is {self._dtype} "
                             "(LSTM.from_state_dict(model.state_dict(), dtype='float32') makes one)")
        if input_bits is not None:
            if weight_format != "int8":
                raise ValueError(f"input_bits: only int8 quantizes the input; weight_format is {weight_format!r}")
            if isinstance(input_bits, bool) or input_bits not in (8, 16):
                raise ValueError(f"input_bits: expected 8 or 16, got {input_bits!r}")
        return self._quantized(weight_format, input_bits=16 if input_bits is None else input_bits)

    def _quantized(self: _Model, weight_format: str, scales: Optional[dict] = None,
                   input_bits: Optional[int] = None) -> _Model:
        """quantize, int8 matrices taking the row scales in `scales` (default: this model's) and the
        input bits `input_bits` (default: this model's)."""
        model = object.__new__(type(self))
        model.__dict__.update(self.__dict__)
        index = _cuda_runtime.parse_device(self.device)
        model.__dict__["_engine"] = self._engine_on(index, self._allow_tf32, weight_format, scales, input_bits)
        return model


def _engine_format(weight_format: str) -> str:
    """The engine's name of a weight format: the model's own dtype is "native"."""
    return "native" if weight_format in ("float32", "float64") else weight_format
