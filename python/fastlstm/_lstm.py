"""The torch.nn.LSTM-compatible class over the compiled engine."""

from __future__ import annotations

import numbers
import os
import warnings
from collections import OrderedDict
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np

from . import _cuda_runtime, _model_file, _onnx, _torch_quantized
from ._native import core as _core
from ._arrays import resolve_dtype
from ._forward import ArrayLike, Forward
from ._arguments import check_bool, check_int
from ._parameters import IncompatibleKeys, ParameterAccess, read_only
from ._placement import _ENGINES, EnginePlacement

__all__ = ["LSTM", "IncompatibleKeys"]



# What _configure sets: the configuration (the engine's) and the model's own state.
_FIXED_ATTRIBUTES = frozenset((
    "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size",
    "reverse", "peephole", "_dtype", "_engine", "_parameter_shapes", "_allow_tf32",
))


_MAX_THREADS: int = _core.MAX_THREADS  # the engine's limit (fastlstm::kMaxThreads)


def _engine_threads(num_threads: Optional[int]) -> int:
    """num_threads as the engine takes it: 0 for every core (None)."""
    if num_threads is None:
        return 0
    if not 1 <= check_int(num_threads, "num_threads") <= _MAX_THREADS:
        raise ValueError(
            f"num_threads must be in [1, {_MAX_THREADS}] (or None for every core), got {num_threads}"
        )
    return int(num_threads)


