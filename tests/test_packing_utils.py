"""fastlstm's variable-length utilities against torch.nn.utils.rnn, on NumPy.

Every function is compared with torch's on seeded random shapes: both layouts, sorted and unsorted
batches, trailing feature dims of 0, 1 or 2 extra dimensions, padding values, total_length, padding
side, and the round trips through unpack_sequence / unpad_sequence. Then every error of the spec.

With tied lengths and enforce_sorted=False torch.sort may order ties differently from fastlstm, so
there sorted_indices/data are checked for self-consistency (a valid descending sort whose packing
equals torch's packing of that same order) and the round-tripped, unsorted results against torch's.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from torch.nn.utils import rnn as trnn

import fastlstm

TRAILING = [(), (3,), (2, 3)]
DTYPES = [np.float32, np.float64, np.int64]


# ----------------------------------------------------------------------------------- helpers
def _rng(*key) -> np.random.Generator:
    """A generator seeded from `key` (zlib.crc32, unlike hash(), is the same in every process)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _values(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-1000, 1000, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _lengths(rng: np.random.Generator, kind: str, batch: int, max_len: int) -> np.ndarray:
    """Lengths of `kind` in the caller's order (unsorted unless kind says so)."""
    if kind == "distinct":
        lengths = rng.permutation(np.arange(1, max_len + 1))[:batch]
    elif kind == "ties":
        lengths = rng.integers(1, max_len + 1, size=batch)
        lengths[: batch // 2] = lengths[-1]  # guarantee at least one tie
    elif kind == "equal":
        lengths = np.full(batch, max_len)
    elif kind == "single":
        lengths = np.array([max_len])
    else:
        raise AssertionError(kind)
    return lengths.astype(np.int64)


def _padded(rng, lengths, trailing, dtype, batch_first, extra_steps=0, fill=None):
    """A padded batch whose padding is filled with `fill` (garbage that must never be packed)."""
    steps = int(lengths.max()) + extra_steps
    x = _values(rng, (steps, lengths.size) + trailing, dtype)
    if fill is not None:
        for i, n in enumerate(lengths.tolist()):
            x[n:, i] = fill
    return np.ascontiguousarray(np.swapaxes(x, 0, 1)) if batch_first else x


def _t(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def _np(tensor):
    return None if tensor is None else tensor.numpy()


def _assert_same_array(actual, expected_tensor):
    expected = _np(expected_tensor)
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_array_equal(actual, expected)


def _assert_indices(actual, expected_tensor):
    if expected_tensor is None:
        assert actual is None
    else:
        _assert_same_array(actual, expected_tensor)


def _assert_valid_packing(packed: fastlstm.PackedSequence, x_steps_first: np.ndarray, lengths: np.ndarray):
    """Checks a fastlstm packing of tied lengths: its sort is a valid descending order and its
    data/batch_sizes equal torch's packing of the batch permuted into that very order."""
    si, ui = packed.sorted_indices, packed.unsorted_indices
    assert si.dtype == np.int64 and ui.dtype == np.int64
    np.testing.assert_array_equal(np.sort(si), np.arange(lengths.size))
    np.testing.assert_array_equal(si[ui], np.arange(lengths.size))
    assert np.all(np.diff(lengths[si]) <= 0), lengths[si]
    ref = trnn.pack_padded_sequence(_t(x_steps_first[:, si]), _t(lengths[si]), enforce_sorted=True)
    _assert_same_array(packed.data, ref.data)
    _assert_same_array(packed.batch_sizes, ref.batch_sizes)


# ----------------------------------------------------------------------------------- PackedSequence
def test_packed_sequence_is_a_namedtuple_like_torchs():
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    bs = np.array([2, 1], dtype=np.int64)
    si = np.array([1, 0], dtype=np.int64)
    ui = np.array([1, 0], dtype=np.int64)
    packed = fastlstm.PackedSequence(data, bs, si, ui)
    assert fastlstm.PackedSequence._fields == trnn.PackedSequence._fields
    d, b, s, u = packed  # unpackable
    assert d is data and b is bs and s is si and u is ui
    assert list(iter(packed))[0] is data
    assert packed.data is data and packed.batch_sizes is bs
    assert packed.sorted_indices is si and packed.unsorted_indices is ui
    default = fastlstm.PackedSequence(data, bs)
    assert default.sorted_indices is None and default.unsorted_indices is None


# ----------------------------------------------------------------------------------- pack_padded_sequence
@pytest.mark.parametrize("trailing", TRAILING, ids=lambda t: f"trail{len(t)}")
@pytest.mark.parametrize("batch_first", [False, True], ids=["LN", "NL"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("seed", range(3))
def test_pack_padded_sequence_sorted_matches_torch(trailing, batch_first, dtype, seed):
    rng = _rng("pps", trailing, batch_first, dtype, seed)
    batch = int(rng.integers(2, 7))
    lengths = np.sort(rng.integers(1, 9, size=batch))[::-1].copy()
    lengths[0] = max(lengths[0], 2)
    fill = -7 if np.issubdtype(dtype, np.integer) else np.nan
    x = _padded(rng, lengths, trailing, dtype, batch_first, extra_steps=int(rng.integers(0, 3)), fill=fill)
    for lengths_arg in (lengths, lengths.tolist(), lengths.astype(np.int32)):
        packed = fastlstm.pack_padded_sequence(x, lengths_arg, batch_first=batch_first)
        ref = trnn.pack_padded_sequence(_t(x), list(lengths), batch_first=batch_first)
        assert isinstance(packed, fastlstm.PackedSequence)
        assert packed.data.shape == (lengths.sum(),) + trailing
        _assert_same_array(packed.data, ref.data)
        _assert_same_array(packed.batch_sizes, ref.batch_sizes)
        assert packed.sorted_indices is None and packed.unsorted_indices is None
        assert ref.sorted_indices is None
    if not np.issubdtype(dtype, np.integer):
        assert not np.isnan(packed.data).any()  # no padding packed


@pytest.mark.parametrize("trailing", TRAILING, ids=lambda t: f"trail{len(t)}")
@pytest.mark.parametrize("batch_first", [False, True], ids=["LN", "NL"])
@pytest.mark.parametrize("seed", range(4))
def test_pack_padded_sequence_unsorted_distinct_matches_torch(trailing, batch_first, seed):
    rng = _rng("ppsu", trailing, batch_first, seed)
    lengths = _lengths(rng, "distinct", int(rng.integers(2, 7)), 8)
    if np.all(np.diff(lengths) <= 0):  # make sure the batch is genuinely unsorted
        lengths = lengths[::-1].copy()
    x = _padded(rng, lengths, trailing, np.float32, batch_first, fill=np.nan)
    packed = fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    ref = trnn.pack_padded_sequence(_t(x), _t(lengths), batch_first=batch_first, enforce_sorted=False)
    _assert_same_array(packed.data, ref.data)
    _assert_same_array(packed.batch_sizes, ref.batch_sizes)
    _assert_indices(packed.sorted_indices, ref.sorted_indices)
    _assert_indices(packed.unsorted_indices, ref.unsorted_indices)
    assert not np.array_equal(packed.sorted_indices, np.arange(lengths.size))


@pytest.mark.parametrize("kind", ["ties", "equal", "single"])
@pytest.mark.parametrize("trailing", TRAILING, ids=lambda t: f"trail{len(t)}")
@pytest.mark.parametrize("batch_first", [False, True], ids=["LN", "NL"])
@pytest.mark.parametrize("seed", range(2))
def test_pack_padded_sequence_unsorted_ties(kind, trailing, batch_first, seed):
    rng = _rng("ppst", kind, trailing, batch_first, seed)
    lengths = _lengths(rng, kind, int(rng.integers(3, 7)), int(rng.integers(2, 7)))
    x = _padded(rng, lengths, trailing, np.float64, batch_first, extra_steps=1, fill=np.nan)
    packed = fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    ref = trnn.pack_padded_sequence(_t(x), _t(lengths), batch_first=batch_first, enforce_sorted=False)
    _assert_same_array(packed.batch_sizes, ref.batch_sizes)
    assert packed.sorted_indices is not None and packed.unsorted_indices is not None
    _assert_valid_packing(packed, np.swapaxes(x, 0, 1) if batch_first else x, lengths)
    # Round trip, in the caller's order: equal to torch's whatever its tie order.
    for pf in (False, True):
        padded, out_lengths = fastlstm.pad_packed_sequence(packed, batch_first=pf, padding_value=-3.5)
        ref_padded, ref_lengths = trnn.pad_packed_sequence(ref, batch_first=pf, padding_value=-3.5)
        _assert_same_array(padded, ref_padded)
        _assert_same_array(out_lengths, ref_lengths)
        np.testing.assert_array_equal(out_lengths, lengths)


# ----------------------------------------------------------------------------------- pad_packed_sequence
@pytest.mark.parametrize("trailing", TRAILING, ids=lambda t: f"trail{len(t)}")
@pytest.mark.parametrize("batch_first", [False, True], ids=["LN", "NL"])
@pytest.mark.parametrize("enforce_sorted", [True, False], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("source", ["fastlstm", "torch"])
@pytest.mark.parametrize("seed", range(2))
def test_pad_packed_sequence_matches_torch(trailing, batch_first, enforce_sorted, source, seed):
    rng = _rng("pad", trailing, batch_first, enforce_sorted, source, seed)
    lengths = _lengths(rng, "distinct", int(rng.integers(2, 6)), 7)
    if enforce_sorted:
        lengths = np.sort(lengths)[::-1].copy()
    elif np.all(np.diff(lengths) <= 0):
        lengths = lengths[::-1].copy()
    x = _padded(rng, lengths, trailing, np.float32, False, fill=np.nan)
    ref = trnn.pack_padded_sequence(_t(x), _t(lengths), enforce_sorted=enforce_sorted)
    packed = ref if source == "torch" else fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    steps = int(lengths.max())
    for padding_value in (0.0, -2.25, float("inf")):
        for total_length in (None, steps, steps + 3):
            padded, out_lengths = fastlstm.pad_packed_sequence(
                packed, batch_first=batch_first, padding_value=padding_value, total_length=total_length
            )
            ref_padded, ref_lengths = trnn.pad_packed_sequence(
                ref, batch_first=batch_first, padding_value=padding_value, total_length=total_length
            )
            _assert_same_array(padded, ref_padded)
            _assert_same_array(out_lengths, ref_lengths)
            expected_steps = total_length or steps
            assert padded.shape[:2] == ((lengths.size, expected_steps) if batch_first else (expected_steps, lengths.size))
    # The real sequences survive the round trip, in the caller's order.
    padded, _ = fastlstm.pad_packed_sequence(packed, padding_value=np.nan)
    for i, n in enumerate(lengths.tolist()):
        np.testing.assert_array_equal(padded[:n, i], x[:n, i])
        assert np.isnan(padded[n:, i]).all()


def test_pad_packed_sequence_int_data_and_hand_built_packing():
    # Hand-built: 3 sequences of lengths 3, 1, 2 in the caller's order, stored sorted (0, 2, 1).
    data = np.arange(6 * 2, dtype=np.int64).reshape(6, 2)
    bs = np.array([3, 2, 1], dtype=np.int64)
    si = np.array([0, 2, 1], dtype=np.int64)
    ui = np.array([0, 2, 1], dtype=np.int64)
    ref = trnn.PackedSequence(_t(data), _t(bs), _t(si), _t(ui))
    for unsorted in (ui, None):  # unsorted_indices omitted: derived from sorted_indices, as torch does
        packed = fastlstm.PackedSequence(data, bs, si, unsorted)
        padded, lengths = fastlstm.pad_packed_sequence(packed, batch_first=True, padding_value=-1)
        ref_padded, ref_lengths = trnn.pad_packed_sequence(ref, batch_first=True, padding_value=-1)
        _assert_same_array(padded, ref_padded)
        _assert_same_array(lengths, ref_lengths)
        np.testing.assert_array_equal(lengths, [3, 1, 2])


# ----------------------------------------------------------------------------------- pad_sequence
@pytest.mark.parametrize("trailing", TRAILING, ids=lambda t: f"trail{len(t)}")
@pytest.mark.parametrize("batch_first", [False, True], ids=["LN", "NL"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("seed", range(2))
def test_pad_sequence_matches_torch(trailing, batch_first, padding_side, dtype, seed):
    rng = _rng("padseq", trailing, batch_first, padding_side, dtype, seed)
    lengths = rng.integers(0 if seed else 1, 7, size=int(rng.integers(2, 6)))
    lengths[0] = 6  # at least one sequence needs padding on the others
    lengths[-1] = min(lengths[-1], 3)
    sequences = [_values(rng, (int(n),) + trailing, dtype) for n in lengths]
    padding_value = 0.0 if seed else 9.0
    padded = fastlstm.pad_sequence(sequences, batch_first=batch_first, padding_value=padding_value, padding_side=padding_side)
    ref = trnn.pad_sequence(
        [_t(s) for s in sequences], batch_first=batch_first, padding_value=padding_value, padding_side=padding_side
    )
    _assert_same_array(padded, ref)
    # unpad_sequence undoes right padding.
    if padding_side == "right":
        pieces = fastlstm.unpad_sequence(padded, lengths, batch_first=batch_first)
        ref_pieces = trnn.unpad_sequence(ref, _t(lengths), batch_first=batch_first)
        assert len(pieces) == len(sequences) == len(ref_pieces)
        for piece, ref_piece, sequence in zip(pieces, ref_pieces, sequences):
            _assert_same_array(piece, ref_piece)
            np.testing.assert_array_equal(piece, sequence)


def test_pad_sequence_default_arguments_match_torch():
    rng = _rng("padseq-default")
    sequences = [rng.standard_normal((n, 4)).astype(np.float32) for n in (2, 5, 1)]
    padded = fastlstm.pad_sequence(sequences)
    ref = trnn.pad_sequence([_t(s) for s in sequences])
    _assert_same_array(padded, ref)
    assert padded.shape == (5, 3, 4)


def test_pad_sequence_rejects_unknown_padding_side():
    with pytest.raises(ValueError, match="padding_side"):
        fastlstm.pad_sequence([np.zeros((2, 3), np.float32)], padding_side="middle")


# ----------------------------------------------------------------------------------- pack_sequence / unpack
@pytest.mark.parametrize("trailing", TRAILING, ids=lambda t: f"trail{len(t)}")
@pytest.mark.parametrize("kind", ["sorted", "distinct", "ties", "equal", "single"])
@pytest.mark.parametrize("seed", range(2))
def test_pack_sequence_and_unpack_sequence_match_torch(trailing, kind, seed):
    rng = _rng("packseq", trailing, kind, seed)
    batch = int(rng.integers(3, 7))
    if kind == "sorted":
        lengths = np.sort(rng.integers(1, 8, size=batch))[::-1].copy()
    else:
        lengths = _lengths(rng, kind, batch, 7)
        if kind == "distinct" and np.all(np.diff(lengths) <= 0):
            lengths = lengths[::-1].copy()
    sequences = [_values(rng, (int(n),) + trailing, np.float32) for n in lengths]
    torch_sequences = [_t(s) for s in sequences]
    enforce_options = [True, False] if kind in ("sorted", "equal", "single") else [False]
    for enforce_sorted in enforce_options:
        packed = fastlstm.pack_sequence(sequences, enforce_sorted=enforce_sorted)
        ref = trnn.pack_sequence(torch_sequences, enforce_sorted=enforce_sorted)
        _assert_same_array(packed.batch_sizes, ref.batch_sizes)
        assert (packed.sorted_indices is None) == (ref.sorted_indices is None) == enforce_sorted
        if kind in ("ties", "equal") and not enforce_sorted:
            steps_first = np.stack([np.pad(s, [(0, int(lengths.max()) - len(s))] + [(0, 0)] * len(trailing)) for s in sequences], axis=1)
            _assert_valid_packing(packed, steps_first, lengths)
        else:
            _assert_same_array(packed.data, ref.data)
            _assert_indices(packed.sorted_indices, ref.sorted_indices)
            _assert_indices(packed.unsorted_indices, ref.unsorted_indices)
        for source in (packed, ref):
            pieces = fastlstm.unpack_sequence(source)
            assert isinstance(pieces, list) and len(pieces) == len(sequences)
            for piece, sequence in zip(pieces, sequences):
                assert isinstance(piece, np.ndarray)
                assert piece.dtype == sequence.dtype and piece.shape == sequence.shape
                np.testing.assert_array_equal(piece, sequence)
        ref_pieces = trnn.unpack_sequence(ref)
        for piece, ref_piece in zip(fastlstm.unpack_sequence(packed), ref_pieces):
            _assert_same_array(piece, ref_piece)


@pytest.mark.parametrize("batch_first", [False, True], ids=["LN", "NL"])
@pytest.mark.parametrize("trailing", TRAILING, ids=lambda t: f"trail{len(t)}")
def test_unpad_sequence_round_trip_matches_torch(batch_first, trailing):
    rng = _rng("unpad", batch_first, trailing)
    lengths = np.array([3, 6, 1, 4], dtype=np.int64)
    sequences = [rng.standard_normal((int(n),) + trailing) for n in lengths]
    padded = fastlstm.pad_sequence(sequences, batch_first=batch_first, padding_value=np.nan)
    for lengths_arg in (lengths, lengths.tolist()):
        pieces = fastlstm.unpad_sequence(padded, lengths_arg, batch_first=batch_first)
        ref_pieces = trnn.unpad_sequence(_t(padded), _t(lengths), batch_first=batch_first)
        assert len(pieces) == 4
        for piece, ref_piece, sequence in zip(pieces, ref_pieces, sequences):
            _assert_same_array(piece, ref_piece)
            np.testing.assert_array_equal(piece, sequence)


@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("batch_first", [False, True], ids=["LN", "NL"])
def test_full_round_trip_padded_packed_padded(enforce_sorted, batch_first):
    rng = _rng("round", enforce_sorted, batch_first)
    lengths = np.array([5, 4, 4, 2, 1]) if enforce_sorted else np.array([2, 5, 1, 4, 4])
    x = _padded(rng, lengths, (3,), np.float64, batch_first, fill=0.0)
    packed = fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    padded, out_lengths = fastlstm.pad_packed_sequence(packed, batch_first=batch_first)
    np.testing.assert_array_equal(padded, x)
    np.testing.assert_array_equal(out_lengths, lengths)
    assert out_lengths.dtype == np.int64
    pieces = fastlstm.unpack_sequence(packed)
    again = fastlstm.pack_sequence(pieces, enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(again.data, packed.data)
    np.testing.assert_array_equal(again.batch_sizes, packed.batch_sizes)


def test_lengths_as_torch_tensor():
    x = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    lengths = torch.tensor([2, 4, 1])
    packed = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=False)
    ref = trnn.pack_padded_sequence(_t(x), lengths, enforce_sorted=False)
    _assert_same_array(packed.data, ref.data)
    _assert_same_array(packed.sorted_indices, ref.sorted_indices)


# ----------------------------------------------------------------------------------- errors
def _x(steps=4, batch=3, features=2):
    return np.random.default_rng(0).standard_normal((steps, batch, features)).astype(np.float32)


def _both_raise(fast_call, torch_call, match, fast_exc=ValueError):
    """fastlstm raises `fast_exc` matching `match`; torch rejects the same input (so the case is
    a genuine misuse, not a test artefact)."""
    with pytest.raises(fast_exc, match=match):
        fast_call()
    if torch_call is not None:
        with pytest.raises((RuntimeError, ValueError)):
            torch_call()


def test_input_error_is_value_and_runtime_error():
    assert issubclass(fastlstm.InputError, ValueError)
    assert issubclass(fastlstm.InputError, RuntimeError)


@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_not_descending_with_enforce_sorted(batch_first):
    x = _x()
    if batch_first:
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    lengths = [2, 4, 1]
    _both_raise(
        lambda: fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first),
        lambda: trnn.pack_padded_sequence(_t(x), lengths, batch_first=batch_first),
        "sorted in decreasing order",
    )
    with pytest.raises(fastlstm.InputError):
        fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first)
    # The same lengths are fine without enforce_sorted.
    fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)


def test_pack_sequence_not_descending_with_enforce_sorted():
    sequences = [np.ones((n, 2), np.float32) for n in (1, 3, 2)]
    _both_raise(
        lambda: fastlstm.pack_sequence(sequences),
        lambda: trnn.pack_sequence([_t(s) for s in sequences]),
        "sorted in decreasing order",
    )
    fastlstm.pack_sequence(sequences, enforce_sorted=False)


@pytest.mark.parametrize(
    "lengths,enforce_sorted", [([4, 2, 0], True), ([2, 0, 4], False), ([4, 3, -1], True), ([3, -2, 4], False)]
)
def test_length_zero_or_negative(lengths, enforce_sorted):
    x = _x()
    _both_raise(
        lambda: fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted),
        lambda: trnn.pack_padded_sequence(_t(x), lengths, enforce_sorted=enforce_sorted),
        "greater than 0",
    )


def test_pack_sequence_with_empty_sequence():
    sequences = [np.ones((n, 2), np.float32) for n in (3, 0, 2)]
    _both_raise(
        lambda: fastlstm.pack_sequence(sequences, enforce_sorted=False),
        lambda: trnn.pack_sequence([_t(s) for s in sequences], enforce_sorted=False),
        "greater than 0",
    )


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths,enforce_sorted", [([5, 2, 1], True), ([2, 5, 1], False), ([9, 9, 9], True)])
def test_length_above_padded_length(batch_first, lengths, enforce_sorted):
    x = _x(steps=4)
    if batch_first:
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
    with pytest.raises(ValueError, match="exceeds the padded length 4"):
        fastlstm.pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)
    # The padded length itself is fine.
    ok = [min(n, 4) for n in lengths]
    fastlstm.pack_padded_sequence(x, ok, batch_first=batch_first, enforce_sorted=enforce_sorted)


@pytest.mark.parametrize("lengths", [[3, 2], [4, 3, 2, 1], [3]])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_lengths_count_different_from_batch(lengths, enforce_sorted):
    x = _x(batch=3)
    _both_raise(
        lambda: fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted),
        # torch itself only checks the count when it does not sort (sorting silently drops sequences)
        (lambda: trnn.pack_padded_sequence(_t(x), lengths)) if enforce_sorted else None,
        r"len\(lengths\)",
    )


def test_unpad_sequence_lengths_count_different_from_batch():
    padded = np.zeros((4, 3, 2), np.float32)
    with pytest.raises(ValueError, match="lengths"):
        fastlstm.unpad_sequence(padded, [4, 3])


@pytest.mark.parametrize("total_length", [0, 3, 4])
def test_total_length_shorter_than_longest(total_length):
    x = _x(steps=5)
    lengths = [5, 3, 2]
    packed = fastlstm.pack_padded_sequence(x, lengths)
    ref = trnn.pack_padded_sequence(_t(x), lengths)
    _both_raise(
        lambda: fastlstm.pad_packed_sequence(packed, total_length=total_length),
        lambda: trnn.pad_packed_sequence(ref, total_length=total_length),
        "total_length",
    )
    with pytest.raises(ValueError):
        fastlstm.pad_packed_sequence(ref, total_length=total_length)  # a torch PackedSequence too


@pytest.mark.parametrize(
    "batch_sizes,rows",
    [
        ([1, 2], 3),  # increasing
        ([2, 1, 2], 5),  # increasing later
        ([2, 0], 2),  # a step with no sequence
        ([2, 1], 4),  # sums to 3, data has 4 rows
        ([3, 2], 4),  # sums to 5, data has 4 rows
    ],
)
def test_pad_packed_sequence_rejects_bad_batch_sizes(batch_sizes, rows):
    data = np.zeros((rows, 2), np.float32)
    packed = fastlstm.PackedSequence(data, np.array(batch_sizes, dtype=np.int64))
    with pytest.raises(ValueError, match="batch_sizes"):
        fastlstm.pad_packed_sequence(packed)
    with pytest.raises(ValueError, match="batch_sizes"):
        fastlstm.unpack_sequence(packed)


def test_pad_packed_sequence_rejects_indices_that_are_not_a_permutation():
    data = np.zeros((3, 2), np.float32)
    bs = np.array([2, 1], dtype=np.int64)
    packed = fastlstm.PackedSequence(data, bs, np.array([0, 0], dtype=np.int64), None)
    with pytest.raises(ValueError, match="sorted_indices"):
        fastlstm.pad_packed_sequence(packed)


def test_pack_padded_sequence_strided_input_matches_torch():
    rng = _rng("strided")
    base = rng.standard_normal((12, 10, 6)).astype(np.float32)
    x = base[::2, ::2, 1:5]  # a non-contiguous view (6, 5, 4)
    assert not x.flags.c_contiguous
    lengths = np.array([2, 6, 1, 5, 3])
    packed = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=False)
    ref = trnn.pack_padded_sequence(_t(x), _t(lengths), enforce_sorted=False)
    _assert_same_array(packed.data, ref.data)
    _assert_same_array(packed.sorted_indices, ref.sorted_indices)
