"""``python -m fastlstm bench --weights int8,float16``: fastlstm's reduced-precision models against
the peers' quantized LSTMs on the CPU cases, in one process, interleaved: torch's dynamically
quantized LSTM (``torch.ao.quantization.quantize_dynamic``: qint8 for int8, float16 for the 16-bit
formats) and, for int8, ONNX Runtime's DynamicQuantizeLSTM (``onnxruntime.quantization.
quantize_dynamic``), next to fastlstm float32. Each tool's error is its largest |output - torch
float32's output| on the same input."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from typing import Any, Callable, Dict, List, Optional

import numpy as np

import fastlstm

from .cases import CASES, Case
from .peers import export_onnx, import_ort, import_torch, ort_session
from .report import machine_info
from .timing import interleaved

# int8-in8: int8 with the model's input quantized to 8 bits (quantize("int8", input_bits=8)).
FORMATS = ("int8", "int8-in8", "float16", "bfloat16")
TORCH_DTYPE = {"int8": "qint8", "int8-in8": "qint8", "float16": "float16"}  # torch's dynamic quantization


def quantized(model: fastlstm.LSTM, weight_format: str) -> fastlstm.LSTM:
    """`model` in one of FORMATS."""
    if weight_format == "int8-in8":
        return model.quantize("int8", input_bits=8)
    return model.quantize(weight_format)


def parse_formats(text: str) -> List[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"unknown weight format(s) {', '.join(unknown) or text!r}; "
                                         f"choose from {', '.join(FORMATS)}")
    return formats


def _inputs(case: Case) -> np.ndarray:
    steps = case.calls if case.mode == "stream" else case.steps
    return np.random.default_rng(0).standard_normal((steps, case.batch, case.input_size), dtype=np.float32)


def _carried(step: Callable[[np.ndarray, Any], Any], x: np.ndarray) -> Callable[[], np.ndarray]:
    """One call per step of x, the state carried from each to the next (S7)."""
    def run() -> np.ndarray:
        state, outputs = None, []
        for t in range(x.shape[0]):
            out, state = step(x[t:t + 1], state)
            outputs.append(np.asarray(out))
        return np.concatenate(outputs)
    return run


def _torch_tool(torch: Any, module: Any, weight_format: str, x: np.ndarray, stream: bool) -> Optional[Callable]:
    dtype = TORCH_DTYPE.get(weight_format)
    if dtype is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(module), {torch.nn.LSTM}, dtype=getattr(torch, dtype))[0]

    def step(xt: np.ndarray, state: Any):
        with torch.no_grad():
            out, state = quantized(torch.from_numpy(xt), state)
        return out.numpy(), state

    if stream:
        return _carried(step, x)
    return lambda: step(x, None)[0]


def _ort_tool(torch: Any, ort: Any, module: Any, case: Case, x: np.ndarray, threads: int) -> Callable:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    stream = case.mode == "stream"
    layers = case.num_layers * (2 if case.bidirectional else 1)
    zeros = np.zeros((layers, case.batch, case.hidden_size), np.float32)
    with tempfile.TemporaryDirectory() as directory:
        plain, quantized = os.path.join(directory, "lstm.onnx"), os.path.join(directory, "lstm_int8.onnx")
        example = (torch.from_numpy(x[:1] if stream else x), (torch.from_numpy(zeros), torch.from_numpy(zeros)))
        with open(plain, "wb") as out:
            out.write(export_onnx(torch, module, example, ["x", "h0", "c0"]))
        quantize_dynamic(plain, quantized, weight_type=QuantType.QInt8)
        with open(quantized, "rb") as model:
            session = ort_session(ort, model.read(), threads)

    def step(xt: np.ndarray, state: Any):
        h, c = state if state is not None else (zeros, zeros)
        out, h, c = session.run(None, {"x": xt, "h0": h, "c0": c})
        return out, (h, c)

    if stream:
        return _carried(step, x)
    return lambda: step(x, None)[0]


def _fastlstm_tool(model: fastlstm.LSTM, x: np.ndarray, stream: bool) -> Callable[[], np.ndarray]:
    if stream:
        return _carried(lambda xt, state: model(xt, state), x)
    return lambda: model(x)[0]


def run_case(case: Case, formats: List[str], threads: int, repeats: int, min_time: float, torch: Any,
             ort: Any) -> List[dict]:
    """One row per format: median ms (per step for S7) and error of each tool."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module = torch.nn.LSTM(case.input_size, case.hidden_size, case.num_layers, bidirectional=case.bidirectional,
                           proj_size=case.proj_size).eval()
    stream = case.mode == "stream"
    x = _inputs(case)
    with torch.no_grad():
        reference = module(torch.from_numpy(x))[0].numpy()
    float32 = fastlstm.LSTM.from_torch(module, num_threads=threads)
    rows = []
    for weight_format in formats:
        tools: Dict[str, Callable[[], Any]] = {
            "fastlstm float32": _fastlstm_tool(float32, x, stream),
            f"fastlstm {weight_format}": _fastlstm_tool(quantized(float32, weight_format), x, stream),
        }
        skipped: Dict[str, str] = {}
        if case.proj_size:
            skipped["peers"] = "torch's quantized LSTM and ONNX's LSTM have no proj_size"
        else:
            peer_format = "int8" if weight_format == "int8-in8" else weight_format
            torch_tool = _torch_tool(torch, module, weight_format, x, stream)
            if torch_tool is None:
                skipped[f"torch {peer_format}"] = "torch quantizes LSTMs dynamically to qint8 or float16 only"
            else:
                tools[f"torch {peer_format}"] = torch_tool
            if peer_format == "int8" and ort is not None:
                tools["ort int8"] = _ort_tool(torch, ort, module, case, x, threads)
        errors = {name: float(np.abs(np.asarray(tool()).reshape(reference.shape) - reference).max())
                  for name, tool in tools.items()}
        per = x.shape[0] if stream else 1
        timings = interleaved(tools, repeats, min_time)
        ms = {name: result["median_s"] * 1e3 / per for name, result in timings.items()}
        rows.append({"case": case.name, "weight_format": weight_format, "threads": threads,
                     "per": "step" if stream else "call", "ms": ms, "error": errors, "skipped": skipped})
    return rows


