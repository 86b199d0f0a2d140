"""Models from ONNX: the LSTM nodes of a graph read with the ``onnx`` package, their weights put in
torch's layout, as a ``fastlstm.LSTM`` (``LSTM.from_onnx``) or as a callable with the LSTM
operator's own inputs and outputs (``onnx_lstm``).

ONNX's LSTM holds, per direction, W (4H, I), R (4H, H) and B (8H: W's biases then R's) with the
gates in the order i, o, f, c; torch's weight_ih / weight_hh / bias_ih / bias_hh hold them as i, f,
g, o (g is ONNX's c). A stacked torch LSTM exports as one node per layer, each layer's Y reshaped
(Transpose, Reshape, Squeeze) into the next one's X: such a chain is one stacked model.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._errors import InputError, OnnxImportError
from ._packing import pack_padded_sequence, pad_packed_sequence

# Where torch's gate blocks (i, f, g, o) are among ONNX's (i, o, f, c).
_TORCH_GATES_FROM_ONNX = (0, 2, 3, 1)
# Operators that only reshape one layer's Y into the next layer's X in torch's exports.
_RESHAPING = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"}
_INPUT_NAMES = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
_DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")

PathOrModel = Union[str, "os.PathLike[str]", bytes, Any]


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as error:  # the optional extra
        raise ImportError(
            "reading ONNX files needs the onnx package: pip install 'fastlstm[onnx]'"
        ) from error
    return onnx


def load_model(model_or_path: PathOrModel) -> Any:
    """An onnx.ModelProto from a path, the bytes of a file, or a ModelProto as it is."""
    onnx = _import_onnx()
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    if isinstance(model_or_path, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model_or_path))
    if isinstance(model_or_path, (str, os.PathLike)):
        return onnx.load(os.fspath(model_or_path))
    raise TypeError(
        f"model_or_path: expected a path, the bytes of an ONNX file or an onnx.ModelProto, "
        f"got {type(model_or_path).__name__}"
    )


@dataclass
class LstmNode:
    """One LSTM node: its attributes checked, and the inputs that the graph fixes (initializers and
    Constant outputs) as arrays; an input the graph computes or takes from outside is None in
    ``constants`` and named in ``runtime_inputs``."""

    name: str
    hidden_size: int
    direction: str  # "forward", "reverse" or "bidirectional"
    layout: int
    inputs: Dict[str, str]  # operator input name -> graph value name ("" or absent: not given)
    constants: Dict[str, Optional[np.ndarray]] = field(default_factory=dict)
    runtime_inputs: List[str] = field(default_factory=list)

    @property
    def num_directions(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    def describe(self) -> str:
        return f"LSTM node {self.name!r}"


def _constant_values(graph: Any) -> Dict[str, np.ndarray]:
    """The values a graph fixes: its initializers and its Constant nodes' outputs."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Constant" or not node.output:
            continue
        for attribute in node.attribute:
            if attribute.name == "value":
                values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _node_name(node: Any, index: int) -> str:
    return node.name or f"LSTM#{index}"


def lstm_nodes(graph: Any) -> List[Any]:
    """The graph's LSTM nodes (the default ONNX domain), in graph order."""
    return [n for n in graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]


