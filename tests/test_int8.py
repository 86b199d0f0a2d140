"""Models with int8 weights (``LSTM.quantize("int8")``): every nn.LSTM option computes what the
int8 arithmetic defines (tests/int8_reference.py), the error against the float32 model is at most
half of torch's own dynamically quantized LSTM's, the cell state does not drift over long streams,
and the integers and their scales survive files, pickling and format changes."""

from __future__ import annotations

import itertools
import pickle
import warnings

import numpy as np
import pytest
import torch

import fastlstm
from int8_reference import int8_lstm, integers, row_scales
from lstm_helpers import make_pair, random_hx, random_input, torch_forward

# The int8 products are exact integers; what differs from the reference is float rounding in the
# scaling and the cell update (~1e-7). Over a sequence that can move an 8-bit state across a
# rounding boundary now and then (a step of ~1/127 of the state's largest value in one product),
# which the following steps carry on: whole sequences compare within this; single steps from a
# given state, where nothing is carried, within 1e-5.
REFERENCE_ATOL = 1e-3
STEP_ATOL = 1e-5


def reference(model: fastlstm.LSTM, x: np.ndarray, *, lengths=None, hx=None):
    """int8_reference over the model's own (integer-valued) parameters, in the model's layout."""
    params = model.state_dict()
    time_major = np.swapaxes(x, 0, 1) if model.batch_first else x
    hx_ref = hx
    output, (h_n, c_n) = int8_lstm(params, time_major, num_layers=model.num_layers, hidden_size=model.hidden_size,
                                   bidirectional=model.bidirectional, proj_size=model.proj_size, lengths=lengths,
                                   hx=hx_ref, input_levels=32767 if model.int8_input_bits == 16 else 127)
    return (np.swapaxes(output, 0, 1) if model.batch_first else output), (h_n, c_n)


def assert_close(actual, expected, atol=REFERENCE_ATOL):
    (out, (h_n, c_n)), (ref_out, (ref_h, ref_c)) = actual, expected
    for name, got, want in (("output", out, ref_out), ("h_n", h_n, ref_h), ("c_n", c_n, ref_c)):
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=name)


def _grid():
    for layers, bidirectional, proj, bias, batch_first, with_hx in itertools.product(
        [1, 2], [False, True], [0, 5], [True, False], [False, True], [False, True],
    ):
        yield pytest.param(layers, bidirectional, proj, bias, batch_first, with_hx,
                           id=f"l{layers}-bi{int(bidirectional)}-p{proj}-b{int(bias)}-bf{int(batch_first)}-hx{int(with_hx)}")


@pytest.mark.parametrize("num_layers,bidirectional,proj_size,bias,batch_first,with_hx", list(_grid()))
def test_an_int8_model_computes_the_int8_arithmetic(num_layers, bidirectional, proj_size, bias, batch_first, with_hx):
    module, model = make_pair(12, 40, num_layers=num_layers, bidirectional=bidirectional, proj_size=proj_size,
                              bias=bias, batch_first=batch_first)
    quantized = model.quantize("int8")
    assert quantized.weight_format == "int8" and model.weight_format == "float32"
    x = random_input(module, steps=9, batch=3)
    hx = random_hx(module, 3) if with_hx else None
    assert_close(quantized(x, hx), reference(quantized, x, hx=hx))
    # One step from a given state: the products of that step alone. (With a projection, the
    # projection's input comes out of the float cell update, which may round one 8-bit value the
    # other way: one product's step.)
    step_hx = random_hx(module, 3)
    assert_close(quantized(x[:, :1] if batch_first else x[:1], step_hx),
                 reference(quantized, x[:, :1] if batch_first else x[:1], hx=step_hx),
                 atol=3e-4 if proj_size else STEP_ATOL)


