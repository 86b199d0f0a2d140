"""Models from ONNX: ONNX's own LSTM node test cases, one-node graphs against ONNX Runtime, torch's
exports against torch, the convert command, and the named errors for what is not taken."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import fastlstm
from fastlstm.__main__ import main as cli_main

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the onnx package (the test extra)")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TOLERANCE = 1e-5
GATES = ("i", "o", "f", "c")


# ----------------------------------------------------------------------------- helpers
def one_node_model(node, inputs, initializers=(), opset=14):
    """A graph of `node` alone: `inputs` (name -> array) as graph inputs, `initializers` (name ->
    array) fixed; every non-empty output declared, of the type of the first input."""
    element = helper.np_dtype_to_tensor_dtype(next(iter(inputs.values())).dtype)
    graph = helper.make_graph(
        [node],
        "lstm",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info(n, element, None) for n in node.output if n],
        [numpy_helper.from_array(a, n) for n, a in dict(initializers).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def call_with_node_inputs(fn, node, arrays):
    """fn called with each of `arrays` under the operator input name its position in node.input has."""
    names = ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P")
    # Arrays are given for the node's non-empty inputs, in order.
    given = [names[i] for i, n in enumerate(node.input) if n]
    kwargs = dict(zip(given, arrays))
    X = kwargs.pop("X")
    return fn(X, **kwargs)


def max_diff(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max()) if np.size(a) else 0.0


# ----------------------------------------------------------------------------- ONNX's node tests
def onnx_node_cases():
    """(name, node, inputs, outputs) of every case onnx.backend.test.case.node.lstm exports."""
    from onnx.backend.test.case.node import lstm as cases

    recorded = []

    def record(node, inputs, outputs, name, **_):
        recorded.append((name, node, list(inputs), list(outputs)))

    original = cases.expect
    cases.expect = record
    try:
        for attribute in sorted(dir(cases.LSTM)):
            if attribute.startswith("export"):
                getattr(cases.LSTM, attribute)()
    finally:
        cases.expect = original
    return recorded


@pytest.mark.parametrize("case", onnx_node_cases(), ids=lambda case: case[0])
def test_onnx_node_test_cases(case):
    name, node, inputs, outputs = case
    model = one_node_model(node, {n: a for n, a in zip([i for i in node.input if i], inputs)})
    fn = fastlstm.onnx_lstm(model)
    got = call_with_node_inputs(fn, node, inputs)
    produced = [got[k] for k, output in enumerate(node.output) if output]
    assert len(produced) == len(outputs)
    for ours, expected in zip(produced, outputs):
        assert ours.shape == expected.shape
        assert max_diff(ours, expected) < TOLERANCE, name


def test_the_node_cases_were_found():
    names = {case[0] for case in onnx_node_cases()}
    assert {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_batchwise", "test_lstm_with_peepholes",
            "test_lstm_reverse", "test_lstm_bidirectional"} <= names


# ----------------------------------------------------------------------------- against ONNX Runtime
def random_case(rng, direction, layout, bias, lengths, initial, weights_fixed, dtype=np.float32, peepholes=False):
    """A one-node graph of random sizes and weights with `layout`, the inputs it is fed, and the same
    node with layout 0 (ONNX Runtime runs only that) and its inputs."""
    D = 2 if direction == "bidirectional" else 1
    L, N, I, H = int(rng.integers(1, 7)), int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
    arrays = {
        "X": rng.standard_normal((L, N, I)).astype(dtype),
        "W": (0.5 * rng.standard_normal((D, 4 * H, I))).astype(dtype),
        "R": (0.5 * rng.standard_normal((D, 4 * H, H))).astype(dtype),
    }
    if bias:
        arrays["B"] = (0.5 * rng.standard_normal((D, 8 * H))).astype(dtype)
    if lengths:
        arrays["sequence_lens"] = rng.integers(1, L + 1, size=N).astype(np.int32)
    if initial:
        arrays["initial_h"] = rng.standard_normal((D, N, H)).astype(dtype)
        arrays["initial_c"] = rng.standard_normal((D, N, H)).astype(dtype)
    if peepholes:
        arrays["P"] = (0.5 * rng.standard_normal((D, 3 * H))).astype(dtype)
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    node_inputs = [n if n in arrays else "" for n in names]
    while node_inputs and not node_inputs[-1]:
        node_inputs.pop()

    def graph(node_layout, values):
        node = helper.make_node("LSTM", node_inputs, ["Y", "Y_h", "Y_c"], hidden_size=H, direction=direction,
                                layout=node_layout)
        fixed = {n: a for n, a in values.items() if weights_fixed and n in ("W", "R", "B", "P")}
        fed = {n: a for n, a in values.items() if n not in fixed}
        return one_node_model(node, fed, fixed), fed

    reference = graph(0, arrays)
    if not layout:
        return reference, reference
    batchwise = {n: (np.ascontiguousarray(a.swapaxes(0, 1)) if n in ("X", "initial_h", "initial_c") else a)
                 for n, a in arrays.items()}
    return graph(1, batchwise), reference


def as_layout(outputs, layout):
    """ONNX Runtime's layout-0 (Y, Y_h, Y_c) in `layout`."""
    if not layout:
        return outputs
    Y, Y_h, Y_c = outputs
    return Y.transpose(2, 0, 1, 3), Y_h.swapaxes(0, 1), Y_c.swapaxes(0, 1)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("initial", [False, True])
