"""Benchmark of fastlstm against torch.nn.LSTM and ONNX Runtime on the CPU.

Run it as ``python -m fastlstm bench [options]`` (or ``python benchmarks/run.py``); see
``python -m fastlstm bench --help`` and benchmarks/README.md.

For every case and thread count the tools run the same float32 model on the same input: torch
(``torch.no_grad``, eval mode, ``torch.set_num_threads``) and ONNX Runtime (the torch module
exported to ONNX, ``intra_op_num_threads``) are optional peers whose columns are skipped when they
are not importable. Outputs are checked against each peer before anything is timed; timed samples
are taken round-robin (fastlstm, torch, ort, fastlstm, ...) so machine noise hits every tool alike,
and the median is reported. The NumPy float32 GEMM rate (2048^3 matmul) measured in the same run is
the yardstick for fastlstm's GFLOP/s.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import fastlstm

TOLERANCE = 1e-4  # max abs difference to a peer above which a case fails
# What the config column adds for fastlstm's variants of a case.
VARIANT_LABELS = {"fastlstm-padded": " padded", "fastlstm-stream": " stream.step"}
GEMM_SIZE = 2048
GEMM_PROBE = "numpy-gemm"  # the GEMM samples taken between the tools' (GemmProbe)
PEERS = ("torch", "ort")


# --------------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One benchmark configuration (float32, sequence-first layout)."""

    name: str
    batch: int  # N
    steps: int  # L (the longest sequence for packed cases)
    input_size: int  # I
    hidden_size: int  # H
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    mode: str = "sequence"  # "sequence" | "stream" (L=1 calls carrying (h, c)) | "packed"
    calls: int = 1  # stream: calls per timed unit
    min_steps: int = 0  # packed: the shortest sequence

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.proj_size or self.hidden_size

    def lengths(self) -> np.ndarray:
        """Sequence lengths, longest first (all `steps` unless packed)."""
        if self.mode == "packed":
            return np.linspace(self.steps, self.min_steps, self.batch).round().astype(np.int64)
        return np.full(self.batch, self.steps, dtype=np.int64)

    def tokens(self) -> int:
        """Real (unpadded) time steps x sequences in one timed unit."""
        if self.mode == "stream":
            return self.batch * self.calls
        return int(self.lengths().sum())

    def flops_per_token(self) -> int:
        """2 x sum over layers and directions of (4H x layer_input + 4H x H_out + proj x H)."""
        h, total = self.hidden_size, 0
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.directions * self.h_out
            total += self.directions * (4 * h * layer_input + 4 * h * self.h_out + self.proj_size * h)
        return 2 * total

    def describe(self) -> str:
        if self.mode == "stream":
            text = f"N={self.batch} L=1 x{self.calls} calls"
        elif self.mode == "packed":
            text = f"N={self.batch} L={self.steps}..{self.min_steps}"
        else:
            text = f"N={self.batch} L={self.steps}"
        text += f" I={self.input_size} H={self.hidden_size}"
        if self.proj_size:
            text += f" P={self.proj_size}"
        if self.num_layers > 1:
            text += f" {self.num_layers}L"
        if self.bidirectional:
            text += " bi"
        return text


CASES: Dict[str, Case] = {
    c.name: c
    for c in (
        Case("S1", 1, 100, 64, 128),
        Case("S2", 1, 200, 256, 512, num_layers=2),
        Case("S3", 32, 100, 256, 512, num_layers=2),
        Case("S4", 64, 50, 1024, 1024),
        Case("S5", 8, 100, 128, 256, num_layers=2, bidirectional=True),
        Case("S6", 8, 100, 256, 1024, num_layers=2, proj_size=256),
        Case("S7", 1, 1, 256, 256, mode="stream", calls=1000),
        Case("X1", 32, 100, 256, 512, num_layers=2, mode="packed", min_steps=50),
    )
}


# The GPU cases (python -m fastlstm bench --device cuda), with S3 and S4 of the CPU table.
GPU_CASES: Dict[str, Case] = {
    c.name: c
    for c in (
        Case("G1", 1, 100, 1024, 1024, num_layers=2),
        Case("G64", 64, 100, 1024, 1024, num_layers=2),
        Case("G256", 256, 100, 1024, 1024, num_layers=2),
        CASES["S3"],
        CASES["S4"],
    )
}


