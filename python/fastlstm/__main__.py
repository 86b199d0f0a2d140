"""``python -m fastlstm``: build facts, a default model timed (and checked against torch when it is
installed). ``python -m fastlstm bench [...]`` runs the benchmark (fastlstm.bench), which only
that command and the default model's timing import; ``python -m fastlstm convert model.onnx
out.safetensors`` writes an ONNX graph's LSTM as a model file."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

import fastlstm

# The default model: 2-layer bidirectional LSTM, 256 -> 512, batch 8, 100 steps, float32.
INPUT, HIDDEN, LAYERS, BATCH, STEPS = 256, 512, 2, 8, 100
TOLERANCE = 1e-5


def self_check(threads: Optional[int], repeats: int) -> int:
    info = fastlstm.build_info()
    print(f"fastlstm {info['version']}")
    print(f"  compiler      {info['compiler']}")
    print(f"  SIMD          {info['simd']}")
    print(f"  threads       {threads or info['default_threads']} (default {info['default_threads']}: "
          f"{info['threads_source']})")
    print(f"  CUDA          {'available' if fastlstm.cuda_available() else 'not available'} ({info['cuda']})")

    from fastlstm.bench.peers import import_torch
    from fastlstm.bench.timing import interleaved

    torch = import_torch()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS, BATCH, INPUT), dtype=np.float32)
    if torch is not None:
        torch.manual_seed(0)
        module = torch.nn.LSTM(INPUT, HIDDEN, LAYERS, bidirectional=True).eval()
        model = fastlstm.LSTM.from_torch(module, num_threads=threads)
    else:
        model = fastlstm.LSTM(INPUT, HIDDEN, LAYERS, bidirectional=True, num_threads=threads)
    print(f"\nmodel  {model!r}, float32, input (L={STEPS}, N={BATCH}, {INPUT}), {model.num_threads} thread(s)")

    output, (h_n, c_n) = model(x)
    print(f"  output {output.shape}, h_n {h_n.shape}, c_n {c_n.shape}")

    fns = {"fastlstm": lambda: model(x)}
    diff = 0.0  # fastlstm against torch, when torch is there
    if torch is None:
        print("  torch not found: timing fastlstm alone (no comparison)")
    else:
        torch.set_num_threads(model.num_threads)
        tx = torch.from_numpy(x)
        with torch.no_grad():
            t_out, (t_h, t_c) = module(tx)
        diff = max(float(np.abs(a - b.numpy()).max()) for a, b in ((output, t_out), (h_n, t_h), (c_n, t_c)))

        def run_torch():
            with torch.no_grad():
                return module(tx)

        fns["torch"] = run_torch
        run_torch()

    timings = interleaved(fns, repeats, min_time=0.0)
    ms = {name: t["median_s"] * 1e3 for name, t in timings.items()}
    print(f"\n  {'':10s}" + "".join(f"{name:>12s}" for name in ms))
    print(f"  {'ms/call':10s}" + "".join(f"{v:12.2f}" for v in ms.values()) + f"   (median of {repeats})")
    if torch is not None:
        print(f"  {'torch':10s}{torch.__version__:>12s}")
        print(f"\n  speedup over torch: {ms['torch'] / ms['fastlstm']:.2f}x")
        verdict = "OK" if diff < TOLERANCE else "FAILED"
        print(f"  max |fastlstm - torch| = {diff:.2e} (tolerance {TOLERANCE:g}): {verdict}")
        if diff >= TOLERANCE:
            print(f"error: fastlstm differs from torch by {diff:.3g} >= {TOLERANCE:g}", file=sys.stderr)
            return 1
    return 0


def print_cmake_dir() -> int:
    """Print where the wheel's CMake package is: the C++ headers and library install next to the
    compiled module (site-packages/fastlstm/{include,lib}), which an editable install keeps apart
    from the Python sources."""
    from fastlstm._native import core as _core

    for package_dir in [Path(_core.__file__).parent, *map(Path, fastlstm.__path__)]:
        config = package_dir / "lib" / "cmake" / "fastlstm" / "fastlstmConfig.cmake"
        if config.is_file():
            print(config.parent)
            return 0
    print("error: this installation of fastlstm has no CMake package (lib/cmake/fastlstm)", file=sys.stderr)
    return 1


def convert(argv: Sequence[str]) -> int:
    """``python -m fastlstm convert model.onnx out.safetensors [--node NAME]``: the model file that
    ``LSTM.load`` and C++'s ``fastlstm::Lstm<T>::load`` read, from an ONNX graph's LSTM."""
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm convert",
        description="Write the LSTM of an ONNX file (its only chain of LSTM nodes, or the node named) as a "
        "fastlstm model file (safetensors).",
    )
    parser.add_argument("onnx_file", help="the ONNX model")
    parser.add_argument("output", help="the model file to write (.safetensors)")
    parser.add_argument("--node", default=None, help="the LSTM node to convert (default: the graph's only chain)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="the weights' type (default: the ONNX weights')")
    args = parser.parse_args(argv)
    try:
        model = fastlstm.LSTM.from_onnx(args.onnx_file, node=args.node, dtype=args.dtype)
    except (fastlstm.OnnxImportError, OSError, ImportError) as error:
        print(f"error: {args.onnx_file}: {error}", file=sys.stderr)
        return 1
    model.save(args.output)
    print(f"{args.output}: {model!r}, {np.dtype(model.dtype).name}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm",
        description="Print fastlstm's build facts and time a default model (2-layer bidirectional LSTM, "
        f"{INPUT} -> {HIDDEN}, batch {BATCH}, {STEPS} steps, float32), checked against torch when installed.",
    )
    parser.add_argument("--threads", type=int, default=None, help="threads for fastlstm and torch (default: every core)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is shown (default 5)")
    parser.add_argument("--cmake-dir", action="store_true",
                        help="print the folder of fastlstm's CMake package (pass it as fastlstm_DIR) and exit")
    sub = parser.add_subparsers(dest="command", metavar="{bench,convert}")
    sub.add_parser("bench", help="benchmark against torch and ONNX Runtime (see: bench --help)", add_help=False)
    sub.add_parser("convert", help="an ONNX file's LSTM as a model file (see: convert --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:
        return convert(argv[1:])
    if argv[:1] == ["bench"]:
        from fastlstm import bench  # the harness, imported for this command only

        return bench.main(argv[1:], prog="python -m fastlstm bench")
    args = parser.parse_args(argv)
    if args.cmake_dir:
        return print_cmake_dir()
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return self_check(args.threads, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