@pytest.mark.parametrize("peepholes", [False, True])
@pytest.mark.parametrize("weights_fixed", [True, False])
def test_random_one_node_graphs_agree_with_onnx_runtime(direction, layout, lengths, initial, peepholes, weights_fixed):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng([layout, lengths, initial, peepholes, weights_fixed, len(direction)])
    for trial in range(3):
        (model, fed), (reference, reference_fed) = random_case(
            rng, direction, layout, bias=trial != 1, lengths=lengths, initial=initial, weights_fixed=weights_fixed,
            peepholes=peepholes)
        session = ort.InferenceSession(reference.SerializeToString(), providers=["CPUExecutionProvider"])
        expected = as_layout(session.run(None, reference_fed), layout)
        got = fastlstm.onnx_lstm(model)(**fed)
        for ours, theirs, what in zip(got, expected, ("Y", "Y_h", "Y_c")):
            assert ours.shape == theirs.shape, what
            assert max_diff(ours, theirs) < TOLERANCE, (what, trial)


def test_the_operator_in_float64_against_onnx_reference():
    # ONNX Runtime's LSTM is float32 only: ONNX's reference evaluator runs float64 (no sequence_lens).
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(5)
    (model, fed), _ = random_case(rng, "bidirectional", 0, bias=True, lengths=False, initial=True,
                                  weights_fixed=True, dtype=np.float64, peepholes=True)
    expected = ReferenceEvaluator(model).run(None, fed)
    got = fastlstm.onnx_lstm(model)(**fed)
    assert got[0].dtype == np.float64
    for ours, theirs in zip(got, expected):
        assert max_diff(ours, theirs) < 1e-12


def test_weights_given_in_a_call_replace_the_ones_before():
    rng = np.random.default_rng(6)
    (model, fed), _ = random_case(rng, "forward", 0, bias=True, lengths=False, initial=False, weights_fixed=False)
    fn = fastlstm.onnx_lstm(model)
    first = fn(**fed)
    changed = dict(fed, W=fed["W"] * 2)
    second = fn(**changed)
    again = fastlstm.onnx_lstm(model)(**changed)
    assert max_diff(second[0], again[0]) == 0
    assert max_diff(first[0], second[0]) > 1e-3


# ----------------------------------------------------------------------------- torch's exports
def torch_export(module, x):
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x),), buffer, dynamo=False, input_names=["x"],
                          output_names=["y", "h", "c"])
    return buffer.getvalue()


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,bias", [
    (2, True, False, True), (2, False, False, True), (3, True, True, True), (1, False, False, False),
])
def test_a_stacked_torch_lstm_exported_to_onnx_equals_torch(num_layers, bidirectional, batch_first, bias):
    torch = pytest.importorskip("torch")
    torch.manual_seed(num_layers)
    module = torch.nn.LSTM(6, 5, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                           bias=bias).eval()
    x = np.random.default_rng(1).standard_normal((3, 4, 6)).astype(np.float32)
    model = fastlstm.LSTM.from_onnx(torch_export(module, x))
    assert (model.num_layers, model.bidirectional, model.bias) == (num_layers, bidirectional, bias)
    with torch.no_grad():
        expected, (h, c) = module(torch.from_numpy(x))
    output, (h_n, c_n) = model(x)
    assert max_diff(output, expected.numpy()) < TOLERANCE
    assert max_diff(h_n, h.numpy()) < TOLERANCE and max_diff(c_n, c.numpy()) < TOLERANCE


def test_a_node_of_a_stack_by_name_and_the_convert_command(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    module = torch.nn.LSTM(4, 3, num_layers=2).eval()
    x = np.random.default_rng(2).standard_normal((5, 2, 4)).astype(np.float32)
    path = tmp_path / "model.onnx"
    path.write_bytes(torch_export(module, x))
    graph = onnx.load(str(path)).graph
    names = [n.name for n in graph.node if n.op_type == "LSTM"]
    first = fastlstm.LSTM.from_onnx(path, node=names[0])
    assert first.num_layers == 1
    single = torch.nn.LSTM(4, 3).eval()
    single.load_state_dict({k: v for k, v in module.state_dict().items() if k.endswith("_l0")})
    with torch.no_grad():
        expected, _ = single(torch.from_numpy(x))
    assert max_diff(first(x)[0], expected.numpy()) < TOLERANCE

    out = tmp_path / "model.safetensors"
    assert cli_main(["convert", str(path), str(out)]) == 0
    loaded = fastlstm.LSTM.load(out)
    with torch.no_grad():
        expected, _ = module(torch.from_numpy(x))
    assert loaded.num_layers == 2
    assert max_diff(loaded(x)[0], expected.numpy()) < TOLERANCE
    assert cli_main(["convert", str(path), str(tmp_path / "one.safetensors"), "--node", names[1]]) == 0
    assert fastlstm.LSTM.load(tmp_path / "one.safetensors").input_size == 3


# ----------------------------------------------------------------------------- refused, by name
def node_with(**attributes):
    H, I = 3, 2
    rng = np.random.default_rng(0)
    weights = {"W": rng.standard_normal((1, 4 * H, I)).astype(np.float32),
               "R": rng.standard_normal((1, 4 * H, H)).astype(np.float32)}
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=H, **attributes)
    X = np.zeros((2, 1, I), np.float32)
    return one_node_model(node, {"X": X}, weights), X


