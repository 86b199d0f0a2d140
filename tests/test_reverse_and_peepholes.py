"""The engine's LSTM features beyond torch (ONNX's operator has them): a single direction that runs
backwards (reverse=True) and peephole weights (peephole=True), against references built from
what torch does have and from a NumPy cell; kept through files and pickles; refused where they
cannot run."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastlstm

torch = pytest.importorskip("torch")


def flipped(x, lengths=None, batch_first=False):
    """Each sequence of a padded batch in reverse order (within its own length)."""
    x = np.array(x)
    time_axis = 1 if batch_first else 0
    if lengths is None:
        return np.ascontiguousarray(np.flip(x, axis=time_axis))
    out = np.zeros_like(x)
    for n, length in enumerate(lengths):
        if batch_first:
            out[n, :length] = x[n, :length][::-1]
        else:
            out[:length, n] = x[:length, n][::-1]
    return out


@pytest.mark.parametrize("num_layers,proj_size,batch_first,threads,dtype", [
    (1, 0, False, 1, np.float32), (2, 0, True, 2, np.float32), (3, 3, False, 2, np.float64),
    (2, 0, False, 2, np.float64),
])
def test_a_reverse_model_is_a_forward_one_on_each_sequence_flipped(num_layers, proj_size, batch_first, threads, dtype):
    forward = fastlstm.LSTM(7, 6, num_layers, batch_first=batch_first, proj_size=proj_size, dtype=dtype,
                            num_threads=threads)
    reverse = fastlstm.LSTM(7, 6, num_layers, batch_first=batch_first, proj_size=proj_size, dtype=dtype,
                            num_threads=threads, reverse=True)
    reverse.load_state_dict(forward.state_dict())
    rng = np.random.default_rng(num_layers)
    L, N = 9, 5
    x = rng.standard_normal((N, L, 7) if batch_first else (L, N, 7)).astype(dtype)
    h0 = rng.standard_normal((num_layers, N, proj_size or 6)).astype(dtype)
    c0 = rng.standard_normal((num_layers, N, 6)).astype(dtype)
    tolerance = 1e-6 if dtype == np.float32 else 1e-12

    output, (h_n, c_n) = reverse(x, (h0, c0))
    expected, (e_h, e_c) = forward(flipped(x, batch_first=batch_first), (h0, c0))
    np.testing.assert_allclose(output, flipped(expected, batch_first=batch_first), atol=tolerance)
    np.testing.assert_allclose(h_n, e_h, atol=tolerance)
    np.testing.assert_allclose(c_n, e_c, atol=tolerance)

    # Packed: each sequence runs from its own last step.
    lengths = [9, 7, 7, 3, 1]
    packed = fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out_packed, (h_p, c_p) = reverse(packed, (h0, c0))
    padded, _ = fastlstm.pad_packed_sequence(out_packed, batch_first=batch_first, total_length=L)
    reference = fastlstm.pack_padded_sequence(flipped(x, lengths, batch_first), lengths, batch_first=batch_first,
                                              enforce_sorted=False)
    ref_out, (ref_h, ref_c) = forward(reference, (h0, c0))
    ref_padded, _ = fastlstm.pad_packed_sequence(ref_out, batch_first=batch_first, total_length=L)
    np.testing.assert_allclose(padded, flipped(ref_padded, lengths, batch_first), atol=tolerance)
    np.testing.assert_allclose(h_p, ref_h, atol=tolerance)
    np.testing.assert_allclose(c_p, ref_c, atol=tolerance)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def numpy_peephole_layer(x, weights, suffix, h, c, reverse=False):
    """One direction of one layer with peepholes, step by step in float64."""
    w_ih, w_hh = weights["weight_ih" + suffix], weights["weight_hh" + suffix]
    b = weights.get("bias_ih" + suffix, 0) + weights.get("bias_hh" + suffix, 0)
    p_i, p_f, p_o = np.split(weights["peephole" + suffix], 3)
    outputs = np.zeros((x.shape[0], x.shape[1], h.shape[1]))
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    for t in steps:
        i, f, g, o = np.split(x[t] @ w_ih.T + h @ w_hh.T + b, 4, axis=1)
        i, f = sigmoid(i + p_i * c), sigmoid(f + p_f * c)
        c = f * c + i * np.tanh(g)
        h = sigmoid(o + p_o * c) * np.tanh(c)
        outputs[t] = h
    return outputs, h, c


@pytest.mark.parametrize("num_layers,bidirectional,reverse,threads", [
    (1, False, False, 1), (2, True, False, 2), (2, False, True, 2), (3, False, False, 2),
])
def test_peepholes_against_a_numpy_cell(num_layers, bidirectional, reverse, threads):
    H = 40  # more than one gate block: every block reads its own units' peepholes
    model = fastlstm.LSTM(5, H, num_layers, bidirectional=bidirectional, reverse=reverse, peephole=True,
                          num_threads=threads, dtype=np.float64)
    rng = np.random.default_rng(3)
    weights = {name: rng.standard_normal(value.shape) * 0.3 for name, value in model.state_dict().items()}
    model.load_state_dict(weights)
    assert {f"peephole_l{k}" for k in range(num_layers)} <= set(weights)
    x = rng.standard_normal((6, 3, 5))
    D = 2 if bidirectional else 1
    h0 = rng.standard_normal((num_layers * D, 3, H))
    c0 = rng.standard_normal((num_layers * D, 3, H))
    output, (h_n, c_n) = model(x, (h0, c0))

    layer_input, hs, cs = x, [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            out, h, c = numpy_peephole_layer(layer_input, weights, suffix, h0[k], c0[k], reverse=reverse or d == 1)
            outs.append(out)
            hs.append(h)
            cs.append(c)
        layer_input = np.concatenate(outs, axis=2)
    np.testing.assert_allclose(output, layer_input, atol=1e-12)
    np.testing.assert_allclose(h_n, np.stack(hs), atol=1e-12)
    np.testing.assert_allclose(c_n, np.stack(cs), atol=1e-12)


def test_zero_peepholes_give_the_plain_lstm_and_streams_step_with_peepholes():
    plain = fastlstm.LSTM(4, 6, 2)
    peephole = fastlstm.LSTM(4, 6, 2, peephole=True)
    state = dict(plain.state_dict(), peephole_l0=np.zeros(18, np.float32), peephole_l1=np.zeros(18, np.float32))
    peephole.load_state_dict(state)
    x = np.random.default_rng(4).standard_normal((5, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(peephole(x)[0], plain(x)[0], atol=1e-6)  # the same up to rounding

    peephole.load_state_dict(dict(state, peephole_l1=np.full(18, 0.5, np.float32)))
    whole, _ = peephole(x)
    stream = peephole.stream(batch_size=2)
    steps = np.stack([stream.step(x[t]) for t in range(5)])
    np.testing.assert_allclose(steps, whole, atol=1e-6)


def test_the_features_survive_files_pickles_and_reduced_precision(tmp_path):
    model = fastlstm.LSTM(4, 8, 2, reverse=True, peephole=True)
    rng = np.random.default_rng(5)
    model.load_state_dict({k: rng.standard_normal(v.shape).astype(np.float32) * 0.3 for k, v in model.state_dict().items()})
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    expected, _ = model(x)
    assert "reverse=True" in repr(model) and "peephole=True" in repr(model)

    model.save(tmp_path / "m.safetensors")
    loaded = fastlstm.LSTM.load(tmp_path / "m.safetensors")
    assert loaded.reverse and loaded.peephole
    np.testing.assert_array_equal(loaded(x)[0], expected)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.reverse and copy.peephole
    np.testing.assert_array_equal(copy(x)[0], expected)
    # Weights alone: peepholes are inferred from the keys; the direction is not in the weights.
    inferred = fastlstm.LSTM.from_state_dict(model.state_dict())
    assert inferred.peephole and not inferred.reverse

    for weight_format, tolerance in (("bfloat16", 0.05), ("int8", 0.05)):
        quantized = model.quantize(weight_format)
        assert quantized.reverse and quantized.peephole
        assert np.abs(quantized(x)[0] - expected).max() < tolerance, weight_format
        quantized.save(tmp_path / f"{weight_format}.safetensors")
        again = fastlstm.LSTM.load(tmp_path / f"{weight_format}.safetensors")
        np.testing.assert_array_equal(again(x)[0], quantized(x)[0])


def test_what_cannot_be_is_refused_by_name():
    with pytest.raises(ValueError, match="reverse"):
        fastlstm.LSTM(4, 6, bidirectional=True, reverse=True)
    with pytest.raises(TypeError, match="reverse"):
        fastlstm.LSTM(4, 6, reverse="yes")
    with pytest.raises(TypeError, match="peephole"):
        fastlstm.LSTM(4, 6, peephole=1.5)
    reverse = fastlstm.LSTM(4, 6, reverse=True)
    with pytest.raises(ValueError, match="reverse LSTM needs the whole sequence"):
        reverse.stream()
    with pytest.raises(ValueError, match="reverse LSTM needs the whole sequence"):
        reverse.stream_pool(4)
    # A plain LSTM has no peepholes: such a state_dict does not load into one (torch's error).
    with pytest.raises(RuntimeError, match="peephole_l0"):
        fastlstm.LSTM(4, 6).load_state_dict(fastlstm.LSTM(4, 6, peephole=True).state_dict())
