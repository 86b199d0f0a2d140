"""The benchmark's report: the machine, the environment, the tables, the plot, the progress line."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

import fastlstm

from .runner import PEERS


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
    info = fastlstm.build_info()
    return {
        "cpu_model": model,
        "load_average": load,
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "default_threads": info["default_threads"],
        "threads_source": info["threads_source"],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


# Environment variables that change which code the tools run or how many threads they take.
TUNING_VARIABLES = ("FASTLSTM_ISA", "FASTLSTM_NUM_THREADS", "FASTLSTM_CGROUP_ROOT", "FASTLSTM_CUDA_GRAPHS", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
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