def _attributes(node: Any) -> Dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def read_node(node: Any, index: int, constants: Dict[str, np.ndarray]) -> LstmNode:
    """Checks the node's attributes against what fastlstm runs and reads its fixed inputs.
    Raises OnnxImportError naming the attribute that is not supported."""
    name = _node_name(node, index)
    attrs = _attributes(node)
    where = f"LSTM node {name!r}"
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise OnnxImportError(f"{where}: direction must be forward, reverse or bidirectional, got {direction!r}")
    num_directions = 2 if direction == "bidirectional" else 1
    activations = [a.decode() if isinstance(a, bytes) else str(a) for a in attrs.get("activations", [])]
    if activations and [a.lower() for a in activations] != list(_DEFAULT_ACTIVATIONS) * num_directions:
        raise OnnxImportError(
            f"{where}: activations {activations} are not supported; fastlstm runs the defaults "
            f"(Sigmoid, Tanh, Tanh per direction)"
        )
    if "clip" in attrs:
        raise OnnxImportError(f"{where}: the clip attribute ({attrs['clip']}) is not supported")
    if int(attrs.get("input_forget", 0)) != 0:
        raise OnnxImportError(f"{where}: input_forget=1 (coupled input and forget gates) is not supported")
    layout = int(attrs.get("layout", 0))
    if layout not in (0, 1):
        raise OnnxImportError(f"{where}: layout must be 0 or 1, got {layout}")

    inputs = {op: (node.input[i] if i < len(node.input) else "") for i, op in enumerate(_INPUT_NAMES)}
    fixed: Dict[str, Optional[np.ndarray]] = {}
    runtime: List[str] = []
    for op, value_name in inputs.items():
        if op == "X" or not value_name:
            continue
        if value_name in constants:
            fixed[op] = constants[value_name]
        else:
            fixed[op] = None
            runtime.append(op)
    hidden_size = attrs.get("hidden_size")
    if hidden_size is None:
        for op, axis in (("R", 2), ("W", 1)):
            array = fixed.get(op)
            if array is not None and array.ndim == 3:
                hidden_size = array.shape[axis] if op == "R" else array.shape[1] // 4
                break
    if hidden_size is None:
        raise OnnxImportError(f"{where}: no hidden_size attribute, and no fixed W or R to infer it from")
    return LstmNode(name, int(hidden_size), direction, layout, inputs, fixed, runtime)


# ------------------------------------------------------------------------------- weights
def _check_shape(array: np.ndarray, shape: Tuple[int, ...], what: str, where: str) -> np.ndarray:
    array = np.asarray(array)
    if array.shape != shape:
        raise OnnxImportError(f"{where}: {what} has shape {array.shape}, expected {shape}")
    return array


def _torch_gate_order(rows: np.ndarray, hidden_size: int) -> np.ndarray:
    """ONNX's gate blocks (i, o, f, c) along axis 0 in torch's order (i, f, g, o)."""
    blocks = rows.reshape(4, hidden_size, *rows.shape[1:])
    return np.ascontiguousarray(blocks[list(_TORCH_GATES_FROM_ONNX)].reshape(rows.shape))


def layer_weights(
    node: LstmNode, W: np.ndarray, R: np.ndarray, B: Optional[np.ndarray], P: Optional[np.ndarray],
    layer: int = 0, input_size: Optional[int] = None,
) -> Dict[str, np.ndarray]:
    """torch's parameters of one layer (``weight_ih_l{layer}`` ...; ``_reverse`` for a
    bidirectional node's second direction; ``peephole_l{layer}`` (p_i, p_f, p_o) where P is given
    and not all zero) from the operator's W, R, B, P; shapes checked against hidden_size and each
    other."""
    where = node.describe()
    H, D = node.hidden_size, node.num_directions
    W = np.asarray(W)
    if W.ndim != 3:
        raise OnnxImportError(f"{where}: W has shape {W.shape}, expected (num_directions, 4 * hidden_size, input_size)")
    I = W.shape[2] if input_size is None else input_size
    W = _check_shape(W, (D, 4 * H, I), "W", where)
    R = _check_shape(R, (D, 4 * H, H), "R", where)
    if B is not None:
        B = _check_shape(B, (D, 8 * H), "B", where)
    if P is not None:
        P = _check_shape(P, (D, 3 * H), "P", where)
    weights: Dict[str, np.ndarray] = {}
    for d in range(D):
        suffix = f"_l{layer}" + ("_reverse" if d == 1 else "")
        weights["weight_ih" + suffix] = _torch_gate_order(W[d], H)
        weights["weight_hh" + suffix] = _torch_gate_order(R[d], H)
        if B is not None:
            weights["bias_ih" + suffix] = _torch_gate_order(B[d, : 4 * H], H)
            weights["bias_hh" + suffix] = _torch_gate_order(B[d, 4 * H :], H)
        if has_peepholes(P):
            p_i, p_o, p_f = np.asarray(P)[d].reshape(3, H)
            weights["peephole" + suffix] = np.concatenate([p_i, p_f, p_o])
    return weights


def has_peepholes(P: Optional[np.ndarray]) -> bool:
    """Whether P makes a difference: absent or all zero, the model runs without peepholes."""
    return P is not None and bool(np.any(np.asarray(P) != 0))


def _fixed(node: LstmNode, op: str) -> Optional[np.ndarray]:
    """A weight the graph fixes; OnnxImportError when the graph takes it from outside."""
    if op in node.runtime_inputs:
        raise OnnxImportError(
            f"{node.describe()}: {op} is not fixed in the graph (an initializer or a Constant) but "
            f"computed or a graph input ({node.inputs[op]!r}); pass it to onnx_lstm's call instead"
        )
    return node.constants.get(op)


