#!/usr/bin/env python3
"""Case S7 from Python through the streaming API: one LSTM step per call (N=1, I=H=256),
(h, c) carried by the stream. The C++ counterpart is benchmarks/cpp/stream_step.cpp.

    python benchmarks/stream_step.py
"""

import time

import numpy as np

import fastlstm


def main() -> None:
    np.random.seed(0)
    for threads in (2, 1):
        stream = fastlstm.LSTM(256, 256, num_threads=threads).stream()
        x = np.random.randn(256).astype(np.float32)
        for _ in range(1000):  # warm up
            stream.step(x)
        runs = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(5000):
                stream.step(x)
            runs.append((time.perf_counter() - start) / 5000 * 1e6)
        print(
            f"S7 from Python, stream.step, {threads} thread(s): median {np.median(runs):.2f} us/step "
            f"(min {min(runs):.2f}, max {max(runs):.2f})"
        )


if __name__ == "__main__":
    main()
