"""One case at one thread count: verified, timed with the GEMM probe between samples, measured."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .memory import measure_memory
from .peers import Prepared, max_diff, make_tools
from .timing import ForeignLoad, GEMM_SIZE, GemmProbe, interleaved

TOLERANCE = 1e-4  # max abs difference to a peer above which a case fails
# What the config column adds for fastlstm's variants of a case.
VARIANT_LABELS = {"fastlstm-padded": " padded", "fastlstm-stream": " stream.step"}
GEMM_PROBE = "numpy-gemm"  # the GEMM samples taken between the tools' (GemmProbe)
PEERS = ("torch", "ort")


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
    diffs = {f.name: {p.name: max_diff(results[f.name], results[p.name]) for p in peers} for f in fast}
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
