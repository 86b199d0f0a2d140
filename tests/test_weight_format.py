"""Models with 16-bit weights (``LSTM.quantize("float16" | "bfloat16")``): the weight matrices are
rounded to the format (biases are not), the model computes in float32 with exactly those values
(torch's float32 LSTM with the same rounded weights is the reference), and stays within the
format's error of the float32 model, for every nn.LSTM option."""

from __future__ import annotations

import copy
import itertools
import pickle

import numpy as np
import pytest
import torch

import fastlstm
from lstm_helpers import assert_same_results, make_pair, random_hx, random_input, torch_forward

TORCH_FORMAT = {"float16": torch.float16, "bfloat16": torch.bfloat16}
ERROR_BOUND = {"float16": 3e-4, "bfloat16": 3e-3}  # issue 20's goals, against the float32 model


def rounded_module(module: torch.nn.LSTM, weight_format: str) -> torch.nn.LSTM:
    """A copy of `module` whose weight matrices are rounded to `weight_format` (biases not)."""
    rounded = copy.deepcopy(module)
    with torch.no_grad():
        for name, parameter in rounded.named_parameters():
            if name.startswith("weight"):
                parameter.copy_(parameter.to(TORCH_FORMAT[weight_format]).float())
    return rounded


def _grid():
    for fmt, layers, bidirectional, proj, batch_first, with_hx, batch in itertools.product(
        ["float16", "bfloat16"], [1, 2], [False, True], [0, 5], [False, True], [False, True], [None, 3],
    ):
        yield pytest.param(fmt, layers, bidirectional, proj, batch_first, with_hx, batch,
                           id=f"{fmt}-l{layers}-bi{int(bidirectional)}-p{proj}-bf{int(batch_first)}-hx{int(with_hx)}-N{batch}")


@pytest.mark.parametrize("weight_format,num_layers,bidirectional,proj_size,batch_first,with_hx,batch", list(_grid()))
def test_a_quantized_model_computes_with_its_rounded_weights(weight_format, num_layers, bidirectional, proj_size,
                                                             batch_first, with_hx, batch):
    module, model = make_pair(12, 40, num_layers=num_layers, bidirectional=bidirectional, proj_size=proj_size,
                              batch_first=batch_first)
    quantized = model.quantize(weight_format)
    assert quantized.weight_format == weight_format and model.weight_format == "float32"
    x = random_input(module, steps=9, batch=batch)
    hx = random_hx(module, batch) if with_hx else None
    result = quantized(x, hx)
    assert_same_results(result, torch_forward(rounded_module(module, weight_format), x, hx), 1e-5)
    float32 = torch_forward(module, x, hx)
    error = max(np.abs(a - b).max() for a, b in zip((result[0], *result[1]), (float32[0], *float32[1])))
    assert 0 < error <= ERROR_BOUND[weight_format]


@pytest.mark.parametrize("weight_format", ["float16", "bfloat16"])
def test_weights_are_rounded_biases_are_not_and_the_original_is_unchanged(weight_format):
    module, model = make_pair(6, 16, num_layers=2, proj_size=4)
    before = model.state_dict()
    quantized = model.quantize(weight_format)
    for name, value in quantized.state_dict().items():
        if name.startswith("weight"):
            expected = torch.from_numpy(before[name]).to(TORCH_FORMAT[weight_format]).float().numpy()
            np.testing.assert_array_equal(value, expected)
        else:
            np.testing.assert_array_equal(value, before[name])
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    # Weights set later are rounded too.
    quantized.weight_hh_l0 = np.full((64, 4), 0.1, np.float32)
    assert quantized.weight_hh_l0[0, 0] == np.float32(torch.tensor(0.1).to(TORCH_FORMAT[weight_format]).float())
    assert quantized.quantize("float32").weight_format == "float32"


