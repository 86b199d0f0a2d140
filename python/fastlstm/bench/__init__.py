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

from .cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
