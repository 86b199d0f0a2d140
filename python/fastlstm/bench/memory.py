"""Peak memory of a forward pass, each tool measured in a fresh process."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from typing import Optional

import numpy as np

import fastlstm

from .cases import Case
from .peers import Prepared


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
