"""fastlstm's int8 models against the peers' quantized LSTMs on the CPU cases, one process,
interleaved: ONNX Runtime's DynamicQuantizeLSTM (onnxruntime.quantization.quantize_dynamic) and
torch's dynamically quantized LSTM (torch.ao.quantization.quantize_dynamic, qint8), next to
fastlstm float32. Median ms per call (S7: per step, each tool carrying (h, c) through its own
one-step calls) and each one's largest output difference from torch's float32 model on the
same input.

    python benchmarks/int8_peers.py [--threads 2] [--repeats 7] [--cases S1,S2,...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

import numpy as np

import fastlstm
from fastlstm.bench.cases import CASES
from fastlstm.bench.peers import export_onnx, ort_session
from fastlstm.bench.timing import interleaved


def main() -> None:
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cases", default="S1,S2,S3,S4,S5,S7")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"fastlstm {fastlstm.__version__} ({fastlstm.build_info()['simd']}), torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {args.threads} thread(s)")
    print("case | fastlstm fp32 ms | fastlstm int8 ms, error | ORT int8 ms, error | torch int8 ms, error | "
          "int8 / fp32 | int8 / ORT int8")
    for name in args.cases.split(","):
        case = CASES[name]
        torch.manual_seed(0)
        module = torch.nn.LSTM(case.input_size, case.hidden_size, case.num_layers,
                               bidirectional=case.bidirectional).eval()
        stream = case.mode == "stream"
        steps = case.calls if stream else case.steps
        x = np.random.default_rng(0).standard_normal((steps, case.batch, case.input_size), dtype=np.float32)
        D = case.num_layers * (2 if case.bidirectional else 1)
        h0 = np.zeros((D, case.batch, case.hidden_size), np.float32)
        with torch.no_grad():
            reference = module(torch.from_numpy(x))[0].numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch_int8 = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(module), {torch.nn.LSTM}, dtype=torch.qint8)[0]
        fp32 = fastlstm.LSTM.from_torch(module, num_threads=args.threads)
        int8 = fp32.quantize("int8")
        with tempfile.TemporaryDirectory() as directory:
            plain, quantized = os.path.join(directory, "lstm.onnx"), os.path.join(directory, "lstm_int8.onnx")
            example = (torch.from_numpy(x[:1] if stream else x), (torch.from_numpy(h0), torch.from_numpy(h0)))
            with open(plain, "wb") as out:
                out.write(export_onnx(torch, module, example, ["x", "h0", "c0"]))
            quantize_dynamic(plain, quantized, weight_type=QuantType.QInt8)
            session = ort_session(ort, open(quantized, "rb").read(), args.threads)

        def run_ort(inputs):
            return session.run(None, {"x": inputs, "h0": h0, "c0": h0})[0]

        def run_torch(inputs):
            with torch.no_grad():
                return torch_int8(torch.from_numpy(inputs))[0].numpy()

        def carried(step_fn):
            """S7: one call per step, the state carried."""
            def run():
                state, outs = None, []
                for t in range(steps):
                    out, state = step_fn(x[t:t + 1], state)
                    outs.append(out)
                return np.concatenate(outs)
            return run

        if stream:
            def ort_step(xt, state):
                h, c = state if state is not None else (h0, h0)
                out, h, c = session.run(None, {"x": xt, "h0": h, "c0": c})
                return out, (h, c)

            def torch_step(xt, state):
                with torch.no_grad():
                    out, state = torch_int8(torch.from_numpy(xt), state)
                return out.numpy(), state

            calls = {"fp32": carried(lambda xt, s: fp32(xt, s)), "int8": carried(lambda xt, s: int8(xt, s)),
                     "ort int8": carried(ort_step), "torch int8": carried(torch_step)}
            outputs = {tool: fn() for tool, fn in calls.items()}
        else:
            calls = {"fp32": lambda: fp32(x), "int8": lambda: int8(x), "ort int8": lambda: run_ort(x),
                     "torch int8": lambda: run_torch(x)}
            outputs = {"fp32": fp32(x)[0], "int8": int8(x)[0], "ort int8": run_ort(x), "torch int8": run_torch(x)}
        error = {tool: float(np.abs(np.asarray(out).reshape(reference.shape) - reference).max())
                 for tool, out in outputs.items()}
        per = steps if stream else 1
        ms = {tool: r["median_s"] * 1e3 / per for tool, r in interleaved(calls, repeats=args.repeats).items()}
        print(f"{name} | {ms['fp32']:.4g} | {ms['int8']:.4g}, {error['int8']:.1e} | {ms['ort int8']:.4g}, "
              f"{error['ort int8']:.1e} | {ms['torch int8']:.4g}, {error['torch int8']:.1e} | "
              f"{ms['fp32'] / ms['int8']:.2f}x faster | {ms['int8'] / ms['ort int8']:.2f}", flush=True)


if __name__ == "__main__":
    main()