# ------------------------------------------------------------------------------- chains
def _consumers(graph: Any) -> Dict[str, List[Any]]:
    consumers: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _next_layer(lstm: Any, consumers: Dict[str, List[Any]], lstms: Sequence[Any]) -> Optional[Any]:
    """The LSTM node whose X is this one's Y through reshaping operators only, if any."""
    if not lstm.output or not lstm.output[0]:
        return None
    frontier, seen = [lstm.output[0]], set()
    while frontier:
        value = frontier.pop()
        if value in seen:
            continue
        seen.add(value)
        for consumer in consumers.get(value, []):
            if any(consumer is other for other in lstms) and consumer.input[0] == value:
                return consumer
            if consumer.op_type in _RESHAPING and consumer.input and consumer.input[0] == value:
                frontier.extend(o for o in consumer.output if o)
    return None


def lstm_chains(graph: Any) -> List[List[Any]]:
    """The graph's LSTM nodes grouped into chains (a layer's Y feeding the next layer's X)."""
    lstms = lstm_nodes(graph)
    consumers = _consumers(graph)
    following = {id(n): _next_layer(n, consumers, lstms) for n in lstms}
    fed = {id(f) for f in following.values() if f is not None}
    chains = []
    for first in lstms:
        if id(first) in fed:
            continue
        chain, node = [first], following[id(first)]
        while node is not None and len(chain) <= len(lstms):
            chain.append(node)
            node = following[id(node)]
        chains.append(chain)
    return chains


def find_chain(graph: Any, node: Optional[str]) -> List[Tuple[Any, int]]:
    """The nodes to import with their indices in the graph: the node called `node`, or, with None,
    the graph's only chain of LSTM nodes. OnnxImportError when there is none, no such node, or
    several chains."""
    lstms = lstm_nodes(graph)
    index = {id(n): i for i, n in enumerate(lstms)}
    if not lstms:
        raise OnnxImportError("the graph has no LSTM node")
    if node is not None:
        for n in lstms:
            if _node_name(n, index[id(n)]) == node:
                return [(n, index[id(n)])]
        names = [_node_name(n, index[id(n)]) for n in lstms]
        raise OnnxImportError(f"node: no LSTM node called {node!r} in the graph; its LSTM nodes are {names}")
    chains = lstm_chains(graph)
    if len(chains) != 1:
        chain_names = [[_node_name(n, index[id(n)]) for n in chain] for chain in chains]
        raise OnnxImportError(
            f"the graph has {len(chains)} chains of LSTM nodes {chain_names}: name the node to import with node="
        )
    return [(n, index[id(n)]) for n in chains[0]]


# ------------------------------------------------------------------------------- the model
def model_from_onnx(model_or_path: PathOrModel, node: Optional[str]) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], Any]:
    """The configuration (LSTM's constructor arguments), torch's state_dict and the dtype of the
    model that the graph's LSTM chain (or the node called `node`) computes."""
    graph = load_model(model_or_path).graph
    constants = _constant_values(graph)
    nodes = [read_node(n, i, constants) for n, i in find_chain(graph, node)]
    first = nodes[0]
    state_dict: Dict[str, np.ndarray] = {}
    input_size = None
    dtype = None
    has_bias = None
    peephole = None
    for layer, lstm in enumerate(nodes):
        where = lstm.describe()
        if (lstm.hidden_size, lstm.direction) != (first.hidden_size, first.direction):
            raise OnnxImportError(
                f"{where}: hidden_size {lstm.hidden_size} and direction {lstm.direction!r} differ from the first "
                f"layer's ({first.hidden_size}, {first.direction!r}): not one stacked LSTM"
            )
        W, R, B, P = (_fixed(lstm, op) for op in ("W", "R", "B", "P"))
        if W is None or R is None:
            raise OnnxImportError(f"{where}: it has no {'W' if W is None else 'R'} input")
        if (B is not None) != (has_bias if has_bias is not None else B is not None):
            raise OnnxImportError(f"{where}: B is given for some layers and not for others")
        has_bias = B is not None
        if peephole is not None and has_peepholes(P) != peephole:
            raise OnnxImportError(f"{where}: peephole weights (P) are given for some layers and not for others")
        peephole = has_peepholes(P)
        expected_input = None if layer == 0 else first.num_directions * first.hidden_size
        state_dict.update(layer_weights(lstm, W, R, B, P, layer, expected_input))
        if layer == 0:
            input_size = int(np.asarray(W).shape[2])
            dtype = np.float64 if np.asarray(W).dtype == np.float64 else np.float32
    config = dict(
        input_size=input_size, hidden_size=first.hidden_size, num_layers=len(nodes), bias=bool(has_bias),
        batch_first=first.layout == 1 or _transposed_graph_input(graph, first.inputs["X"]),
        bidirectional=first.direction == "bidirectional", reverse=first.direction == "reverse",
        peephole=bool(peephole),
    )
    return config, state_dict, dtype