def test_unbatched_input_packed_sequences_and_streams():
    module, model = make_pair(7, 33, num_layers=2)
    quantized = model.quantize("int8")
    x = random_input(module, steps=8, batch=4)
    lengths = [8, 3, 6, 1]
    out, (h_n, c_n) = quantized(fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = fastlstm.pad_packed_sequence(out, total_length=8)
    assert_close((padded, (h_n, c_n)), reference(quantized, x, lengths=lengths))
    # Unbatched: the batch of one.
    single, (h_1, c_1) = quantized(x[:, 0])
    np.testing.assert_array_equal(single, quantized(x[:, :1])[0][:, 0])
    # A stream, step by step and in chunks, gives the forward pass's outputs (to float rounding, as
    # float32 models do).
    expected, _ = quantized(x)
    stream = quantized.stream(4)
    steps = [stream.step(x[t]) for t in range(3)] + list(stream(x[3:]))
    np.testing.assert_allclose(np.stack(steps), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_threads_split_the_rows_not_the_sums(threads):
    """Each row's integer sum and scaling is the same however the rows are shared out."""
    module, model = make_pair(30, 100, num_layers=2, bidirectional=True, proj_size=20)
    x = random_input(module, steps=12, batch=5)
    one = fastlstm.LSTM.from_torch(module, num_threads=1).quantize("int8")
    many = fastlstm.LSTM.from_torch(module, num_threads=threads).quantize("int8")
    np.testing.assert_array_equal(many(x)[0], one(x)[0])


def test_wide_inputs_span_several_depth_blocks():
    module, model = make_pair(1100, 48)
    quantized = model.quantize("int8")
    x = random_input(module, steps=4, batch=2)
    assert_close(quantized(x), reference(quantized, x), atol=5e-4)


def test_weights_are_integers_times_row_scales_biases_are_not():
    module, model = make_pair(6, 16, num_layers=2, proj_size=4)
    quantized = model.quantize("int8")
    for name, value in quantized.state_dict().items():
        original = model.state_dict()[name]
        if not name.startswith("weight"):
            np.testing.assert_array_equal(value, original)
            continue
        scales = row_scales(original)
        np.testing.assert_array_equal(value, (integers(original, scales) * scales[:, None]).astype(np.float32))
        assert np.abs(integers(value, scales)).max() == 127
    # Setting a weight takes new scales from its values; quantizing again changes nothing.
    again = quantized.quantize("int8")
    for name, value in quantized.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name], value)
    np.testing.assert_array_equal(quantized.quantize("float32").weight_hh_l0, quantized.weight_hh_l0)


def test_int8_weights_must_be_finite_and_a_rejected_update_changes_nothing():
    _, model = make_pair(4, 8)
    quantized = model.quantize("int8")
    before = quantized.state_dict()
    bad = before["weight_ih_l0"].copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"weight_ih_l0: int8 weights must be finite"):
        quantized.load_state_dict({**before, "weight_ih_l0": bad})
    for name, value in quantized.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_non_finite_input_gives_nan_rows_not_a_crash():
    module, model = make_pair(5, 16)
    quantized = model.quantize("int8")
    x = random_input(module, steps=3, batch=2)
    x[1, 0, 2] = np.nan
    out, _ = quantized(x)
    assert np.isnan(out[1:, 0]).all() and np.isfinite(out[:, 1]).all() and np.isfinite(out[0]).all()


def _torch_int8(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {torch.nn.LSTM}, dtype=torch.qint8)[0]


@pytest.mark.parametrize("input_size,hidden_size,num_layers,bidirectional,batch,steps", [
    (64, 128, 1, False, 1, 100),   # S1's shape
    (256, 256, 1, False, 1, 60),   # S7's
    (128, 256, 2, True, 8, 40),    # S5's
    (40, 96, 2, False, 16, 50),
])
def test_the_error_is_at_most_half_of_torchs_int8(input_size, hidden_size, num_layers, bidirectional, batch, steps):
    torch.manual_seed(0)
    module = torch.nn.LSTM(input_size, hidden_size, num_layers, bidirectional=bidirectional).eval()
    x = np.random.default_rng(0).standard_normal((steps, batch, input_size), dtype=np.float32)
    expected = torch_forward(module, x)[0]
    with torch.no_grad():
        torch_error = np.abs(_torch_int8(module)(torch.from_numpy(x))[0].numpy() - expected).max()
    error = np.abs(fastlstm.LSTM.from_torch(module).quantize("int8")(x)[0] - expected).max()
    assert 0 < error <= 0.5 * torch_error, (error, torch_error)


