"""``python -m fastlstm bench``: the arguments and the run over the cases."""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import sys
import warnings
from typing import Dict, List, Optional, Sequence


import fastlstm

from .cases import CASES, GPU_CASES
from .peers import import_ort, import_torch, prepare
from .quantized import parse_formats
from .streams import add_arguments as add_stream_arguments
from .report import (
    Progress, format_memory_table, format_table, machine_info, plot_speedups, tuning_environment, versions,
)
from .runner import PEERS, TOLERANCE, run_case
from .timing import GEMM_SIZE, gemm_rate


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
    parser.add_argument("--weights", type=parse_formats, default=None, metavar="FORMATS",
                        help="comma-separated reduced-precision formats (int8, int8-in8: 8-bit inputs, float16, bfloat16): time "
                             "fastlstm's models of each against float32 and the peers' quantized LSTMs "
                             "(torch qint8 / float16, ONNX Runtime int8), with each one's error")
    add_stream_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns the exit status (1 when an output check failed)."""
    if args.device == "cuda":
        from .cuda import run as run_cuda

        return run_cuda(args)
    if args.streams:
        from .streams import run as run_streams

        return run_streams(args)
    if args.weights:
        from .quantized import run as run_quantized

        return run_quantized(args)
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
    print(f"CPU: {machine['cpu_model']}, {machine['usable_cores']} usable cores; default threads "
          f"{machine['default_threads']} ({machine['threads_source']}); load average {machine['load_average'] or '?'}; {started:%Y-%m-%d %H:%M %Z}")
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
    parser = argparse.ArgumentParser(
        prog=prog, description="Benchmark of fastlstm against torch.nn.LSTM and ONNX Runtime (see benchmarks/README.md)."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
