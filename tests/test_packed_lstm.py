"""fastlstm.LSTM on PackedSequence input, against torch.nn.LSTM with the same weights.

For every configuration (bidirectional, stacked, proj_size, batch_first, both dtypes) and length
set (distinct unsorted, tied unsorted, all equal, a single sequence, sorted), with and without hx,
and for both input kinds (a torch PackedSequence passed directly, a fastlstm one packed from the
NumPy array): .data, the padded output, h_n and c_n against torch's. Then the packed output against
fastlstm run on each sequence alone (unbatched), which shares no code path with the packed one; and
the errors of the spec.

The padding of every padded input is NaN: any padding that leaks into the computation poisons the
outputs, so a leak cannot go unnoticed.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from torch.nn.utils import rnn as trnn

import fastlstm

pytestmark = pytest.mark.filterwarnings(
    "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
ATOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}
NONTRIVIAL = 1e-2  # outputs below this would let a model returning zeros pass

# (input_size, hidden_size, num_layers, bidirectional, proj_size, batch_first, dtype)
CONFIGS = {
    "uni": (5, 7, 1, False, 0, False, np.float32),
    "bi": (5, 7, 1, True, 0, False, np.float32),
    "3layers-batchfirst": (4, 6, 3, False, 0, True, np.float32),
    "bi-2layers-proj": (4, 8, 2, True, 3, False, np.float32),
    "bi-3layers-proj-f64-batchfirst": (3, 6, 3, True, 4, True, np.float64),
    "bi-3layers-f64": (3, 5, 3, True, 0, False, np.float64),
}
LENGTH_KINDS = ["distinct", "ties", "equal", "single", "sorted"]


# ----------------------------------------------------------------------------------- helpers
def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _make_pair(config: str):
    input_size, hidden, layers, bidirectional, proj, batch_first, dtype = CONFIGS[config]
    torch.manual_seed(zlib.crc32(config.encode()))
    module = torch.nn.LSTM(
        input_size, hidden, num_layers=layers, bidirectional=bidirectional, proj_size=proj,
        batch_first=batch_first, dtype=TORCH_DTYPE[np.dtype(dtype)],
    ).eval()
    with torch.no_grad():  # larger weights: every layer's output stays far above the tolerance
        for parameter in module.parameters():
            parameter.mul_(2.0)
    model = fastlstm.LSTM.from_torch(module)
    assert model.dtype == np.dtype(dtype)
    return module, model


def _lengths(rng, kind: str) -> np.ndarray:
    """Lengths in the caller's order; the unsorted kinds are guaranteed not to be sorted."""
    if kind == "distinct":
        lengths = rng.permutation(np.arange(1, 9))[:5]
        if np.all(np.diff(lengths) <= 0):
            lengths = lengths[::-1]
    elif kind == "ties":
        lengths = np.array([3, 6, 1, 6, 3, 2, 1])[rng.permutation(7)]
        if np.all(np.diff(lengths) <= 0):
            lengths = lengths[::-1]
    elif kind == "equal":
        lengths = np.full(4, 5)
    elif kind == "single":
        lengths = np.array([6])
    elif kind == "sorted":
        lengths = np.array([7, 5, 5, 2, 1])
    else:
        raise AssertionError(kind)
    return np.ascontiguousarray(lengths, dtype=np.int64)


def _padded_input(rng, lengths, input_size, dtype, extra_steps=1):
    """(L, N, H_in) standard-normal values, NaN beyond each sequence's length."""
    x = rng.standard_normal((int(lengths.max()) + extra_steps, lengths.size, input_size)).astype(dtype)
    for i, n in enumerate(lengths.tolist()):
        x[n:, i] = np.nan
    return x


def _hx(rng, module, batch, dtype):
    layers = module.num_layers * (2 if module.bidirectional else 1)
    h_out = module.proj_size or module.hidden_size
    h0 = rng.standard_normal((layers, batch, h_out)).astype(dtype)
    c0 = rng.standard_normal((layers, batch, module.hidden_size)).astype(dtype)
    return h0, c0