def _transposed_graph_input(graph: Any, value: str) -> bool:
    """Whether `value` is a graph input with its first two axes swapped (torch's export of a
    batch_first LSTM feeds the first layer so): then the graph takes (N, L, I)."""
    from onnx import helper

    inputs = {i.name for i in graph.input}
    for node in graph.node:
        if node.op_type == "Transpose" and value in node.output and node.input and node.input[0] in inputs:
            perm = [helper.get_attribute_value(a) for a in node.attribute if a.name == "perm"]
            return bool(perm) and list(perm[0]) == [1, 0, 2]
    return False


# ------------------------------------------------------------------------------- the operator
class OnnxLstm:
    """The ONNX LSTM operator of one graph node, run by fastlstm: ``fn(X, W=None, R=None, B=None,
    sequence_lens=None, initial_h=None, initial_c=None, P=None) -> (Y, Y_h, Y_c)``, shapes as the
    operator defines them (Y: (L, D, N, H), or (N, L, D, H) with layout 1; Y_h and Y_c: (D, N, H),
    or (N, D, H)). Inputs the graph fixes are the defaults; weights it does not fix are passed in
    the call, and initial states and lengths it does not fix default to the operator's (zeros,
    whole sequences).
    Rows past a sequence's length (``sequence_lens``) are not computed; their Y is zero."""

    def __init__(self, node: LstmNode, num_threads: Optional[int] = None) -> None:
        self.node = node
        self._num_threads = num_threads
        # The last model built and copies of its weights; calls from several threads share it.
        self._lock = threading.Lock()
        self._cached: Optional[Tuple[Tuple[Optional[np.ndarray], ...], Any]] = None

    def __repr__(self) -> str:
        n = self.node
        return f"OnnxLstm(node={n.name!r}, hidden_size={n.hidden_size}, direction={n.direction!r}, layout={n.layout})"

    def _argument(self, op: str, given: Any) -> Optional[np.ndarray]:
        """An input of the call: as given, else the graph's fixed value. The graph may compute the
        per-call inputs (torch's export expands zeros into initial_h): without them in the call
        they are the operator's defaults (zeros, whole sequences); weights must be given."""
        if given is not None:
            return np.asarray(given)
        if op in self.node.runtime_inputs and op not in ("sequence_lens", "initial_h", "initial_c"):
            raise OnnxImportError(
                f"{op}: not given, and {self.node.describe()} takes it from {self.node.inputs[op]!r}, "
                f"which the graph does not fix"
            )
        return self.node.constants.get(op)

    def _model_for(self, W: np.ndarray, R: np.ndarray, B: Optional[np.ndarray], P: Optional[np.ndarray]) -> Any:
        """The fastlstm model of these weights: the last one built when they are equal to its."""
        weights = (W, R, B, P)
        with self._lock:
            cached = self._cached
        if cached is not None and all(
            (a is None and b is None) or (a is not None and b is not None and a.shape == b.shape and np.array_equal(a, b))
            for a, b in zip(weights, cached[0])
        ):
            return cached[1]
        config = dict(
            input_size=int(W.shape[2]), hidden_size=self.node.hidden_size, num_layers=1, bias=B is not None,
            batch_first=self.node.layout == 1, bidirectional=self.node.direction == "bidirectional",
            reverse=self.node.direction == "reverse", peephole=has_peepholes(P),
        )
        dtype = np.float64 if W.dtype == np.float64 else np.float32
        model = build_model(config, layer_weights(self.node, W, R, B, P), dtype, self._num_threads)
        with self._lock:
            self._cached = (tuple(None if a is None else np.array(a) for a in weights), model)
        return model

    def __call__(
        self, X: Any, W: Any = None, R: Any = None, B: Any = None, sequence_lens: Any = None,
        initial_h: Any = None, initial_c: Any = None, P: Any = None,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        W_, R_ = self._argument("W", W), self._argument("R", R)
        if W_ is None or R_ is None:
            raise OnnxImportError(f"{'W' if W_ is None else 'R'}: not given, and the node has none")
        model = self._model_for(W_, R_, self._argument("B", B), self._argument("P", P))
        layout, D, H = self.node.layout, self.node.num_directions, self.node.hidden_size
        X = np.asarray(X)
        if X.ndim != 3:
            raise InputError(f"X: expected 3 dimensions ({'N, L' if layout else 'L, N'}, input_size), got shape {X.shape}")
        L, N = (X.shape[1], X.shape[0]) if layout else (X.shape[0], X.shape[1])
        state = self._initial_state(self._argument("initial_h", initial_h), self._argument("initial_c", initial_c),
                                    N, model.dtype)
        lengths = self._argument("sequence_lens", sequence_lens)
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.shape != (N,) or lengths.dtype.kind not in "iu":
                raise InputError(f"sequence_lens: expected {N} integers (one per sequence), got {lengths.dtype} {lengths.shape}")
            if N and (lengths.min() < 1 or lengths.max() > L):
                raise InputError(f"sequence_lens: every length must be in [1, {L}], got {lengths.tolist()}")
        if lengths is not None and N and lengths.min() < L:
            packed = pack_padded_sequence(X, lengths.astype(np.int64), batch_first=bool(layout), enforce_sorted=False)
            output, (h_n, c_n) = model(packed, state)
            output, _ = pad_packed_sequence(output, batch_first=bool(layout), total_length=L)
        else:
            output, (h_n, c_n) = model(X, state)
        if layout:
            Y = output.reshape(N, L, D, H)
            return np.ascontiguousarray(Y), np.ascontiguousarray(h_n.transpose(1, 0, 2)), np.ascontiguousarray(c_n.transpose(1, 0, 2))
        Y = output.reshape(L, N, D, H).transpose(0, 2, 1, 3)
        return np.ascontiguousarray(Y), h_n, c_n

    def _initial_state(self, h: Optional[np.ndarray], c: Optional[np.ndarray], N: int, dtype: Any) -> Any:
        """(h_0, c_0) in torch's (D, N, H) from the operator's, zeros for the one not given."""
        if h is None and c is None:
            return None
        D, H, layout = self.node.num_directions, self.node.hidden_size, self.node.layout
        expected = (N, D, H) if layout else (D, N, H)
        states = []
        for name, value in (("initial_h", h), ("initial_c", c)):
            if value is None:
                states.append(np.zeros((D, N, H), dtype=dtype))
                continue
            if value.shape != expected:
                raise InputError(f"{name}: expected shape {expected}, got {value.shape}")
            states.append(np.ascontiguousarray(value.transpose(1, 0, 2) if layout else value))
        return tuple(states)


def build_model(config: Dict[str, Any], state_dict: Dict[str, np.ndarray], dtype: Any, num_threads: Optional[int]) -> Any:
    """A fastlstm.LSTM of `config` (the constructor's arguments, proj_size and dropout 0 where
    absent) holding `state_dict`, cast to `dtype`."""
    from ._lstm import LSTM

    model = LSTM._for_weights(dict(dict(proj_size=0, dropout=0.0), **config), dtype, num_threads)
    model._set_parameters(state_dict, cast=True)
    return model


def onnx_lstm(model_or_path: PathOrModel, node: Optional[str] = None, *, num_threads: Optional[int] = None) -> OnnxLstm:
    """The LSTM node called `node` (None: the graph's only LSTM node) as a callable with the
    operator's inputs and outputs. Raises OnnxImportError for a graph with no LSTM node, an
    unknown node, several nodes and no name, or attributes fastlstm does not run."""
    graph = load_model(model_or_path).graph
    lstms = lstm_nodes(graph)
    if node is None and len(lstms) > 1:
        names = [_node_name(n, i) for i, n in enumerate(lstms)]
        raise OnnxImportError(f"the graph has {len(lstms)} LSTM nodes {names}: name one with node=")
    (found, index), = find_chain(graph, node) if node is not None or not lstms else [(lstms[0], 0)]
    return OnnxLstm(read_node(found, index, _constant_values(graph)), num_threads)