def format_rows(rows: List[dict]) -> str:
    lines = ["case  format    tool                ms        error    vs fastlstm float32",
             "----  --------  ------------------  --------  -------  -------------------"]
    for row in rows:
        base = row["ms"]["fastlstm float32"]
        for name, ms in row["ms"].items():
            lines.append(f"{row['case']:<5} {row['weight_format']:<9} {name:<19} {ms:<9.4g} "
                         f"{row['error'][name]:<8.1e} {base / ms:.2f}x")
        for name, why in row["skipped"].items():
            lines.append(f"{row['case']:<5} {row['weight_format']:<9} {name:<19} skipped: {why}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    torch = import_torch()
    if torch is None:
        print("error: --weights compares with torch's quantized LSTM: install torch", file=sys.stderr)
        return 2
    ort = None if args.no_ort else import_ort()
    names = args.cases or [name for name in CASES if CASES[name].mode != "packed"]
    threads_list = args.threads or [fastlstm.build_info()["default_threads"]]
    machine = machine_info()
    print(f"fastlstm {fastlstm.__version__} ({fastlstm.build_info()['simd']}), torch {torch.__version__}, "
          f"onnxruntime {ort.__version__ if ort else 'not used'}; CPU: {machine['cpu_model']}")
    rows: List[dict] = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not supported with oneDNN.*")  # torch, proj_size (S6)
        for name in names:
            case = CASES[name]
            if case.mode == "packed":
                print(f"{name}: skipped (packed input: the peers' quantized LSTMs take padded batches here)")
                continue
            for threads in threads_list:
                rows.extend(run_case(case, args.weights, threads, args.repeats, args.min_time, torch, ort))
    print(format_rows(rows))
    print("  * ms per call (per step for S7: one-step calls carrying (h, c)); error = max |output - torch float32|.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=1)
        print(f"wrote {args.json}")
    return 0