def _torch_packed_from(packed: fastlstm.PackedSequence):
    """The same packing (same sort), as a torch PackedSequence."""
    opt = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    return trnn.PackedSequence(
        torch.from_numpy(packed.data), torch.from_numpy(packed.batch_sizes),
        opt(packed.sorted_indices), opt(packed.unsorted_indices),
    )


def _close(actual, expected, atol, what):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert isinstance(actual, np.ndarray), (what, type(actual))
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert actual.dtype == expected.dtype, (what, actual.dtype, expected.dtype)
    assert np.isfinite(actual).all(), f"{what}: non-finite values (padding leaked?)"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, err_msg=what)


def _nontrivial(array, what):
    assert np.abs(array).max() > NONTRIVIAL, f"{what} is ~0: the comparison would be vacuous"


def _torch_run(module, packed, hx):
    with torch.no_grad():
        hx_t = None if hx is None else tuple(torch.from_numpy(a) for a in hx)
        return module(packed, hx_t)


# ----------------------------------------------------------------------------------- parity with torch
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("input_kind", ["torch-packed", "fastlstm-packed"])
@pytest.mark.parametrize("kind", LENGTH_KINDS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_packed_forward_matches_torch(config, kind, input_kind, with_hx):
    module, model = _make_pair(config)
    dtype = model.dtype
    atol = ATOL[dtype]
    rng = _rng(config, kind, input_kind, with_hx)
    lengths = _lengths(rng, kind)
    enforce_sorted = kind in ("sorted", "single")
    x = _padded_input(rng, lengths, module.input_size, dtype)
    hx = _hx(rng, module, lengths.size, dtype) if with_hx else None

    torch_packed = trnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), enforce_sorted=enforce_sorted)
    if input_kind == "torch-packed":
        packed_in = torch_packed
        same_packing = torch_packed
    else:
        packed_in = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
        assert isinstance(packed_in, fastlstm.PackedSequence)
        same_packing = _torch_packed_from(packed_in)  # torch on fastlstm's very packing
    if not enforce_sorted:
        assert packed_in.sorted_indices is not None
        if kind in ("distinct", "ties"):
            assert not np.array_equal(np.asarray(packed_in.sorted_indices), np.arange(lengths.size))

    output, (h_n, c_n) = model(packed_in, hx)

    # .data and the packing fields, against torch on the identical packing.
    ref_output, (ref_h, ref_c) = _torch_run(module, same_packing, hx)
    assert isinstance(output, fastlstm.PackedSequence)
    width = (2 if module.bidirectional else 1) * (module.proj_size or module.hidden_size)
    assert output.data.shape == (lengths.sum(), width)
    _close(output.data, ref_output.data, atol, "output.data")
    np.testing.assert_array_equal(output.batch_sizes, ref_output.batch_sizes.numpy())
    assert output.batch_sizes.dtype == np.int64
    for name in ("sorted_indices", "unsorted_indices"):
        ours, theirs = getattr(output, name), getattr(ref_output, name)
        assert (ours is None) == (theirs is None), name
        if ours is not None:
            np.testing.assert_array_equal(ours, theirs.numpy())
    _close(h_n, ref_h, atol, "h_n")
    _close(c_n, ref_c, atol, "c_n")
    _nontrivial(output.data, "output.data")
    _nontrivial(h_n, "h_n")

    # Padded output and final states, in the caller's order: against torch on torch's own packing
    # (whatever order it gives tied lengths, these must agree).
    ref2_output, (ref2_h, ref2_c) = _torch_run(module, torch_packed, hx)
    for batch_first in (False, True):
        padded, out_lengths = fastlstm.pad_packed_sequence(output, batch_first=batch_first)
        ref_padded, ref_lengths = trnn.pad_packed_sequence(ref2_output, batch_first=batch_first)
        _close(padded, ref_padded, atol, f"padded output (batch_first={batch_first})")
        np.testing.assert_array_equal(out_lengths, lengths)
        np.testing.assert_array_equal(ref_lengths.numpy(), lengths)
    _close(h_n, ref2_h, atol, "h_n (torch's packing)")
    _close(c_n, ref2_c, atol, "c_n (torch's packing)")


