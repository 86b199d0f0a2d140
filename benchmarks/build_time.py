#!/usr/bin/env python3
"""How long it takes to get a model ready to run: LSTM() (random weights), LSTM.load (a file),
from_state_dict, from_torch (torch optional) and load_state_dict into an existing model, for a
34 MB and a 353 MB float32 model. Best of 3 of each.

    python benchmarks/build_time.py
"""

import os
import tempfile
import time

import numpy as np

import fastlstm

SIZES = [  # input_size, hidden_size, num_layers, bidirectional
    (1024, 1024, 1, False),
    (512, 1024, 4, True),
]


def best_of(build, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        build()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    try:
        import torch
    except ImportError:
        torch = None
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.safetensors")
        for I, H, layers, bidirectional in SIZES:
            config = dict(num_layers=layers, bidirectional=bidirectional)
            np.random.seed(0)
            model = fastlstm.LSTM(I, H, **config)
            model.save(path)
            state_dict = model.state_dict()
            megabytes = sum(v.nbytes for v in state_dict.values()) / 1e6
            times = {
                "LSTM()": best_of(lambda: fastlstm.LSTM(I, H, **config)),
                "LSTM.load": best_of(lambda: fastlstm.LSTM.load(path)),
                "from_state_dict": best_of(lambda: fastlstm.LSTM.from_state_dict(state_dict)),
                "load_state_dict": best_of(lambda: model.load_state_dict(state_dict)),
            }
            if torch is not None:
                module = torch.nn.LSTM(I, H, **config)
                times["from_torch"] = best_of(lambda: fastlstm.LSTM.from_torch(module))
            print(f"I={I} H={H} layers={layers} bidirectional={bidirectional} ({megabytes:.0f} MB): "
                  + ", ".join(f"{name} {seconds * 1e3:.0f} ms" for name, seconds in times.items()))


if __name__ == "__main__":
    main()
