"""Writes the fuzz seed corpus (tests/fuzz/corpus/): small valid model files of every kind the
reader knows. Run from the repository root after changing the file format:
    python tests/fuzz/make_corpus.py
"""

import os

import numpy as np
from safetensors.numpy import save_file

import fastlstm

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def main() -> None:
    os.makedirs(HERE, exist_ok=True)
    np.random.seed(0)
    models = {
        "lstm_1x1.safetensors": fastlstm.LSTM(2, 1),
        "lstm_bidir_proj_2layers.safetensors": fastlstm.LSTM(2, 2, num_layers=2, bidirectional=True, proj_size=1),
        "lstm_f64_nobias_batch_first.safetensors": fastlstm.LSTM(1, 1, bias=False, batch_first=True, dtype=np.float64),
    }
    for name, model in models.items():
        model.save(os.path.join(HERE, name))
    # What other tools write: an LSTMCell, and a network with its LSTM under "rnn.".
    cell = {"weight_ih": np.ones((4, 2), np.float32), "weight_hh": np.ones((4, 1), np.float32),
            "bias_ih": np.zeros(4, np.float32), "bias_hh": np.zeros(4, np.float64)}
    save_file(cell, os.path.join(HERE, "cell.safetensors"), metadata={"format": "pt"})
    network = {"rnn." + k: v for k, v in models["lstm_1x1.safetensors"].state_dict().items()}
    network["head.weight"] = np.ones((2, 1), np.float16)
    network["steps"] = np.array([7], np.int64)
    save_file(network, os.path.join(HERE, "network.safetensors"))
    with open(os.path.join(HERE, "empty_header.safetensors"), "wb") as f:
        f.write(b"\x02\0\0\0\0\0\0\0{}")


if __name__ == "__main__":
    main()
