"""The tools a case runs: fastlstm's variants and the optional peers (torch, ONNX Runtime), built
on the same weights and checked against each other before anything is timed."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

import fastlstm

from .cases import Case


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def import_ort():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def export_onnx(torch, module, example_args: tuple, input_names: List[str]) -> bytes:
    """The torch module as an ONNX model (TorchScript exporter first, then the dynamo one)."""
    errors = []
    for dynamo in (False, True):
        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, example_args, buffer, dynamo=dynamo,
                    input_names=input_names, output_names=["output", "h_n", "c_n"],
                )
            return buffer.getvalue()
        except Exception as error:  # noqa: BLE001 - any exporter failure means "ORT skipped"
            errors.append(f"dynamo={dynamo}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
    raise RuntimeError("ONNX export failed (" + "; ".join(errors) + ")")


def ort_session(ort, model: bytes, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


@dataclass
class Tool:
    """One timed thing: `call` is the timed unit, `check` returns named arrays to compare."""

    name: str
    call: Callable[[], Any]
    check: Callable[[], Dict[str, np.ndarray]]


@dataclass
class Prepared:
    """What a case needs that does not depend on the thread count."""

    case: Case
    torch_module: Any = None
    onnx_model: Optional[bytes] = None
    skipped: Dict[str, str] = field(default_factory=dict)  # peer -> reason
    data: Dict[str, Any] = field(default_factory=dict)


def max_diff(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> float:
    keys = [k for k in a if k in b]
    if not keys:
        raise ValueError("nothing to compare")
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64)))) for k in keys)


def prepare(case: Case, torch, ort, seed: int = 0) -> Prepared:
    prep = Prepared(case)
    rng = np.random.default_rng(seed)
    D, L = case.directions * case.num_layers, case.steps
    if case.mode == "stream":
        xs = rng.standard_normal((case.calls, 1, case.batch, case.input_size), dtype=np.float32)
        prep.data["xs"] = [xs[t] for t in range(case.calls)]
        prep.data["h0"] = np.zeros((D, case.batch, case.h_out), np.float32)
        prep.data["c0"] = np.zeros((D, case.batch, case.hidden_size), np.float32)
    else:
        x = rng.standard_normal((L, case.batch, case.input_size), dtype=np.float32)
        lengths = case.lengths()
        if case.mode == "packed":
            mask = (np.arange(L)[:, None] < lengths[None, :]).astype(np.float32)
            x *= mask[:, :, None]  # zero padding, as a padded batch holds
            prep.data["mask"] = mask
            prep.data["lengths"] = lengths
        prep.data["x"] = x

    if torch is None:
        np.random.seed(seed)
        prep.skipped["torch"] = "torch not importable"
        prep.skipped["ort"] = "needs torch to export the model"
        return prep

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.nn.LSTM(
            case.input_size, case.hidden_size, case.num_layers,
            bidirectional=case.bidirectional, proj_size=case.proj_size,
        ).eval()
    prep.torch_module = module
    if case.mode == "stream":
        prep.data["t_xs"] = [torch.from_numpy(x) for x in prep.data["xs"]]
        prep.data["t_h0"] = torch.from_numpy(prep.data["h0"])
        prep.data["t_c0"] = torch.from_numpy(prep.data["c0"])
    else:
        prep.data["t_x"] = torch.from_numpy(prep.data["x"])
        if case.mode == "packed":
            prep.data["t_packed"] = torch.nn.utils.rnn.pack_padded_sequence(
                prep.data["t_x"], torch.from_numpy(prep.data["lengths"])
            )

    if ort is None:
        prep.skipped["ort"] = "onnxruntime not importable"
    elif case.proj_size:
        prep.skipped["ort"] = "ONNX LSTM has no projection (proj_size)"
    elif case.mode == "packed":
        prep.skipped["ort"] = "torch's ONNX export takes no PackedSequence"
    else:
        try:
            if case.mode == "stream":
                args = (prep.data["t_xs"][0], (prep.data["t_h0"], prep.data["t_c0"]))
                prep.onnx_model = export_onnx(torch, module, args, ["x", "h0", "c0"])
            else:
                prep.onnx_model = export_onnx(torch, module, (prep.data["t_x"],), ["x"])
        except RuntimeError as error:
            prep.skipped["ort"] = str(error)
    return prep


def _torch_tool(torch, module, x, padded_output) -> Tool:
    """torch's LSTM over `x` (a tensor or a PackedSequence); `padded_output` turns its output into
    the padded tensor the checks compare."""

    def run_torch():
        with torch.no_grad():
            return module(x)

    def check_torch():
        out, (h, c) = run_torch()
        return {"output": padded_output(out).numpy(), "h_n": h.numpy(), "c_n": c.numpy()}

    return Tool("torch", run_torch, check_torch)


def make_tools(prep: Prepared, threads: int, torch, ort) -> List[Tool]:
    """The fastlstm variants first, then the peers, all at `threads` threads."""
    case, d = prep.case, prep.data
    if prep.torch_module is not None:
        model = fastlstm.LSTM.from_torch(prep.torch_module, num_threads=threads)
    else:
        model = fastlstm.LSTM(
            case.input_size, case.hidden_size, case.num_layers,
            bidirectional=case.bidirectional, proj_size=case.proj_size, num_threads=threads,
        )
    tools: List[Tool] = []

    if case.mode == "stream":

        def stream(step):
            def run():
                h, c, outs = d_h0, d_c0, []
                for x in xs:
                    out, (h, c) = step(x, (h, c))
                    outs.append(out)
                return outs, h, c

            return run

        def as_check(run, to_numpy):
            def check():
                outs, h, c = run()
                return {"output": np.stack([to_numpy(o) for o in outs]), "h_n": to_numpy(h), "c_n": to_numpy(c)}

            return check

        xs, d_h0, d_c0 = d["xs"], d["h0"], d["c0"]
        run = stream(model)
        tools.append(Tool("fastlstm", run, as_check(run, np.asarray)))

        def run_step_api():  # the streaming API: the state stays inside the stream
            steps = model.stream(case.batch)
            outs = [steps.step(x[0])[None] for x in xs]
            h, c = steps.state
            return outs, h, c

        tools.append(Tool("fastlstm-stream", run_step_api, as_check(run_step_api, np.asarray)))
        if prep.torch_module is not None:
            module, t_xs, t_h0, t_c0 = prep.torch_module, d["t_xs"], d["t_h0"], d["t_c0"]

            def run_torch():
                h, c, outs = t_h0, t_c0, []
                with torch.no_grad():
                    for x in t_xs:
                        out, (h, c) = module(x, (h, c))
                        outs.append(out)
                return outs, h, c

            tools.append(Tool("torch", run_torch, as_check(run_torch, lambda t: t.numpy())))
        if prep.onnx_model is not None:
            session = ort_session(ort, prep.onnx_model, threads)

            def run_ort():
                h, c, outs = d_h0, d_c0, []
                for x in xs:
                    out, h, c = session.run(None, {"x": x, "h0": h, "c0": c})
                    outs.append(out)
                return outs, h, c

            tools.append(Tool("ort", run_ort, as_check(run_ort, np.asarray)))
        return tools

    x = d["x"]
    if case.mode == "packed":
        mask = d["mask"][:, :, None]
        packed = fastlstm.pack_padded_sequence(x, d["lengths"])

        def check_packed():
            out, (h, c) = model(packed)
            padded, _ = fastlstm.pad_packed_sequence(out, total_length=case.steps)
            return {"output": padded, "h_n": h, "c_n": c}

        def check_padded():  # valid positions only; h_n, c_n ran through the padding
            out, _ = model(x)
            return {"output": out * mask}

        tools.append(Tool("fastlstm", lambda: model(packed), check_packed))
        tools.append(Tool("fastlstm-padded", lambda: model(x), check_padded))
        if prep.torch_module is not None:
            def padded_output(out):
                return torch.nn.utils.rnn.pad_packed_sequence(out, total_length=case.steps)[0]

            tools.append(_torch_tool(torch, prep.torch_module, d["t_packed"], padded_output))
        return tools

    def check_fast():
        out, (h, c) = model(x)
        return {"output": out, "h_n": h, "c_n": c}

    tools.append(Tool("fastlstm", lambda: model(x), check_fast))
    if prep.torch_module is not None:
        tools.append(_torch_tool(torch, prep.torch_module, d["t_x"], lambda out: out))
    if prep.onnx_model is not None:
        session = ort_session(ort, prep.onnx_model, threads)
        feed = {"x": x}

        def run_ort():
            return session.run(None, feed)

        def check_ort():
            out, h, c = run_ort()
            return {"output": out, "h_n": h, "c_n": c}

        tools.append(Tool("ort", run_ort, check_ort))
    return tools