@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_packed_forward_batch_first_padding_and_pack_sequence(config, with_hx):
    """Packs via batch_first=True padded input and via pack_sequence; same results as torch."""
    module, model = _make_pair(config)
    dtype = model.dtype
    atol = ATOL[dtype]
    rng = _rng("bf", config, with_hx)
    lengths = np.array([2, 5, 1, 5, 3], dtype=np.int64)
    x = _padded_input(rng, lengths, module.input_size, dtype)
    x_bf = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    hx = _hx(rng, module, lengths.size, dtype) if with_hx else None
    ref_output, (ref_h, ref_c) = _torch_run(
        module, trnn.pack_padded_sequence(torch.from_numpy(x_bf), lengths.tolist(), batch_first=True, enforce_sorted=False), hx
    )
    ref_padded, _ = trnn.pad_packed_sequence(ref_output, batch_first=True)
    sequences = [x[:n, i] for i, n in enumerate(lengths.tolist())]
    for packed in (
        fastlstm.pack_padded_sequence(x_bf, lengths, batch_first=True, enforce_sorted=False),
        fastlstm.pack_sequence(sequences, enforce_sorted=False),
        trnn.pack_sequence([torch.from_numpy(s) for s in sequences], enforce_sorted=False),
    ):
        output, (h_n, c_n) = model(packed, hx)
        padded, _ = fastlstm.pad_packed_sequence(output, batch_first=True)
        _close(padded, ref_padded, atol, "padded output")
        _close(h_n, ref_h, atol, "h_n")
        _close(c_n, ref_c, atol, "c_n")
        _nontrivial(padded, "padded output")


def test_packed_output_feeds_the_next_lstm():
    """A packed output is valid packed input: two stacked models agree with torch's two."""
    module_a, model_a = _make_pair("bi")  # output width 14
    torch.manual_seed(7)
    module_b = torch.nn.LSTM(14, 4).eval()
    model_b = fastlstm.LSTM.from_torch(module_b)
    rng = _rng("chain")
    lengths = np.array([3, 6, 2, 6], dtype=np.int64)
    x = _padded_input(rng, lengths, 5, np.float32)
    packed = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=False)
    mid, _ = model_a(packed)
    out, (h_n, c_n) = model_b(mid)
    with torch.no_grad():
        ref_mid, _ = module_a(_torch_packed_from(packed))
        ref_out, (ref_h, ref_c) = module_b(ref_mid)
    _close(out.data, ref_out.data, 1e-5, "output.data")
    _close(h_n, ref_h, 1e-5, "h_n")
    _close(c_n, ref_c, 1e-5, "c_n")
    _nontrivial(out.data, "output.data")