# --------------------------------------------------------------------------------------- timing
def _time_once(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def calibrate(fn: Callable[[], Any], min_time: float, max_number: int = 10_000) -> int:
    """How many calls make one timed sample last at least `min_time` seconds."""
    once = _time_once(fn, 1)
    if once >= min_time:
        return 1
    return int(min(max_number, math.ceil(min_time / max(once, 1e-7))))


def settle(min_gap: float = 0.01, max_wait: float = 1.0, window: float = 0.005) -> float:
    """Sleeps at least `min_gap`, then until this process's threads are idle (under 5 % of a core
    over `window`) or `max_wait` has passed; returns the seconds waited. ONNX Runtime's workers,
    for one, spin for tens of milliseconds after a run and would steal a core from the next tool."""
    start = time.perf_counter()
    time.sleep(min_gap)
    while time.perf_counter() - start < max_wait:
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(window)
        if time.process_time() - cpu < 0.05 * (time.perf_counter() - wall):
            break
    return time.perf_counter() - start


def interleaved(
    fns: Dict[str, Callable[[], Any]],
    repeats: int,
    min_time: float = 0.05,
    gap: float = 0.01,
    progress: Optional[Callable[[str], None]] = None,
    probes: Optional[Dict[str, Callable[[], float]]] = None,
) -> Dict[str, dict]:
    """Times every function round-robin, `repeats` samples each; per tool: median seconds per call,
    all samples and calls per sample. An untimed pause between samples (`gap` at least, then until
    the process is idle, see settle) lets the previous tool's spinning worker threads go idle before
    the next tool starts; one untimed call then precedes each sample, so that waking a tool's
    sleeping workers (which can cost fastlstm ~10 ms at 2 threads) is not part of the sample.
    `probes` take a sample of their own in every round (each returns the seconds it measured)."""
    probes = probes or {}
    numbers = {}
    for name, fn in fns.items():
        settle(gap)
        fn()  # untimed: the first call after idle wakes sleeping worker threads
        numbers[name] = calibrate(fn, min_time)
    samples: Dict[str, List[float]] = {name: [] for name in [*fns, *probes]}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            for name, fn in fns.items():
                if progress:
                    progress(f"{name} {rep + 1}/{repeats}")
                settle(gap)
                fn()  # untimed warm call, so a sample measures steady state, not wake-up
                samples[name].append(_time_once(fn, numbers[name]))
            for name, probe in probes.items():
                settle(gap)
                samples[name].append(probe())
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        name: {"median_s": float(np.median(s)), "samples_s": s, "calls_per_sample": numbers.get(name, 1)}
        for name, s in samples.items()
    }


class ForeignLoad:
    """CPU time that other processes used while a block ran, from /proc/stat (Linux): the busy
    time of every core minus this process's own. Divided by the wall time it is the number of
    cores others kept busy, a direct measure of how noisy the measurement was (None elsewhere)."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
        times = os.times()
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), times.user + times.system

    def cores(self, also_ours: float = 0.0) -> Optional[float]:
        """`also_ours`: CPU seconds that this benchmark's own child processes used meanwhile."""
        end = self._read()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        foreign = (end[1] - self.start[1]) - (end[2] - self.start[2]) - also_ours
        return max(0.0, foreign) / (end[0] - self.start[0])


def gemm_rate(threads: Optional[int], size: int = GEMM_SIZE, repeats: int = 7) -> Tuple[float, str]:
    """NumPy float32 GEMM rate in GFLOP/s (median over `repeats` size^3 matmuls) with `threads` BLAS
    threads, measured in a child process so the BLAS thread count can be set; falls back to this
    process (BLAS's own thread count) if the child fails. Returns (rate, how it was measured)."""
    code = (
        "import sys, time, numpy as np\n"
        "n, reps = int(sys.argv[1]), int(sys.argv[2])\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.standard_normal((n, n), dtype=np.float32)\n"
        "b = rng.standard_normal((n, n), dtype=np.float32)\n"
        "c = np.empty((n, n), dtype=np.float32)\n"
        "np.matmul(a, b, out=c)\n"
        "ts = []\n"
        "for _ in range(reps):\n"
        "    t = time.perf_counter(); np.matmul(a, b, out=c); ts.append(time.perf_counter() - t)\n"
        "print(2.0 * n ** 3 / float(np.median(ts)) / 1e9)\n"
    )
    env = dict(os.environ)
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
            env[var] = str(threads)
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, str(size), str(repeats)],
            env=env, capture_output=True, text=True, timeout=600, check=True,
        )
        return float(result.stdout.strip().splitlines()[-1]), f"{threads or 'default'} BLAS threads"
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        c = np.empty_like(a)
        np.matmul(a, a, out=c)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            np.matmul(a, a, out=c)
            ts.append(time.perf_counter() - t)
        return 2.0 * size**3 / float(np.median(ts)) / 1e9, "in-process, BLAS default threads"


