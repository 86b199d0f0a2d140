"""The examples users read run as written: the README's Python blocks (CPU ones) and the
docstrings' examples, with only the objects they assume (a trained torch model, a weights file,
an input step) set up first."""

import doctest
import re
from pathlib import Path

import numpy as np
import pytest

import fastlstm

torch = pytest.importorskip("torch")

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return [block for block in blocks if "cuda" not in block]  # the GPU block needs a GPU


# What the README's blocks take as given, in the shapes they use.
_PRELUDE = """
import numpy as np, torch, fastlstm
from safetensors.torch import save_file
torch_lstm = torch.nn.LSTM(10, 20, num_layers=2, batch_first=True)
np.savez("weights.npz", **{k: v.detach().numpy() for k, v in torch_lstm.state_dict().items()})
network = torch.nn.Module()
network.encoder = torch.nn.Module()
network.encoder.rnn = torch_lstm
save_file(network.state_dict(), "network.safetensors")
import io, warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation
    torch.onnx.export(torch_lstm, (torch.zeros(3, 5, 10),), "model.onnx", dynamo=False)
x_t = np.random.randn(10).astype(np.float32)
chunk = np.random.randn(4, 10).astype(np.float32)
"""


def test_the_readme_has_the_examples_this_test_runs():
    blocks = _python_blocks()
    assert len(blocks) == 6, "README's CPU examples changed: update _PRELUDE and this test"
    assert "from_torch(torch_lstm)" in blocks[0] and 'LSTM.load("model.safetensors")' in blocks[1]
    assert 'from_onnx("model.onnx")' in blocks[2] and "onnx_lstm(" in blocks[2]
    assert 'quantize("bfloat16")' in blocks[3] and 'quantize("int8")' in blocks[4]
    assert "stream_pool(capacity=1000)" in blocks[5] and "StepBatcher" in blocks[5]


def test_the_readme_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(_PRELUDE, scope)
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), scope)
    # What the comments say of the results.
    assert scope["output"].shape == (3, 5, 20) and scope["h_n"].shape == (2, 3, 20)
    assert scope["y_t"].shape == (20,) and scope["y"].shape == (4, 20)
    assert list(scope["lengths"]) == [5, 4, 2]
    loaded, reference = scope["lstm"], fastlstm.LSTM.from_torch(scope["torch_lstm"])
    for name, value in reference.named_parameters():
        assert np.array_equal(getattr(loaded, name), value), name
    assert scope["small"].weight_format == "bfloat16" and loaded.weight_format == "float32"
    assert fastlstm.LSTM.load("model-bf16.safetensors").weight_format == "bfloat16"
    assert scope["int8"].weight_format == scope["from_torch_int8"].weight_format == "int8"
    assert fastlstm.LSTM.load("model-int8.safetensors").weight_format == "int8"
    onnx_model = scope["onnx_model"]
    assert onnx_model.batch_first and onnx_model.num_layers == 2 and scope["onnx_y"].shape == (3, 5, 20)
    for name, value in reference.named_parameters():
        assert np.array_equal(getattr(onnx_model, name), value), name
    assert scope["Y"].shape == (7, 1, 3, 20) and scope["Y_h"].shape == (1, 3, 20)
    assert not scope["Y"][5:, 0, 1].any() and not scope["Y"][2:, 0, 2].any()  # past each length
    pool = scope["pool"]
    assert scope["steps"].shape == (2, 20) and scope["y_a"].shape == (20,)
    assert len(pool) == 1 and scope["a"] in pool and scope["b"] not in pool
    assert scope["state"][0].shape == (2, 1, 20)


@pytest.mark.parametrize("obj", [fastlstm, fastlstm.LSTM, fastlstm.LSTMStream, fastlstm.StreamPool,
                                 fastlstm.StepBatcher], ids=lambda o: o.__name__)
def test_docstring_examples_run(obj):
    lstm = fastlstm.LSTM(10, 20)
    globs = {"lstm": lstm, "x_t": np.zeros(10, np.float32), "chunk": np.zeros((4, 10), np.float32),
             "x": np.zeros((2, 10), np.float32), "fastlstm": fastlstm}
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(obj, globs=globs) if t.examples]
    assert tests, f"{obj.__name__} has no examples"
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