@pytest.mark.parametrize("attributes,match", [
    (dict(clip=1.0), "clip"),
    (dict(input_forget=1), "input_forget"),
    (dict(activations=["Relu", "Tanh", "Tanh"]), "activations"),
    (dict(direction="sideways"), "direction"),
    (dict(layout=2), "layout"),
])
def test_attributes_fastlstm_does_not_run_are_named(attributes, match):
    model, _ = node_with(**attributes)
    with pytest.raises(fastlstm.OnnxImportError, match=match):
        fastlstm.LSTM.from_onnx(model)
    with pytest.raises(fastlstm.OnnxImportError, match=match):
        fastlstm.onnx_lstm(model)


def test_default_activations_spelled_out_are_taken():
    model, X = node_with(activations=["Sigmoid", "Tanh", "Tanh"])
    assert fastlstm.onnx_lstm(model)(X)[0].shape == (2, 1, 1, 3)


def test_graphs_and_weights_it_cannot_take_are_named(tmp_path):
    empty = helper.make_model(helper.make_graph([], "empty", [], []))
    with pytest.raises(fastlstm.OnnxImportError, match="no LSTM node"):
        fastlstm.LSTM.from_onnx(empty)
    model, X = node_with()
    with pytest.raises(fastlstm.OnnxImportError, match="no LSTM node called 'nope'"):
        fastlstm.LSTM.from_onnx(model, node="nope")
    # Weights the graph takes from outside: from_onnx cannot, onnx_lstm wants them in the call.
    rng = np.random.default_rng(1)
    W = rng.standard_normal((1, 12, 2)).astype(np.float32)
    R = rng.standard_normal((1, 12, 3)).astype(np.float32)
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=3)
    fed = one_node_model(node, {"X": X, "W": W, "R": R})
    with pytest.raises(fastlstm.OnnxImportError, match="W is not fixed in the graph"):
        fastlstm.LSTM.from_onnx(fed)
    with pytest.raises(fastlstm.OnnxImportError, match="W: not given"):
        fastlstm.onnx_lstm(fed)(X, R=R)
    # Shapes that disagree with hidden_size or with each other.
    wrong = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=4)
    with pytest.raises(fastlstm.OnnxImportError, match=r"W has shape \(1, 12, 2\), expected \(1, 16, 2\)"):
        fastlstm.LSTM.from_onnx(one_node_model(wrong, {"X": X}, {"W": W, "R": R}))
    bad_bias = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=3)
    with pytest.raises(fastlstm.OnnxImportError, match="B has shape"):
        fastlstm.LSTM.from_onnx(one_node_model(bad_bias, {"X": X}, {"W": W, "R": R, "B": np.zeros((1, 12), np.float32)}))
    # Two separate nodes: a name is needed.
    two = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R"], ["Y1"], hidden_size=3, name="a"),
         helper.make_node("LSTM", ["X", "W", "R"], ["Y2"], hidden_size=3, name="b")],
        "two", [helper.make_tensor_value_info("X", TensorProto.FLOAT, X.shape)],
        [helper.make_tensor_value_info("Y1", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")])
    two = helper.make_model(two)
    with pytest.raises(fastlstm.OnnxImportError, match="2 chains"):
        fastlstm.LSTM.from_onnx(two)
    with pytest.raises(fastlstm.OnnxImportError, match="2 LSTM nodes"):
        fastlstm.onnx_lstm(two)
    assert fastlstm.LSTM.from_onnx(two, node="b").hidden_size == 3
    with pytest.raises(TypeError, match="model_or_path"):
        fastlstm.LSTM.from_onnx(3.5)
    with pytest.raises(fastlstm.InputError, match="sequence_lens"):
        fastlstm.onnx_lstm(model)(X, sequence_lens=np.array([5], np.int32))
    with pytest.raises(fastlstm.InputError, match="initial_h"):
        fastlstm.onnx_lstm(model)(X, initial_h=np.zeros((1, 2, 3), np.float32))


def test_one_operator_called_from_several_threads_with_different_weights():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    (model, fed), _ = random_case(rng, "forward", 0, bias=True, lengths=False, initial=False, weights_fixed=False)
    fn = fastlstm.onnx_lstm(model)
    variants = [dict(fed, W=fed["W"] * scale) for scale in (1.0, 0.5, 2.0)]
    expected = [fastlstm.onnx_lstm(model)(**v)[0] for v in variants]

    def run(k):
        return max_diff(fn(**variants[k % 3])[0], expected[k % 3])

    with ThreadPoolExecutor(4) as pool:
        assert max(pool.map(run, range(60))) == 0