# ----------------------------------------------------------------------------------- independent check
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("kind", ["distinct", "ties", "sorted"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_packed_equals_each_sequence_alone(config, kind, with_hx):
    """Each sequence of the packed batch gives what fastlstm gives for it alone, unbatched: its
    own last step ends its state, and nothing from the padding or the other sequences leaks in."""
    module, model = _make_pair(config)
    dtype = model.dtype
    atol = ATOL[dtype]
    rng = _rng("alone", config, kind, with_hx)
    lengths = _lengths(rng, kind)
    assert len(set(lengths.tolist())) > 1  # different lengths, so a leak would show
    x = _padded_input(rng, lengths, module.input_size, dtype)
    hx = _hx(rng, module, lengths.size, dtype) if with_hx else None
    packed = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=kind == "sorted")
    output, (h_n, c_n) = model(packed, hx)
    pieces = fastlstm.unpack_sequence(output)
    assert len(pieces) == lengths.size
    for i, n in enumerate(lengths.tolist()):
        alone_hx = None if hx is None else (np.ascontiguousarray(hx[0][:, i]), np.ascontiguousarray(hx[1][:, i]))
        alone, (alone_h, alone_c) = model(np.ascontiguousarray(x[:n, i]), alone_hx)
        assert alone.shape == pieces[i].shape == (n, output.data.shape[1])
        _close(pieces[i], alone, atol, f"output of sequence {i} (length {n})")
        _close(h_n[:, i], alone_h, atol, f"h_n of sequence {i} (length {n})")
        _close(c_n[:, i], alone_c, atol, f"c_n of sequence {i} (length {n})")
        _nontrivial(alone_h, f"h_n of sequence {i}")


def test_packed_output_is_independent_of_padding_values():
    module, model = _make_pair("bi-2layers-proj")
    rng = _rng("padding-values")
    lengths = np.array([2, 5, 3], dtype=np.int64)
    x = _padded_input(rng, lengths, module.input_size, np.float32, extra_steps=2)
    results = []
    for fill in (0.0, 1e6, -3.0):
        filled = np.where(np.isnan(x), np.float32(fill), x)
        out, (h_n, c_n) = model(fastlstm.pack_padded_sequence(filled, lengths, enforce_sorted=False))
        results.append((out.data, h_n, c_n))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_hx_is_in_callers_order():
    """Swapping two sequences and their hx columns swaps the results: hx follows the caller's
    order, not the sorted one."""
    module, model = _make_pair("bi")
    rng = _rng("hx-order")
    lengths = np.array([2, 6, 4], dtype=np.int64)
    x = _padded_input(rng, lengths, module.input_size, np.float32)
    h0, c0 = _hx(rng, module, 3, np.float32)
    out, (h_n, c_n) = model(fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=False), (h0, c0))
    perm = np.array([1, 2, 0])
    out_p, (h_p, c_p) = model(
        fastlstm.pack_padded_sequence(np.ascontiguousarray(x[:, perm]), lengths[perm], enforce_sorted=False),
        (np.ascontiguousarray(h0[:, perm]), np.ascontiguousarray(c0[:, perm])),
    )
    np.testing.assert_allclose(h_p, h_n[:, perm], atol=1e-6, rtol=0)
    np.testing.assert_allclose(c_p, c_n[:, perm], atol=1e-6, rtol=0)
    padded, _ = fastlstm.pad_packed_sequence(out)
    padded_p, _ = fastlstm.pad_packed_sequence(out_p)
    np.testing.assert_allclose(padded_p, padded[:, perm], atol=1e-6, rtol=0)
    # and the order matters at all: a different hx assignment changes the result
    _, (h_other, _) = model(fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=False), (h0[:, perm], c0[:, perm]))
    assert np.abs(h_other - h_n).max() > NONTRIVIAL


# ----------------------------------------------------------------------------------- errors
def _small():
    module, model = _make_pair("bi")
    rng = _rng("errors")
    lengths = np.array([3, 4, 1], dtype=np.int64)
    x = _padded_input(rng, lengths, module.input_size, np.float32)
    return module, model, x, lengths


@pytest.mark.parametrize(
    "batch_sizes,rows",
    [
        ([1, 2], 3),  # increasing
        ([3, 1, 2], 6),  # increasing later
        ([2, 0], 2),  # a step with no sequence
        ([2, 1], 4),  # sums to 3, data has 4 rows
        ([3, 2, 1], 5),  # sums to 6, data has 5 rows
    ],
)
@pytest.mark.parametrize("kind", ["fastlstm", "torch"])
def test_lstm_rejects_bad_batch_sizes(batch_sizes, rows, kind):
    module, model = _make_pair("bi")
    data = np.random.default_rng(0).standard_normal((rows, module.input_size)).astype(np.float32)
    bs = np.array(batch_sizes, dtype=np.int64)
    if kind == "fastlstm":
        packed = fastlstm.PackedSequence(data, bs)
    else:
        packed = trnn.PackedSequence(torch.from_numpy(data), torch.from_numpy(bs))
    with pytest.raises(ValueError, match="batch_sizes"):
        model(packed)
    with pytest.raises(fastlstm.InputError):
        model(packed)