# --------------------------------------------------------------------------------------- peers
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


# --------------------------------------------------------------------------------------- a case
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


def _max_diff(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> float:
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
            module, t_packed = prep.torch_module, d["t_packed"]

            def run_torch():
                with torch.no_grad():
                    return module(t_packed)

            def check_torch():
                out, (h, c) = run_torch()
                padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=case.steps)
                return {"output": padded.numpy(), "h_n": h.numpy(), "c_n": c.numpy()}

            tools.append(Tool("torch", run_torch, check_torch))
        return tools

    def check_fast():
        out, (h, c) = model(x)
        return {"output": out, "h_n": h, "c_n": c}

    tools.append(Tool("fastlstm", lambda: model(x), check_fast))
    if prep.torch_module is not None:
        module, t_x = prep.torch_module, d["t_x"]

        def run_torch():
            with torch.no_grad():
                return module(t_x)

        def check_torch():
            out, (h, c) = run_torch()
            return {"output": out.numpy(), "h_n": h.numpy(), "c_n": c.numpy()}

        tools.append(Tool("torch", run_torch, check_torch))
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


# --------------------------------------------------------------------------------------- memory
def _proc_status_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field_name}")


def _reset_peak_rss() -> bool:
    """Resets the process's peak RSS (VmHWM) to its current RSS; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_status_kb("VmHWM") <= _proc_status_kb("VmRSS") + 64
    except OSError:
        return False


def memory_probe(params: dict) -> Optional[dict]:
    """Runs in a fresh process (see measure_memory): builds the case's model, runs one forward and
    reads the RSS growth of each from /proc/self/status (kB)."""
    if not _reset_peak_rss():
        return None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((params["L"], params["N"], params["I"]), dtype=np.float32)
    arg = fastlstm.pack_padded_sequence(x, np.array(params["lengths"])) if params["lengths"] else x
    gc.collect()
    before = _proc_status_kb("VmRSS")
    model = fastlstm.LSTM(params["I"], params["H"], params["num_layers"], bidirectional=params["bidirectional"],
                          proj_size=params["proj_size"], num_threads=params["threads"])
    loaded = _proc_status_kb("VmRSS")
    _reset_peak_rss()
    output, (h_n, c_n) = model(arg)
    peak = _proc_status_kb("VmHWM")
    data = output.data if params["lengths"] else output
    return {"model_kb": loaded - before, "forward_peak_kb": peak - loaded,
            "output_bytes": data.nbytes + h_n.nbytes + c_n.nbytes,
            "weights_bytes": sum(p.nbytes for p in model.parameters()),
            "input_bytes": arg.data.nbytes if params["lengths"] else x.nbytes}


def measure_memory(prep: Prepared, threads: int) -> Optional[dict]:
    """Resident memory of a fresh model and of its first forward pass (MB), measured in a fresh
    Python process whose allocator returns every large block to the system (Linux only). The
    forward's peak beyond its output is its workspace: the gate buffers (O(N * 4H) per thread) and,
    for stacked layers, the buffers between layers (see _layer_buffer_bytes)."""
    case = prep.case
    if case.mode == "stream" or not sys.platform.startswith("linux"):
        return None
    params = {"N": case.batch, "L": case.steps, "I": case.input_size, "H": case.hidden_size,
              "num_layers": case.num_layers, "bidirectional": case.bidirectional, "proj_size": case.proj_size,
              "threads": threads, "lengths": case.lengths().tolist() if case.mode == "packed" else None}
    code = ("import json, sys; from fastlstm.benchmark import memory_probe; "
            "print(json.dumps(memory_probe(json.loads(sys.argv[1]))))")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(params)], env=env, capture_output=True,
                              text=True, timeout=600, check=True)
        probe = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    if probe is None:
        return None
    mb = 1 / 2**20
    workspace = max(probe["forward_peak_kb"] * 1024 - probe["output_bytes"], 0)
    step_gates = case.batch * 4 * case.hidden_size * case.directions * 4  # one step's gates, float32
    return {
        "weights_mb": probe["weights_bytes"] * mb,
        "model_mb": probe["model_kb"] / 1024,  # weights + the backend's packed copy
        "input_mb": probe["input_bytes"] * mb,
        "output_mb": probe["output_bytes"] * mb,
        "forward_peak_mb": probe["forward_peak_kb"] / 1024,
        "workspace_mb": workspace * mb,
        "workspace_in_step_gates": workspace / step_gates,
        "layer_buffer_mb": _layer_buffer_bytes(case) * mb,
    }


def _layer_buffer_bytes(case: Case) -> int:
    """The activations kept between stacked layers, by the backend's design (not measured): a
    bidirectional stack keeps a layer's whole output (two buffers from 3 layers on); a
    unidirectional one runs chunk by chunk and keeps, per layer below the last, one chunk of
    steps (about 512 rows, see cpu_backend.cpp) and the step before it."""
    if case.num_layers < 2:
        return 0
    row_bytes = case.directions * case.h_out * 4
    if case.bidirectional:
        return min(case.num_layers - 1, 2) * case.steps * case.batch * row_bytes
    chunk = min(case.steps, -(-512 // case.batch))
    return (case.num_layers - 1) * (chunk + 1) * case.batch * row_bytes


class GemmProbe:
    """NumPy's float32 GEMM, sampled between the tools' samples so that %GEMM compares rates the
    machine gave in the same minutes (on a shared machine the rate moves by 30 % between runs). A
    child process, because the BLAS thread count must be set before NumPy loads: per request it
    runs one size^3 matmul, waits until its BLAS threads stop spinning, and answers the matmul's
    seconds. `cpu_seconds` is the CPU time the child has used (not the machine's other load).
    `start` gives None when the child cannot run."""

    CODE = (
        "import sys, time, numpy as np\n"
        "n = int(sys.argv[1])\n"
        "rng = np.random.default_rng(0)\n"
        "a = rng.standard_normal((n, n), dtype=np.float32)\n"
        "b = rng.standard_normal((n, n), dtype=np.float32)\n"
        "c = np.empty((n, n), dtype=np.float32)\n"
        "np.matmul(a, b, out=c)\n"
        "print('ready', time.process_time(), flush=True)\n"
        "for line in sys.stdin:\n"
        "    t = time.perf_counter(); np.matmul(a, b, out=c); seconds = time.perf_counter() - t\n"
        "    for _ in range(200):  # until the process is idle (its BLAS threads spin after a call)\n"
        "        cpu, wall = time.process_time(), time.perf_counter(); time.sleep(0.005)\n"
        "        if time.process_time() - cpu < 0.05 * (time.perf_counter() - wall): break\n"
        "    print(seconds, time.process_time(), flush=True)\n"
    )

    def __init__(self, process: subprocess.Popen, cpu_seconds: float) -> None:
        self.process = process
        self.cpu_seconds = cpu_seconds

    @classmethod
    def start(cls, threads: int, size: int = GEMM_SIZE) -> Optional["GemmProbe"]:
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
            env[var] = str(threads)
        try:
            process = subprocess.Popen([sys.executable, "-c", cls.CODE, str(size)], env=env, text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            return None
        assert process.stdout is not None
        words = process.stdout.readline().split()
        if len(words) != 2 or words[0] != "ready":
            process.kill()
            process.wait()
            return None
        return cls(process, float(words[1]))

    def __call__(self) -> float:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        seconds, self.cpu_seconds = map(float, self.process.stdout.readline().split())
        return seconds

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_case(
    prep: Prepared, threads: int, repeats: int, torch, ort, gemm: Optional[float],
    min_time: float, progress: Callable[[str], None],
) -> List[dict]:
    """Verifies and times one case at one thread count; one row per fastlstm variant."""
    case = prep.case
    if torch is not None:
        torch.set_num_threads(threads)
    progress("measuring memory")
    memory = measure_memory(prep, threads)
    progress("preparing")
    tools = make_tools(prep, threads, torch, ort)
    fast = [t for t in tools if t.name.startswith("fastlstm")]
    peers = [t for t in tools if not t.name.startswith("fastlstm")]

    progress("verifying")
    results = {t.name: t.check() for t in tools}  # also the first warm-up call
    diffs = {f.name: {p.name: _max_diff(results[f.name], results[p.name]) for p in peers} for f in fast}
    failures = [
        f"{f} vs {p}: max |diff| {v:.3g} > {TOLERANCE:g}"
        for f, per in diffs.items() for p, v in per.items() if not v <= TOLERANCE
    ]
    timings: Dict[str, dict] = {}
    foreign = None
    gemm_samples: List[float] = []  # GFLOP/s, when sampled between the tools'
    if not failures:
        for t in tools:  # second warm-up: workspaces, thread pools, caches
            t.call()
        probe = GemmProbe.start(threads)
        probe_cpu = probe.cpu_seconds if probe else 0.0
        load = ForeignLoad()
        try:
            timings = interleaved({t.name: t.call for t in tools}, repeats, min_time, progress=progress,
                                  probes={GEMM_PROBE: probe} if probe else None)
        finally:
            if probe:
                probe.close()
        foreign = load.cores(also_ours=probe.cpu_seconds - probe_cpu if probe else 0.0)
        if GEMM_PROBE in timings:  # the rate of this case's own minutes, not the run's start
            gemm_samples = [2.0 * GEMM_SIZE**3 / s / 1e9 for s in timings.pop(GEMM_PROBE)["samples_s"]]
            gemm = float(np.median(gemm_samples))

    per_call = case.calls if case.mode == "stream" else 1  # stream rows are per step
    flops = case.flops_per_token() * case.tokens()
    rows = []
    for f in fast:
        row: Dict[str, Any] = {
            "case": case.name if f.name == "fastlstm" else f"{case.name}-{f.name.split('-', 1)[1]}",
            "variant": f.name,
            "config": case.describe() + VARIANT_LABELS.get(f.name, ""),
            "params": {
                "N": case.batch, "L": case.steps, "I": case.input_size, "H": case.hidden_size,
                "num_layers": case.num_layers, "bidirectional": case.bidirectional,
                "proj_size": case.proj_size, "mode": case.mode, "calls": case.calls,
                "lengths": case.lengths().tolist() if case.mode == "packed" else None,
            },
            "threads": threads,
            "tokens": case.tokens(),
            "flops_per_unit": flops,
            "per": "step" if case.mode == "stream" else "call",
            "max_abs_diff": diffs[f.name],
            "skipped_peers": dict(prep.skipped),
            "status": "FAILED: " + "; ".join(failures) if failures else "ok",
            "foreign_load": None if failures else foreign,
            "memory": memory if f.name == "fastlstm" else None,
            "ms": {},
            "samples_ms": {},
            "calls_per_sample": {},
        }
        if not failures:
            for name in [f.name] + [p.name for p in peers]:
                tm = timings[name]
                row["ms"][name.split("-")[0] if name == f.name else name] = tm["median_s"] * 1e3 / per_call
                row["samples_ms"][name] = [s * 1e3 / per_call for s in tm["samples_s"]]
                row["calls_per_sample"][name] = tm["calls_per_sample"]
            seconds = timings[f.name]["median_s"]
            row["gflops"] = flops / seconds / 1e9
            row["gemm_gflops"] = gemm
            row["gemm_samples_gflops"] = gemm_samples
            row["pct_gemm"] = 100.0 * row["gflops"] / gemm if gemm else None
            peer_ms = {p: row["ms"][p] for p in PEERS if p in row["ms"]}
            if peer_ms:
                best = min(peer_ms, key=lambda peer: peer_ms[peer])
                row["best_peer"] = best
                row["speedup"] = peer_ms[best] / row["ms"]["fastlstm"]
                row["speedup_vs"] = {p: v / row["ms"]["fastlstm"] for p, v in peer_ms.items()}
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------- reporting
def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "cpu_model": model,
        "load_average": load,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# Environment variables that change which code the tools run or how many threads they take.
TUNING_VARIABLES = ("FASTLSTM_ISA", "FASTLSTM_CUDA_GRAPHS", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                    "ATEN_CPU_CAPABILITY")


def tuning_environment() -> Dict[str, str]:
    """The TUNING_VARIABLES this run has set: a result is not comparable without them."""
    return {name: os.environ[name] for name in TUNING_VARIABLES if name in os.environ}


def versions(torch, ort) -> dict:
    return {
        "fastlstm": fastlstm.__version__,
        "numpy": np.__version__,
        "torch": getattr(torch, "__version__", None),
        "onnxruntime": getattr(ort, "__version__", None),
    }


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _fmt_ms(value: Optional[float]) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value < 0.1 else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def format_table(rows: List[dict], peers: Sequence[str]) -> str:
    header = ["case", "thr", "config", "fastlstm ms", "GFLOP/s", "GEMM", "%GEMM"]
    header += [f"{p} ms" for p in peers] + ["speedup", "vs"] + [f"diff {p}" for p in peers] + ["other"]
    lines = []
    for r in rows:
        ms = r["ms"]
        line = [r["case"], str(r["threads"]), r["config"] + (" (per step)" if r["per"] == "step" else "")]
        if r["status"] != "ok":
            line += ["FAILED"] + [""] * (5 + len(peers))
        else:
            line += [_fmt_ms(ms.get("fastlstm")), _fmt(r.get("gflops"), ".1f"), _fmt(r.get("gemm_gflops"), ".0f"),
                     _fmt(r.get("pct_gemm"), ".0f")]
            line += [_fmt_ms(ms.get(p)) for p in peers]
            line += [_fmt(r.get("speedup"), ".2f") + ("x" if r.get("speedup") else ""), r.get("best_peer", "-")]
        line += [_fmt(r["max_abs_diff"].get(p), ".1e") for p in peers]
        line.append(_fmt(r.get("foreign_load"), ".2f"))
        lines.append(line)
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(header)]
    left = {0, 2, len(header) - len(peers) - 2}

    def render(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [render(header), render(["-" * w for w in widths])] + [render(l) for l in lines]
    return "\n".join(line.rstrip() for line in out)


def format_memory_table(rows: List[dict]) -> str:
    """Resident memory per case (MB): the model, and the first forward's peak beyond its output."""
    header = ["case", "thr", "weights", "model", "input", "output", "fwd peak", "workspace",
              "of which layer buffer", "workspace / (N*4H*D floats)"]
    lines = []
    for r in rows:
        m = r.get("memory")
        if not m:
            continue
        lines.append([r["case"], str(r["threads"])] + [
            f"{m[k]:.2f}" for k in ("weights_mb", "model_mb", "input_mb", "output_mb", "forward_peak_mb",
                                    "workspace_mb", "layer_buffer_mb")
        ] + [f"{m['workspace_in_step_gates']:.1f}"])
    if not lines:
        return ""
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]

    def render(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([render(header), render(["-" * w for w in widths])] + [render(l) for l in lines])


def plot_speedups(rows: List[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = [r for r in rows if r.get("speedup_vs")]
    peers = [p for p in PEERS if any(p in r["speedup_vs"] for r in rows)]
    if not rows or not peers:
        raise ValueError("no speedups to plot (no peer was timed)")
    labels = [f"{r['case']}\n{r['threads']}t" for r in rows]
    width = 0.8 / len(peers)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 1.5), 3.6), dpi=100)
    colors = {"torch": "#ee4c2c", "ort": "#4a7ebb"}
    for k, peer in enumerate(peers):
        xs = [i + (k - (len(peers) - 1) / 2) * width for i in range(len(rows))]
        ys = [r["speedup_vs"].get(peer, 0.0) for r in rows]
        bars = ax.bar(xs, ys, width, label=f"vs {peer}", color=colors.get(peer))
        for bar, y in zip(bars, ys):
            if y:
                ax.annotate(f"{y:.1f}", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom", fontsize=6)
    ax.axhline(1.0, color="black", linewidth=0.8)
    # Log scale: per-call overheads make some speedups 10x those of the rest, and 0.8x and 1.25x
    # should look equally far from 1.
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x"))
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("speedup of fastlstm (log scale)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, stream=sys.stderr, enabled: bool = True):
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.prefix = ""
        self.width = 0

    def stage(self, prefix: str) -> None:
        self.prefix = prefix
        if self.enabled and not self.tty:
            print(f"[{time.perf_counter() - self.start:6.1f}s] {prefix}", file=self.stream, flush=True)
        self(("starting"))

    def __call__(self, detail: str) -> None:
        if not self.tty:
            return
        text = f"[{time.perf_counter() - self.start:6.1f}s] {self.prefix}: {detail}"
        self.stream.write("\r" + text.ljust(self.width))
        self.width = len(text)
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


# --------------------------------------------------------------------------------------- CLI
def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _case_list(text: str) -> List[str]:
    known = {**CASES, **GPU_CASES}
    names = [v.strip().upper() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown case(s) {', '.join(unknown) or text!r}; choose from {', '.join(known)}"
        )
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cases = "; ".join(f"{c.name}: {c.describe()}" for c in CASES.values())
    gpu_cases = ", ".join(f"{c.name}: {c.describe()}" for c in GPU_CASES.values() if c.name.startswith("G"))
    parser.add_argument("--cases", type=_case_list, default=None,
                        help=f"comma-separated cases (default: all of the device's). CPU: {cases}. "
                             f"GPU: {gpu_cases}; S3, S4")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu (default): against torch and ONNX Runtime on the CPU; cuda: against "
                             "torch's cuDNN LSTM on the first GPU")
    parser.add_argument("--threads", type=_int_list, default=None,
                        help="comma-separated thread counts; each case runs at each "
                             "(default: fastlstm's default, every core)")
    parser.add_argument("--repeats", type=int, default=5, help="timed samples per tool (default 5)")
    parser.add_argument("--min-time", type=float, default=0.05,
                        help="seconds a timed sample lasts at least; short calls are repeated (default 0.05)")
    parser.add_argument("--json", metavar="PATH", help="write all numbers and machine info as JSON")
    parser.add_argument("--plot", metavar="PATH", help="bar chart of speedups (PNG; needs matplotlib)")
    parser.add_argument("--no-torch", action="store_true", help="leave torch (and ORT, which needs it) out")
    parser.add_argument("--no-ort", action="store_true", help="leave ONNX Runtime out")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns the exit status (1 when an output check failed)."""
    if args.device == "cuda":
        from .benchmark_cuda import run as run_cuda

        return run_cuda(args)
    if args.cases is None:
        args.cases = list(CASES)
    gpu_only = [name for name in args.cases if name not in CASES]
    if gpu_only:
        print(f"error: {', '.join(gpu_only)}: GPU case(s); run them with --device cuda", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        # torch: "LSTM with projections is not supported with oneDNN" (S6), once per process
        warnings.filterwarnings("ignore", message=".*not supported with oneDNN.*")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        print("error: --repeats must be >= 1", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2
    torch = None if args.no_torch else import_torch()
    ort = None if args.no_ort or torch is None else import_ort()
    threads_list = args.threads or [fastlstm.build_info()["default_threads"]]
    info = fastlstm.build_info()
    machine = machine_info()
    vers = versions(torch, ort)
    progress = Progress(enabled=not args.quiet)
    started = datetime.datetime.now().astimezone()

    print(f"fastlstm {info['version']} ({info['compiler']}, {info['simd']})  numpy {vers['numpy']}  "
          f"torch {vers['torch'] or 'not found'}  onnxruntime {vers['onnxruntime'] or 'not found'}")
    print(f"CPU: {machine['cpu_model']}, {machine['usable_cores']} usable cores; "
          f"load average {machine['load_average'] or '?'}; {started:%Y-%m-%d %H:%M %Z}")
    environment = tuning_environment()
    if environment:
        print("environment: " + " ".join(f"{name}={value}" for name, value in environment.items()))

    gemm: Dict[int, float] = {}
    gemm_how: Dict[int, str] = {}
    for t in threads_list:
        progress.stage(f"NumPy GEMM {GEMM_SIZE}^3, {t} threads")
        gemm[t], gemm_how[t] = gemm_rate(t)
    progress.done()
    print("NumPy float32 GEMM (2048^3): " + ", ".join(f"{gemm[t]:.1f} GFLOP/s at {t} thread(s)" for t in threads_list))

    rows: List[dict] = []
    skipped_cases: Dict[str, str] = {}
    for name in args.cases:
        case = CASES[name]
        if case.mode == "packed" and not hasattr(fastlstm, "pack_padded_sequence"):
            skipped_cases[name] = "fastlstm.pack_padded_sequence does not exist in this build yet"
            continue
        progress.stage(f"{name} preparing")
        prep = prepare(case, torch, ort)
        for t in threads_list:
            progress.stage(f"{name} {t} thread(s)")
            case_rows = run_case(prep, t, args.repeats, torch, ort, gemm.get(t), args.min_time, progress)
            for r in case_rows:
                if r["status"] != "ok":
                    progress.done()
                    print(f"\n*** {r['case']} ({t} threads) {r['status']} ***\n", file=sys.stderr)
            rows.extend(case_rows)
        del prep
        gc.collect()
    progress.done()

    peers = [p for p in PEERS if any(p in r["ms"] or p in r["max_abs_diff"] for r in rows)]
    print()
    print(format_table(rows, peers))
    memory_table = format_memory_table(rows)
    if memory_table:
        print("\nMemory (MB, resident; Linux peak RSS of a fresh model's first forward):")
        print(memory_table)
    notes = []
    if any(r["per"] == "step" for r in rows):
        notes.append("per step: the time of one L=1 call carrying (h, c); GFLOP/s likewise per step.")
    if any(r["variant"] == "fastlstm-stream" for r in rows):
        notes.append("-stream: fastlstm's streaming API (lstm.stream().step(x_t), the state kept in the stream) on "
                     "the same steps, compared with the peers' L=1 calls.")
    if any(r["variant"] == "fastlstm-padded" for r in rows):
        notes.append("-padded: fastlstm on the zero-padded batch (L=100 for every sequence), compared with the "
                     "packed peers; GFLOP/s counts real tokens only.")
    notes.append("speedup = best peer's median ms / fastlstm's median ms; GFLOP/s = fastlstm's; "
                 "GEMM = NumPy's float32 GEMM rate (2048^3, GFLOP/s) at the same thread count, sampled between the row's "
                 "own samples (the line above the table: at the start of the run); %GEMM = GFLOP/s as a share of it.")
    if memory_table:
        notes.append("memory: model = RSS growth when the model is built (weights + the backend's packed copy); "
                     "fwd peak = peak RSS growth during its first forward; workspace = fwd peak - output "
                     "(gate buffers and, for stacked layers, the activations between layers: a chunk of steps "
                     "per layer when unidirectional, the whole L*N*D*H_out output when bidirectional; "
                     "'layer buffer' is that part, by design, not measured).")
    notes.append("other = cores that other processes kept busy while the row was timed (/proc/stat); "
                 "above ~0.1 the row's timings are disturbed.")
    reasons: Dict[str, List[str]] = {}
    for r in rows:
        for peer, why in r["skipped_peers"].items():
            reasons.setdefault(f"{peer}: {why}", [])
            if r["case"] not in reasons[f"{peer}: {why}"]:
                reasons[f"{peer}: {why}"].append(r["case"])
    for why, names in reasons.items():
        notes.append(f"skipped {why} ({', '.join(names)})")
    for name, why in skipped_cases.items():
        notes.append(f"{name} skipped: {why}")
    if torch is None and not args.no_torch:
        notes.append("torch not found: only fastlstm was timed (no output check)")
    print()
    for note in notes:
        print("  * " + note)

    failed = [r for r in rows if r["status"] != "ok"]
    machine["load_average_end"] = machine_info()["load_average"]
    if args.json:
        report = {
            "date": started.isoformat(timespec="seconds"),
            "command": list(getattr(sys, "orig_argv", sys.argv)),
            "environment": environment,
            "machine": machine,
            "versions": vers,
            "build_info": info,
            "settings": {"cases": args.cases, "threads": threads_list, "repeats": args.repeats,
                         "min_time_s": args.min_time, "tolerance": TOLERANCE},
            "gemm_gflops": {str(t): gemm[t] for t in threads_list},
            "gemm_method": {str(t): gemm_how[t] for t in threads_list},
            "rows": rows,
            "skipped_cases": skipped_cases,
            "notes": notes,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {args.json}")
    if args.plot:
        try:
            title = (f"fastlstm {info['version']} speedup, {machine['cpu_model']}, "
                     f"{started:%Y-%m-%d}")
            plot_speedups(rows, args.plot, title)
            print(f"wrote {args.plot}")
        except ValueError as error:
            print(f"no plot: {error}", file=sys.stderr)
    if failed:
        print(f"\nerror: output check failed for {', '.join(r['case'] for r in failed)} "
              f"(tolerance {TOLERANCE:g})", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