def test_no_drift_of_the_cell_state_over_10000_streaming_steps():
    module, model = make_pair(32, 64)
    quantized = model.quantize("int8")
    x = np.random.default_rng(5).standard_normal((10_000, 1, 32), dtype=np.float32)
    exact, fast = model.stream(1), quantized.stream(1)
    errors = []
    for start in range(0, 10_000, 1_000):
        chunk = x[start:start + 1_000]
        errors.append(np.abs(fast(chunk) - exact(chunk)).max())
        errors[-1] = max(errors[-1], np.abs(fast.state[1] - exact.state[1]).max())
    assert max(errors[5:]) <= 2 * max(errors[:5]) and max(errors) < 2e-2, errors


def test_files_hold_int8_matrices_and_their_scales(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    module, model = make_pair(10, 32, num_layers=2, bidirectional=True, proj_size=6)
    quantized = model.quantize("int8")
    model.save(tmp_path / "float32.safetensors")
    quantized.save(tmp_path / "int8.safetensors")
    tensors = safetensors_numpy.load_file(str(tmp_path / "int8.safetensors"))
    for name, value in quantized.state_dict().items():
        if name.startswith("weight"):
            assert tensors[name].dtype == np.int8 and tensors[name + ".scale"].dtype == np.float32
            np.testing.assert_array_equal(tensors[name] * tensors[name + ".scale"][:, None], value)
        else:
            np.testing.assert_array_equal(tensors[name], value)
    loaded = fastlstm.LSTM.load(tmp_path / "int8.safetensors")
    assert loaded.weight_format == "int8"
    x = random_input(module, steps=6, batch=2)
    np.testing.assert_array_equal(loaded(x)[0], quantized(x)[0])
    as_double = fastlstm.LSTM.load(tmp_path / "int8.safetensors", dtype=np.float64)
    np.testing.assert_array_equal(as_double.weight_hh_l1.astype(np.float32), quantized.weight_hh_l1)


def test_an_int8_file_is_about_a_quarter_of_a_float32_one(tmp_path):
    _, model = make_pair(64, 128, num_layers=2)
    model.save(tmp_path / "float32.safetensors")
    model.quantize("int8").save(tmp_path / "int8.safetensors")
    ratio = (tmp_path / "int8.safetensors").stat().st_size / (tmp_path / "float32.safetensors").stat().st_size
    assert ratio < 0.3, ratio


def test_a_file_of_int8_matrices_without_scales_is_refused(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    _, model = make_pair(4, 8)
    quantized = model.quantize("int8")
    quantized.save(tmp_path / "int8.safetensors")
    tensors = safetensors_numpy.load_file(str(tmp_path / "int8.safetensors"))
    del tensors["weight_hh_l0.scale"]
    safetensors_numpy.save_file(tensors, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError, match=r"'weight_hh_l0' is I8 but the file has no tensor 'weight_hh_l0.scale'"):
        fastlstm.LSTM.load(tmp_path / "broken.safetensors")


def test_an_int8_model_pickles_exactly():
    _, model = make_pair(4, 8, num_layers=2)
    quantized = model.quantize("int8")
    clone = pickle.loads(pickle.dumps(quantized))
    assert clone.weight_format == "int8"
    x = np.random.default_rng(0).standard_normal((3, 2, 4), dtype=np.float32)
    np.testing.assert_array_equal(clone(x)[0], quantized(x)[0])


@pytest.mark.parametrize("qconfig", ["per_tensor", "per_channel"])
def test_from_torch_keeps_the_integers_and_scales_of_torchs_int8_lstm(qconfig):
    torch.manual_seed(0)
    module = torch.nn.LSTM(16, 32, 2, bidirectional=True).eval()
    config = (torch.ao.quantization.default_dynamic_qconfig if qconfig == "per_tensor"
              else torch.ao.quantization.per_channel_dynamic_qconfig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {torch.nn.LSTM: config},
                                                           dtype=torch.qint8)[0]
    model = fastlstm.LSTM.from_torch(quantized)
    assert model.weight_format == "int8" and model.dtype == np.float32
    scales = {}
    for name, weight in quantized._weight_bias()["weight"].items():
        per_row = (np.full(weight.shape[0], weight.q_scale(), np.float32) if qconfig == "per_tensor"
                   else weight.q_per_channel_scales().float().numpy())
        scales[name] = per_row
        np.testing.assert_array_equal(
            getattr(model, name), (weight.int_repr().numpy().astype(np.float32) * per_row[:, None]).astype(np.float32))
    x = np.random.default_rng(0).standard_normal((10, 3, 16), dtype=np.float32)
    expected = int8_lstm(model.state_dict(), x, num_layers=2, hidden_size=32, bidirectional=True, scales=scales)
    assert_close(model(x), expected)
    # The scales stay through pickling, files and quantize("int8").
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model))(x)[0], model(x)[0])
    np.testing.assert_array_equal(model.quantize("int8").weight_hh_l1, model.weight_hh_l1)
    with torch.no_grad():
        torch_float = module(torch.from_numpy(x))[0].numpy()
        torch_int8 = quantized(torch.from_numpy(x))[0].numpy()
    assert np.abs(model(x)[0] - torch_float).max() < np.abs(torch_int8 - torch_float).max()