@pytest.mark.parametrize("kind", ["fastlstm", "torch"])
@pytest.mark.parametrize("width", [4, 6])
def test_lstm_rejects_wrong_data_width(kind, width):
    module, model = _make_pair("bi")  # input_size 5
    rng = _rng("width", width)
    lengths = np.array([3, 1, 2], dtype=np.int64)
    x = _padded_input(rng, lengths, width, np.float32)
    if kind == "fastlstm":
        packed = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=False)
    else:
        packed = trnn.pack_padded_sequence(torch.from_numpy(x), lengths.tolist(), enforce_sorted=False)
    with pytest.raises(ValueError, match="input_size"):
        model(packed)
    with pytest.raises(RuntimeError):  # torch rejects it too
        with torch.no_grad():
            module(trnn.pack_padded_sequence(torch.from_numpy(x), lengths.tolist(), enforce_sorted=False))


@pytest.mark.parametrize("kind", ["fastlstm", "torch"])
def test_lstm_rejects_wrong_data_dtype(kind):
    module, model, x, lengths = _small()  # float32 model
    x64 = x.astype(np.float64)
    if kind == "fastlstm":
        packed = fastlstm.pack_padded_sequence(x64, lengths, enforce_sorted=False)
    else:
        packed = trnn.pack_padded_sequence(torch.from_numpy(x64), lengths.tolist(), enforce_sorted=False)
    with pytest.raises(TypeError, match="dtype"):
        model(packed)
    # and the float64 model rejects float32 data
    _, model64 = _make_pair("bi-3layers-f64")
    rng = _rng("dtype64")
    x32 = _padded_input(rng, lengths, 3, np.float32)
    with pytest.raises(TypeError, match="dtype"):
        model64(fastlstm.pack_padded_sequence(x32, lengths, enforce_sorted=False))


@pytest.mark.parametrize("wrong", ["h_0", "c_0", "both"])
@pytest.mark.parametrize("batch", [2, 4])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_lstm_rejects_hx_of_wrong_batch_size(wrong, batch, enforce_sorted):
    module, model = _make_pair("bi")
    rng = _rng("hx-batch", wrong, batch, enforce_sorted)
    lengths = np.array([4, 3, 1], dtype=np.int64)
    if not enforce_sorted:
        lengths = lengths[[1, 0, 2]]
    x = _padded_input(rng, lengths, module.input_size, np.float32)
    packed = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    good_h, good_c = _hx(rng, module, 3, np.float32)
    bad_h, bad_c = _hx(rng, module, batch, np.float32)
    h0 = bad_h if wrong in ("h_0", "both") else good_h
    c0 = bad_c if wrong in ("c_0", "both") else good_c
    name = "c_0" if wrong == "c_0" else "h_0"
    with pytest.raises(ValueError, match=name):
        model(packed, (h0, c0))
    if enforce_sorted or batch < 3:  # torch rejects it too (unless its permutation silently drops columns)
        with pytest.raises(RuntimeError):
            with torch.no_grad():
                module(_torch_packed_from(packed), (torch.from_numpy(h0), torch.from_numpy(c0)))
    model(packed, (good_h, good_c))  # the right batch size is accepted


def test_lstm_packed_rejects_extra_feature_dims():
    module, model = _make_pair("bi")
    data = np.zeros((4, 1, module.input_size), np.float32)
    packed = fastlstm.PackedSequence(data, np.array([2, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="2 dimensions"):
        model(packed)
