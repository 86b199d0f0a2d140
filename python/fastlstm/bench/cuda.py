"""GPU benchmark: fastlstm's CUDA backend against torch's cuDNN LSTM on the same GPU.

Run it as ``python -m fastlstm bench --device cuda [--cases G1,G64,G256,S3,S4] [--repeats N]``.
Both tools run the same float32 model (TF32 off on both sides) on the same torch CUDA tensors;
fastlstm reads them in place and returns torch tensors. Outputs are compared before timing; timed
samples alternate between the tools, each sample synchronises the device, and the median is
reported with the ratio fastlstm / cuDNN. Goals: at most 1.0x cuDNN's time at N >= 64, at most
1.5x at N = 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import warnings
from typing import Any, Dict, List

import numpy as np

import fastlstm

from .cases import GPU_CASES, Case
from .report import Progress, machine_info
from .timing import interleaved

TOLERANCE = 1e-4


def _goal(case: Case) -> float:
    return 1.5 if case.batch == 1 else 1.0


def _run_case(case: Case, torch, repeats: int, min_time: float, progress) -> Dict[str, Any]:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.nn.LSTM(case.input_size, case.hidden_size, case.num_layers,
                               bidirectional=case.bidirectional, proj_size=case.proj_size).eval()
    model = fastlstm.LSTM.from_torch(module, device="cuda:0")
    module = module.to("cuda:0")
    x = torch.randn(case.steps, case.batch, case.input_size, device="cuda:0")

    def run_fast():
        return model(x)  # synchronises before it returns

    def run_cudnn():
        with torch.no_grad():
            result = module(x)
        torch.cuda.synchronize()
        return result

    progress("verifying")
    out, (h, c) = run_fast()
    ref_out, (ref_h, ref_c) = run_cudnn()
    diff = max(float((a - b).abs().max()) for a, b in ((out, ref_out), (h, ref_h), (c, ref_c)))
    row: Dict[str, Any] = {"case": case.name, "config": case.describe(), "N": case.batch, "max_abs_diff": diff}
    if not diff <= TOLERANCE:
        row["status"] = f"FAILED: max |diff| {diff:.3g} > {TOLERANCE:g}"
        return row
    timings = interleaved({"fastlstm": run_fast, "cudnn": run_cudnn}, repeats, min_time, progress=progress)
    fast_ms = timings["fastlstm"]["median_s"] * 1e3
    cudnn_ms = timings["cudnn"]["median_s"] * 1e3
    flops = case.flops_per_token() * case.tokens()
    row.update(
        status="ok", fastlstm_ms=fast_ms, cudnn_ms=cudnn_ms, ratio=fast_ms / cudnn_ms, goal=_goal(case),
        fastlstm_tflops=flops / (fast_ms * 1e-3) / 1e12, cudnn_tflops=flops / (cudnn_ms * 1e-3) / 1e12,
        samples_ms={name: [v * 1e3 for v in t["samples_s"]] for name, t in timings.items()},
    )
    row["goal_met"] = row["ratio"] <= row["goal"]
    return row


def _format(rows: List[dict]) -> str:
    header = ["case", "config", "fastlstm ms", "cuDNN ms", "ratio", "goal", "met", "TFLOP/s", "diff"]
    lines = []
    for r in rows:
        if r["status"] != "ok":
            lines.append([r["case"], r["config"], "FAILED", "", "", "", "", "", f"{r['max_abs_diff']:.1e}"])
            continue
        lines.append([r["case"], r["config"], f"{r['fastlstm_ms']:.3f}", f"{r['cudnn_ms']:.3f}", f"{r['ratio']:.2f}x",
                      f"<= {r['goal']:.1f}x", "yes" if r["goal_met"] else "NO", f"{r['fastlstm_tflops']:.2f}",
                      f"{r['max_abs_diff']:.1e}"])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def render(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([render(header), render(["-" * w for w in widths])] + [render(line) for line in lines])


def run(args: argparse.Namespace) -> int:
    if not fastlstm.cuda_available():
        print(f"error: the GPU benchmark needs CUDA: {fastlstm.cuda_unavailable_reason()}", file=sys.stderr)
        return 2
    try:
        import torch
    except ImportError:
        print("error: the GPU benchmark compares with torch's cuDNN LSTM: install torch with CUDA", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"error: torch {torch.__version__} has no CUDA here; the GPU benchmark needs a CUDA build of torch",
              file=sys.stderr)
        return 2
    names = args.cases or list(GPU_CASES)
    unknown = [n for n in names if n not in GPU_CASES]
    if unknown:
        print(f"error: {', '.join(unknown)}: not GPU cases (choose from {', '.join(GPU_CASES)})", file=sys.stderr)
        return 2
    torch.backends.cudnn.allow_tf32 = False  # float32 on both sides
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.cuda.get_device_name(0)
    started = datetime.datetime.now().astimezone()
    print(f"fastlstm {fastlstm.__version__}  torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()})")
    print(f"GPU: {device}; {fastlstm.build_info()['cuda']}; {started:%Y-%m-%d %H:%M %Z}")
    progress = Progress(enabled=not args.quiet)
    rows = []
    for name in names:
        progress.stage(name)
        rows.append(_run_case(GPU_CASES[name], torch, args.repeats, args.min_time, progress))
        torch.cuda.empty_cache()
    progress.done()
    print()
    print(_format(rows))
    print("\n  * float32, TF32 off on both sides; ratio = fastlstm's median ms / cuDNN's (lower is better); "
          "each call waits for the GPU; inputs are torch CUDA tensors read in place.")
    if args.json:
        report = {
            "date": started.isoformat(timespec="seconds"),
            "command": list(getattr(sys, "orig_argv", sys.argv)),
            "gpu": device,
            "machine": machine_info(),
            "versions": {"fastlstm": fastlstm.__version__, "torch": torch.__version__,
                         "cudnn": torch.backends.cudnn.version(), "numpy": np.__version__},
            "settings": {"cases": names, "repeats": args.repeats, "min_time_s": args.min_time},
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {args.json}")
    failed = [r["case"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"\nerror: output check failed for {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