class LSTM(ParameterAccess, Forward, EnginePlacement):
    r"""A drop-in replacement for ``torch.nn.LSTM`` in inference (eval mode).

    The constructor takes torch's arguments; calling the model takes ``input`` and an optional
    ``hx = (h_0, c_0)`` and returns ``output, (h_n, c_n)`` with torch's shapes, as NumPy arrays.
    Parameters are attributes under torch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
    read-only snapshots of the engine's weights; assign a new array to replace one.

    Args:
        input_size: H_in, the number of features of the input.
        hidden_size: H_cell, the number of features of the cell state (and of h without proj_size).
        num_layers: stacked LSTM layers.
        bias: whether the layers have b_ih and b_hh.
        batch_first: input and output are (N, L, features) instead of (L, N, features).
        dropout: stored for compatibility; inference applies no dropout (torch's eval mode).
        bidirectional: adds a reverse direction to every layer.
        proj_size: if > 0, h is projected to this size by ``weight_hr_l{k}``.
        device: ``"cpu"`` (default), ``"cuda"`` or ``"cuda:N"`` (needs the CUDA build and a GPU:
            see ``fastlstm.cuda_available()``). On a GPU, NumPy inputs give NumPy outputs; GPU
            arrays (torch, CuPy, or anything speaking DLPack or ``__cuda_array_interface__``) are
            read in place and the outputs stay on the GPU, in the input's framework.
        dtype: ``numpy.float32`` (default) or ``numpy.float64``; inputs must have this dtype.
        num_threads: threads used by a forward pass on the CPU; None uses every available core.
        allow_tf32: on a GPU, let cuBLAS use TF32 tensor cores (faster, ~1e-3 accurate); float32
            math by default.
        reverse: beyond torch (ONNX's direction "reverse"): the one direction runs from the last
            step to the first; not with bidirectional. CPU only; no streaming.
        peephole: beyond torch (ONNX's P): each layer and direction has ``peephole_l{k}``
            (3 * hidden_size: p_i, p_f, p_o), adding p_i * c_{t-1} to the input gate and p_f *
            c_{t-1} to the forget gate, p_o * c_t to the output gate, before their sigmoids. CPU only.

    Example:
        >>> import numpy as np, fastlstm
        >>> lstm = fastlstm.LSTM(10, 20, num_layers=2)
        >>> x = np.random.randn(5, 3, 10).astype(np.float32)   # (L, N, H_in)
        >>> output, (h_n, c_n) = lstm(x)
        >>> output.shape, h_n.shape, c_n.shape
        ((5, 3, 20), (2, 3, 20), (2, 3, 20))
    """

    # Set once, through __dict__, by __init__ (__setattr__ refuses later changes).
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    bidirectional: bool
    proj_size: int
    reverse: bool
    peephole: bool
    _dtype: np.dtype
    _engine: Any  # the compiled LstmFloat32 / LstmFloat64: the CPU core's, or on a GPU the CUDA module's
    _parameter_shapes: "OrderedDict[str, Tuple[int, ...]]"
    _allow_tf32: bool  # asked for: applies on a GPU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        device: Optional[str] = None,
        dtype: Any = np.float32,
        num_threads: Optional[int] = None,
        allow_tf32: bool = False,
        reverse: bool = False,
        peephole: bool = False,
    ) -> None:
        config = dict(
            input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias,
            batch_first=batch_first, dropout=dropout, bidirectional=bidirectional, proj_size=proj_size,
            reverse=reverse, peephole=peephole,
        )
        cuda_index = self._configure(config, device=device, dtype=dtype, num_threads=num_threads, allow_tf32=allow_tf32)
        self.reset_parameters()
        if cuda_index is not None:
            self.__dict__["_engine"] = self._engine_on(cuda_index, self._allow_tf32)

    def _configure(
        self,
        config: Mapping[str, Any],
        *,
        device: Optional[str] = None,
        dtype: Any = np.float32,
        num_threads: Optional[int] = None,
        allow_tf32: bool = False,
        engine: Any = None,
    ) -> Optional[int]:
        """Checks `config` (``__init__``'s first eight arguments by name, and reverse and peephole
        where given) and the rest, and sets
        up the model on a new engine holding zeros, or on `engine` (built with this configuration);
        returns the CUDA device index asked for, if any. ``__init__`` then draws the weights; the
        constructors from weights set theirs instead."""
        input_size: int = config["input_size"]
        hidden_size: int = config["hidden_size"]
        num_layers: int = config["num_layers"]
        bias: bool = config["bias"]
        batch_first: bool = config["batch_first"]
        dropout: float = config["dropout"]
        bidirectional: bool = config["bidirectional"]
        proj_size: int = config["proj_size"]
        if (
            not isinstance(dropout, numbers.Number)
            or isinstance(dropout, bool)
            or not 0 <= dropout <= 1
        ):
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an "
                "element being zeroed"
            )
        bias = check_bool(bias, "bias")
        batch_first = check_bool(batch_first, "batch_first")
        bidirectional = check_bool(bidirectional, "bidirectional")
        reverse = check_bool(config.get("reverse", False), "reverse")
        peephole = check_bool(config.get("peephole", False), "peephole")
        # Types are checked here (the engine takes only ints and bools); values by the engine,
        # whose messages are torch's.
        input_size = check_int(input_size, "input_size")
        hidden_size = check_int(hidden_size, "hidden_size")
        num_layers = check_int(num_layers, "num_layers")
        proj_size = check_int(proj_size, "proj_size")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                f"expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=3,
            )
        cuda_index = _cuda_runtime.parse_device(device)
        allow_tf32 = check_bool(allow_tf32, "allow_tf32")
        threads = _engine_threads(num_threads)

        dt = resolve_dtype(dtype)
        if engine is None:
            engine = _ENGINES[dt](
                dict(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, bias=bias,
                     batch_first=batch_first, bidirectional=bidirectional, proj_size=proj_size,
                     dropout=float(dropout), reverse=reverse, peephole=peephole),
                threads,
            )
        # The attributes are the engine's configuration, whatever built it: one source of truth.
        d = self.__dict__  # plain attributes, set around __setattr__'s parameter handling
        d.update(engine.config)
        d["_dtype"] = dt
        d["_engine"] = engine
        d["_parameter_shapes"] = OrderedDict((name, tuple(shape)) for name, shape in engine.parameter_shapes())
        d["_allow_tf32"] = allow_tf32
        return cuda_index

    # ----------------------------------------------------------------------------- properties
    @property
    def num_threads(self) -> int:
        """Threads a forward pass uses."""
        return self._engine.num_threads

    @property
    def training(self) -> bool:
        """Always False: fastlstm runs torch's eval-mode forward."""
        return False

    def eval(self) -> "LSTM":
        """No-op for torch compatibility: the model is always in eval mode."""
        return self

    # ----------------------------------------------------------------------------- attributes
    def __getattr__(self, name: str) -> np.ndarray:
        # Only called when normal lookup fails: parameters live in the engine.
        if name in self.__dict__.get("_parameter_shapes", ()):
            return read_only(self._engine.parameter(name))
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_parameter_shapes", ()):
            self._set_parameters({name: value}, cast=False)
        else:
            self._refuse_change(name)
            object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self.__dict__.get("_parameter_shapes", ()):
            raise AttributeError(f"{name} is a parameter of the model; it cannot be deleted")
        self._refuse_change(name)
        object.__delattr__(self, name)

    def _refuse_change(self, name: str) -> None:
        """The configuration, the engine and the properties are fixed at construction; attributes
        a user adds are the user's."""
        if name in _FIXED_ATTRIBUTES or isinstance(getattr(type(self), name, None), property):
            raise AttributeError(f"{name} is fixed at construction; build a new LSTM to change it")

    def __dir__(self):
        return list(super().__dir__()) + list(self._parameter_shapes)

    @classmethod
    def _for_weights(
        cls, config: Mapping[str, Any], dtype: Any, num_threads: Optional[int],
        model_file: Any = None,
    ) -> "LSTM":
        """A model of `config` whose weights the caller sets next, or, given `model_file` (an open
        ``ModelFileReader`` whose header gave `config`), the one that file holds, read by the engine. The constructors from weights skip
        ``__init__``'s random draw, which for a large model takes longer than loading its weights."""
        model = cls.__new__(cls)
        engine = None
        if model_file is not None:
            engine = _ENGINES[resolve_dtype(dtype)].from_model_file(model_file, _engine_threads(num_threads))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # about dropout with one layer: the weights' source warned
            model._configure(config, dtype=dtype, num_threads=num_threads, engine=engine)
        return model

    @classmethod
    def from_torch(
        cls, module: Any, *, dtype: Any = None, num_threads: Optional[int] = None, device: Any = None
    ) -> "LSTM":
        """A fastlstm.LSTM with the configuration and weights of a ``torch.nn.LSTM``.

        dtype defaults to the module's (float32 or float64; other float types become float32);
        device to the module's (a module on a GPU gives a model on the same GPU).

        torch's dynamically quantized LSTM (``torch.ao.quantization.quantize_dynamic``) gives a
        model of the same weight format: qint8 an ``"int8"`` model holding torch's integers and
        scales (symmetric: zero point 0), float16 a ``"float16"`` one; both float32, on the CPU.
        """
        if _torch_quantized.is_quantized_lstm(module):
            return cls._from_quantized_torch(module, num_threads)
        if getattr(module, "mode", None) != "LSTM" or not hasattr(module, "weight_ih_l0"):
            raise TypeError(f"module: expected a torch.nn.LSTM, got {type(module).__name__}")
        if dtype is None:
            dtype = np.float64 if str(module.weight_ih_l0.dtype) == "torch.float64" else np.float32
        model = cls._for_weights(
            dict(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
                 bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                 bidirectional=module.bidirectional, proj_size=module.proj_size),
            dtype, num_threads,
        )
        # Cast by torch to the model's dtype: NumPy cannot read a bfloat16 tensor.
        cast = (lambda v: v.double()) if model.dtype == np.float64 else (lambda v: v.float())  # noqa: E731
        model.load_state_dict({k: cast(v.detach().cpu()) for k, v in module.state_dict().items()})
        if device is None and str(module.weight_ih_l0.device).startswith("cuda"):
            device = str(module.weight_ih_l0.device)
        return model.to(device) if device is not None else model

    @classmethod
    def _from_quantized_torch(cls, module: Any, num_threads: Optional[int]) -> "LSTM":
        weight_format, values, scales = _torch_quantized.quantized_weights(module)
        model = cls._for_weights(
            dict(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
                 bias=module.bias, batch_first=module.batch_first, dropout=module.dropout,
                 bidirectional=module.bidirectional, proj_size=0),
            np.float32, num_threads,
        )
        model.load_state_dict(values)
        return model._quantized(weight_format, scales)

    # ----------------------------------------------------------------------------- model file
    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the model to a safetensors file: every parameter under torch's name in the
        model's dtype, the configuration (dropout too) as strings in its metadata. The file
        loads with ``LSTM.load``, C++'s ``fastlstm::Lstm<T>::load`` or any safetensors reader.
        Written to a temporary file renamed over ``path``: a failed save leaves no partial file."""
        self._engine.save(os.fspath(path))

    @classmethod
    def load(
        cls,
        path: Union[str, "os.PathLike[str]"],
        prefix: str = "",
        num_threads: Optional[int] = None,
        *,
        dtype: Any = None,
    ) -> "LSTM":
        """The LSTM in a safetensors file: one ``save`` wrote, or any file holding torch's
        parameter names under ``prefix`` (e.g. ``"encoder.rnn."`` in a whole network's file), the
        configuration inferred as ``from_state_dict`` infers it. A configuration in the file's
        metadata must agree with the tensors. dtype defaults to the file's; F32 and F64 tensors
        are cast to it. Raises ValueError naming the file for a malformed file or one without such
        an LSTM, OSError when the file cannot be read."""
        file = _model_file.open_model_file(path, prefix)  # one open file: header, dtype and weights
        return cls._for_weights(file.config, file.dtype if dtype is None else dtype, num_threads, file)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, ArrayLike],
        prefix: str = "",
        *,
        dtype: Any = None,
        num_threads: Optional[int] = None,
    ) -> "LSTM":
        """An LSTM built from weights alone: the configuration is inferred from the keys and shapes
        of a ``torch.nn.LSTM`` state_dict (``weight_ih_l{k}``, ``_reverse``, ``bias_*``,
        ``weight_hr_l{k}``) or a ``torch.nn.LSTMCell`` one (``weight_ih``, ..., a one-layer LSTM),
        taken from the keys ``prefix + name`` of a larger network's state_dict (e.g.
        ``"encoder.rnn."``). batch_first is False. dtype defaults to float64 when every tensor is
        float64, else float32. Raises ValueError naming a missing, unexpected or misshaped key."""
        config, arrays, weights_dtype = _model_file.lstm_in_state_dict(state_dict, prefix)
        model = cls._for_weights(config, weights_dtype if dtype is None else resolve_dtype(dtype), num_threads)
        model._set_parameters(arrays, cast=True)
        return model

    @classmethod
    def from_onnx(
        cls,
        model_or_path: Any,
        node: Optional[str] = None,
        *,
        dtype: Any = None,
        num_threads: Optional[int] = None,
    ) -> "LSTM":
        """The LSTM an ONNX graph computes with its LSTM nodes (read with the ``onnx`` package):
        the node called ``node``, or with None the graph's only chain of them (a stacked torch
        LSTM exports one node per layer, each layer's Y reshaped into the next one's X), as one
        stacked model. ``model_or_path``: a path, the file's bytes or an ``onnx.ModelProto``.
        Weights must be fixed in the graph (initializers or Constants); initial states and
        sequence_lens are inputs of a call (``onnx_lstm`` takes them as the operator does).
        layout 1 gives batch_first=True, and so does a Transpose (1, 0, 2) of a graph input into
        the first layer (torch's export of batch_first=True); dtype defaults to the weights'
        (float64, else float32).

        direction "reverse" gives reverse=True, peephole weights P that are not all zero
        peephole=True (both CPU only).

        Raises fastlstm.OnnxImportError naming what it cannot take: no LSTM node, an unknown node,
        several chains and no name, missing or misshaped weights, layers that do not stack, or an
        attribute fastlstm does not run (activations other than the defaults, clip, input_forget)."""
        config, state_dict, weights_dtype = _onnx.model_from_onnx(model_or_path, node)
        return _onnx.build_model(config, state_dict, weights_dtype if dtype is None else dtype, num_threads)

    # ----------------------------------------------------------------------------- misc
    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.reverse:
            s += ", reverse=True"
        if self.peephole:
            s += ", peephole=True"
        return s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def __reduce__(self):
        config = dict(
            input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
            bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
            bidirectional=self.bidirectional, proj_size=self.proj_size, dtype=self._dtype.name,
        )
        if self.reverse or self.peephole:
            config.update(reverse=self.reverse, peephole=self.peephole)
        if self.device != "cpu":
            config.update(device=self.device, allow_tf32=self._allow_tf32)
        if self.weight_format != self._dtype.name:
            config.update(weight_format=self.weight_format, int8_input_bits=self.int8_input_bits)
        scales = self._engine.copy_scales()
        return (_unpickle, (config, _compact_matrices(self.state_dict(), self.weight_format, scales), scales))


# A reduced-precision model's matrices travel in its own format, and come back bit for bit: int8
# as its integers (the values are integer * row scale), float16 as float16, bfloat16 as the upper
# 16 bits of the float32 values (which have zero lower halves). Biases stay as they are.
def _compact_matrices(state_dict: Mapping[str, np.ndarray], weight_format: str, scales: Mapping[str, np.ndarray]) -> dict:
    compact: dict = {}
    for name, value in state_dict.items():
        if not name.startswith("weight_"):
            compact[name] = value
        elif weight_format == "int8":
            row_scales = scales[name][:, None]  # 0 for a row of zeros
            codes = np.divide(value, row_scales, out=np.zeros_like(value), where=row_scales != 0)
            compact[name] = np.rint(codes).astype(np.int8)
        elif weight_format == "float16":
            compact[name] = value.astype(np.float16)
        elif weight_format == "bfloat16":
            compact[name] = (np.ascontiguousarray(value, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
        else:
            compact[name] = value
    return compact


def _expanded_matrices(state_dict: Mapping[str, np.ndarray], scales: Mapping[str, np.ndarray]) -> dict:
    expanded: dict = {}
    for name, value in state_dict.items():
        if value.dtype == np.int8:
            expanded[name] = value.astype(np.float32) * scales[name][:, None]
        elif value.dtype == np.float16:
            expanded[name] = value.astype(np.float32)
        elif value.dtype == np.uint16:
            expanded[name] = (value.astype(np.uint32) << 16).view(np.float32)
        else:
            expanded[name] = value
    return expanded


def _unpickle(config: dict, state_dict: Mapping[str, np.ndarray], scales: Optional[dict] = None) -> LSTM:
    device = config.pop("device", None)
    weight_format = config.pop("weight_format", None)
    input_bits = config.pop("int8_input_bits", 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LSTM(**config)
    model.load_state_dict(_expanded_matrices(state_dict, scales or {}))
    if weight_format is not None:
        model = model._quantized(weight_format, scales or {}, input_bits)
    return model.to(device) if device is not None else model