@pytest.mark.parametrize("weight_format", ["float16", "bfloat16"])
def test_packed_sequences_and_streams_of_a_quantized_model(weight_format):
    module, model = make_pair(5, 24, num_layers=2)
    quantized = model.quantize(weight_format)
    x = random_input(module, steps=7, batch=3)
    expected, _ = quantized(x)
    stream = quantized.stream(3)
    np.testing.assert_allclose(np.stack([stream.step(x[t]) for t in range(7)]), expected, atol=1e-6, rtol=0)
    lengths = [7, 4, 2]
    out, _ = quantized(fastlstm.pack_padded_sequence(x, lengths))
    padded, _ = fastlstm.pad_packed_sequence(out, total_length=7)
    reference = rounded_module(module, weight_format)
    ref_out, _ = reference(torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths)))
    ref_padded, _ = torch.nn.utils.rnn.pad_packed_sequence(ref_out, total_length=7)
    np.testing.assert_allclose(padded, ref_padded.detach().numpy(), atol=1e-5, rtol=0)


def test_a_quantized_model_pickles_with_its_format():
    _, model = make_pair(4, 8)
    quantized = model.quantize("bfloat16")
    clone = pickle.loads(pickle.dumps(quantized))
    assert clone.weight_format == "bfloat16"
    x = np.random.default_rng(0).standard_normal((3, 2, 4), dtype=np.float32)
    np.testing.assert_array_equal(clone(x)[0], quantized(x)[0])


@pytest.mark.parametrize("weight_format,most", [("float16", 0.52), ("bfloat16", 0.52), ("int8", 0.32)])
def test_a_quantized_pickle_holds_its_format_and_comes_back_bit_for_bit(weight_format, most):
    model = fastlstm.LSTM(64, 96, 2, proj_size=32)
    state = model.state_dict()
    state["weight_hh_l1"][5] = 0  # a row of zeros: its int8 scale is 0
    model.load_state_dict(state)
    quantized = model.quantize(weight_format)
    data = pickle.dumps(quantized)
    assert len(data) < most * len(pickle.dumps(model))  # the matrices in their own format
    clone = pickle.loads(data)
    assert clone.weight_format == weight_format
    for (name, a), b in zip(quantized.state_dict().items(), clone.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    x = np.random.default_rng(1).standard_normal((3, 2, 64), dtype=np.float32)
    np.testing.assert_array_equal(clone(x)[0], quantized(x)[0])


def test_quantize_refuses_other_formats_and_float64_models():
    _, model = make_pair(4, 8)
    with pytest.raises(ValueError, match="weight_format"):
        model.quantize("int4")
    with pytest.raises(ValueError, match="float32 model"):
        fastlstm.LSTM(4, 8, dtype=np.float64).quantize("float16")
    assert fastlstm.LSTM(4, 8, dtype=np.float64).weight_format == "float64"


@pytest.mark.parametrize("weight_format", ["float16", "bfloat16"])
def test_a_quantized_model_saves_16_bit_tensors_and_loads_with_its_format(weight_format, tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    module, model = make_pair(10, 32, num_layers=2, bidirectional=True, proj_size=6)
    quantized = model.quantize(weight_format)
    model.save(tmp_path / "float32.safetensors")
    quantized.save(tmp_path / "quantized.safetensors")
    # The reference reader sees F16 / BF16 weight matrices, float32 biases, the format in the metadata.
    tensors = safetensors_torch.load_file(str(tmp_path / "quantized.safetensors"))
    for name, tensor in tensors.items():
        expected = TORCH_FORMAT[weight_format] if name.startswith("weight") else torch.float32
        assert tensor.dtype == expected, name
        np.testing.assert_array_equal(tensor.float().numpy(), quantized.state_dict()[name])
    size = (tmp_path / "quantized.safetensors").stat().st_size
    assert size < 0.6 * (tmp_path / "float32.safetensors").stat().st_size
    loaded = fastlstm.LSTM.load(tmp_path / "quantized.safetensors")
    assert loaded.weight_format == weight_format
    x = random_input(module, steps=6, batch=2)
    assert_same_results(loaded(x), quantized(x), 0, require_nontrivial=False)
    # Loaded as float64, the rounded values are the weights, held in full.
    as_double = fastlstm.LSTM.load(tmp_path / "quantized.safetensors", dtype=np.float64)
    assert as_double.weight_format == "float64"
    np.testing.assert_array_equal(as_double.weight_hh_l1.astype(np.float32), quantized.weight_hh_l1)