def test_from_torch_of_a_float16_quantized_lstm_is_a_float16_model():
    torch.manual_seed(0)
    module = torch.nn.LSTM(12, 24).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {torch.nn.LSTM},
                                                           dtype=torch.float16)[0]
    model = fastlstm.LSTM.from_torch(quantized)
    assert model.weight_format == "float16"
    x = np.random.default_rng(1).standard_normal((8, 2, 12), dtype=np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model(x)[0], quantized(torch.from_numpy(x))[0].numpy(), rtol=0, atol=1e-5)


def test_int8_needs_a_float32_model():
    with pytest.raises(ValueError, match="float32 model"):
        fastlstm.LSTM(4, 8, dtype=np.float64).quantize("int8")


_RESIDENT = """
import sys, gc
import numpy as np, psutil, fastlstm
process = psutil.Process()
x = np.random.default_rng(0).standard_normal((4, 2, 1024), dtype=np.float32)
gc.collect()
before = process.memory_info().rss
model = fastlstm.LSTM.load(sys.argv[1], num_threads=2)
model(x)
gc.collect()
print(process.memory_info().rss - before)
"""


def test_an_int8_model_holds_about_a_quarter_of_a_float32_models_memory(tmp_path):
    """The model keeps its matrices as codes (a byte per weight) beside their packed copy: resident
    growth of a loaded model, each in a fresh process, at most 0.3x a float32 model's."""
    import subprocess
    import sys

    pytest.importorskip("psutil")
    model = fastlstm.LSTM(1024, 1024, num_layers=2, num_threads=2)
    model.save(tmp_path / "float32.safetensors")
    model.quantize("int8").save(tmp_path / "int8.safetensors")
    grown = {}
    for name in ("float32", "int8"):
        result = subprocess.run([sys.executable, "-c", _RESIDENT, str(tmp_path / f"{name}.safetensors")],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        grown[name] = int(result.stdout.split()[-1])
    assert grown["float32"] > 100e6  # weights and their packed copy: 2 x 67 MB
    assert grown["int8"] <= 0.3 * grown["float32"], grown


def test_8_bit_inputs_trade_accuracy_for_speed_and_stay_with_the_model(tmp_path):
    module, model = make_pair(20, 48, num_layers=2)
    fine, coarse = model.quantize("int8"), model.quantize("int8", input_bits=8)
    assert (fine.int8_input_bits, coarse.int8_input_bits) == (16, 8)
    x = random_input(module, steps=10, batch=3)
    assert_close(coarse(x), reference(coarse, x))
    expected = torch_forward(module, x)[0]
    assert np.abs(coarse(x)[0] - expected).max() > np.abs(fine(x)[0] - expected).max()
    # Files and pickling keep it; quantize starts again from 16 unless told.
    coarse.save(tmp_path / "coarse.safetensors")
    loaded = fastlstm.LSTM.load(tmp_path / "coarse.safetensors")
    assert loaded.int8_input_bits == 8
    np.testing.assert_array_equal(loaded(x)[0], coarse(x)[0])
    assert pickle.loads(pickle.dumps(coarse)).int8_input_bits == 8
    assert coarse.quantize("int8").int8_input_bits == 16
    with pytest.raises(ValueError, match="input_bits: only int8"):
        model.quantize("float16", input_bits=8)
    with pytest.raises(ValueError, match="input_bits: expected 8 or 16, got 12"):
        model.quantize("int8", input_bits=12)
