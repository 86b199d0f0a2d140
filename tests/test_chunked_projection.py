"""Long, wide batches: the input projections are computed a chunk of steps at a time (about 512
rows per chunk; batch-first input at least 32 steps per chunk), forward chunks from the start and
reverse chunks from the end. A unidirectional stack runs each chunk through every layer before
the next chunk, keeping only a chunk (and the step before it) between layers. These shapes span
several chunks in every input layout."""

import numpy as np
import pytest
import torch
from torch.nn.utils import rnn

import fastlstm
from lstm_helpers import assert_matches_torch, make_pair, random_hx, random_input


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("proj_size", [0, 3])
@pytest.mark.parametrize("hx", [False, True])
def test_time_major_batches_spanning_several_chunks(bidirectional, proj_size, hx):
    # N = 40: 13 steps per chunk, 37 steps -> chunks of 13, 13, 11.
    module, model = make_pair(6, 10, num_layers=2, bidirectional=bidirectional, proj_size=proj_size)
    x = random_input(module, 37, 40)
    assert_matches_torch(module, model, x, random_hx(module, 40) if hx else None)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_batch_first_batches_spanning_several_chunks(bidirectional):
    # N = 20, batch-first: 32 steps per chunk, 70 steps -> chunks of 32, 32, 6.
    module, model = make_pair(5, 9, num_layers=2, batch_first=True, bidirectional=bidirectional, proj_size=4)
    x = random_input(module, 70, 20)
    assert_matches_torch(module, model, x, random_hx(module, 20))


def test_strided_batches_spanning_several_chunks():
    # Every other sequence of a batch of 68: neither time- nor batch-major, one GEMM per step.
    module, model = make_pair(4, 8, bidirectional=True)
    wide = random_input(module, 30, 68)
    x = wide[:, ::2]
    assert_matches_torch(module, model, np.ascontiguousarray(x), fast_x=x)


def assert_packed_matches_torch(module: torch.nn.LSTM, lengths: np.ndarray) -> None:
    """fastlstm and torch on one unsorted packed batch of `lengths` (input size 5)."""
    model = fastlstm.LSTM.from_torch(module)
    x = torch.randn(int(lengths.max()), len(lengths), 5)
    packed = rnn.pack_padded_sequence(x, torch.from_numpy(lengths), enforce_sorted=False)
    with torch.no_grad():
        expected, (h_n, c_n) = module(packed)
    got, (got_h, got_c) = model(packed)
    np.testing.assert_allclose(got.data, expected.data.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_h, h_n.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_c, c_n.numpy(), rtol=0, atol=1e-5)
    assert np.abs(expected.data.numpy()).max() > 1e-2


@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_batches_spanning_several_chunks(bidirectional):
    # 40 sequences of lengths 1..40 (unsorted): 13 steps per chunk, rows per chunk vary.
    torch.manual_seed(0)
    module = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=bidirectional).eval()
    assert_packed_matches_torch(module, np.random.default_rng(1).permutation(np.arange(1, 41)))


@pytest.mark.parametrize("num_threads", [1, 2, 3])
@pytest.mark.parametrize("proj_size", [0, 3])
def test_unidirectional_stack_runs_chunk_by_chunk(num_threads, proj_size):
    # 3 layers, N = 40: chunks of 13, 13, 11 steps pass through all layers in turn; each layer's
    # recurrence carries h and c across the chunk boundaries.
    module, model = make_pair(6, 10, num_layers=3, proj_size=proj_size, num_threads=num_threads)
    x = random_input(module, 37, 40)
    assert_matches_torch(module, model, x, random_hx(module, 40))


@pytest.mark.parametrize("batch_first", [False, True])
def test_unidirectional_stack_on_strided_features(batch_first):
    # Every other input feature (gathered once), batch-first: 32-step chunks, 70 steps.
    module, model = make_pair(5, 9, num_layers=3, batch_first=batch_first)
    wide = np.repeat(random_input(module, 70, 20), 2, axis=-1)
    x = wide[..., ::2]
    assert_matches_torch(module, model, np.ascontiguousarray(x), random_hx(module, 20), fast_x=x)


def test_packed_unidirectional_stack_spanning_several_chunks():
    # Sequences end inside different chunks: each row's h_n is taken in the chunk of its last step.
    torch.manual_seed(0)
    module = torch.nn.LSTM(5, 7, num_layers=3).eval()
    assert_packed_matches_torch(module, np.random.default_rng(2).permutation(np.arange(3, 123, 3)))


def test_stack_buffers_are_reused_across_batch_sizes():
    # The between-layer buffers are sized per call: a long, wide call, a short, narrow one, again.
    module, model = make_pair(4, 8, num_layers=2)
    for steps, batch in [(50, 64), (3, 1), (600, 1), (50, 64)]:
        x = random_input(module, steps, batch, seed=steps + batch)
        assert_matches_torch(module, model, x)
