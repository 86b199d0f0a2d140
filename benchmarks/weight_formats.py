"""float32 against 16-bit and int8 weights (LSTM.quantize) on the CPU cases, one process, interleaved:
median ms per call (per step for S7, through stream.step), speedups over float32 and each format's
largest output difference from the float32 model.

    python benchmarks/weight_formats.py [--threads 2] [--repeats 7] [--cases S1,S2,...]
"""

from __future__ import annotations

import argparse

import numpy as np

import fastlstm
from fastlstm.bench.cases import CASES
from fastlstm.bench.timing import interleaved

FORMATS = ("float32", "float16", "bfloat16", "int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default="S1,S2,S3,S4,S5,S6,S7")
    args = parser.parse_args()
    print(f"fastlstm {fastlstm.__version__}, {fastlstm.build_info()['simd']}, {args.threads} thread(s)")
    for name in args.cases.split(","):
        case = CASES[name]
        np.random.seed(0)
        model = fastlstm.LSTM(case.input_size, case.hidden_size, num_layers=case.num_layers,
                              bidirectional=case.bidirectional, proj_size=case.proj_size, num_threads=args.threads)
        models = {fmt: model if fmt == "float32" else model.quantize(fmt) for fmt in FORMATS}
        x = np.random.rand(case.steps, case.batch, case.input_size).astype(np.float32)
        if case.mode == "stream":
            streams = {fmt: m.stream(case.batch) for fmt, m in models.items()}
            calls = {fmt: (lambda s=s: s.step(x[0])) for fmt, s in streams.items()}
        else:
            calls = {fmt: (lambda m=m: m(x)) for fmt, m in models.items()}
        reference = model(x)[0]
        error = {fmt: float(np.abs(m(x)[0] - reference).max()) for fmt, m in models.items()}
        ms = {fmt: result["median_s"] * 1e3 for fmt, result in interleaved(calls, repeats=args.repeats).items()}
        print(f"{name:3s} " + "  ".join(f"{fmt} {ms[fmt]:.4g} ms" for fmt in FORMATS)
              + "  | speedup " + " ".join(f"{fmt} {ms['float32'] / ms[fmt]:.2f}x" for fmt in FORMATS[1:])
              + "  | max |diff| " + " ".join(f"{fmt} {error[fmt]:.1e}" for fmt in FORMATS[1:]), flush=True)


if __name__ == "__main__":
    main()
