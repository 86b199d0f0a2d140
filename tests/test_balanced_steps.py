"""Layers whose recurrent weights are large (at least half a core's L2 per thread: 256 KiB on a
Zen 3, 1 MiB on a Xeon with 2 MiB of L2) share out each step's
gate blocks: a thread done with its own blocks runs the blocks of slower threads that nobody has
started. Whoever runs a block, the result must be torch's, at every thread count, with packed
rows that start and end at different steps, with h_0/c_0 and with projections; and the same,
bit for bit, from one call to the next."""

import numpy as np
import pytest
import torch
from torch.nn.utils import rnn

import fastlstm
from lstm_helpers import assert_matches_torch, make_pair, random_hx, random_input


@pytest.mark.parametrize("num_threads", [2, 3, 4])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_large_layers_match_torch_at_every_thread_count(num_threads, num_layers):
    # H = 512: W_hh is 2048 x 512 floats (4 MiB), >= 1 MiB per thread up to 4 threads.
    module, model = make_pair(32, 512, num_layers=num_layers, num_threads=num_threads)
    x = random_input(module, 40, 6)
    assert_matches_torch(module, model, x, random_hx(module, 6))


@pytest.mark.parametrize("num_threads", [2, 3])
def test_large_projected_layers_match_torch(num_threads):
    # H = 1024, proj 256: W_hh is 4096 x 256 (4 MiB); the projection runs after every step.
    module, model = make_pair(16, 1024, num_layers=2, proj_size=256, num_threads=num_threads)
    x = random_input(module, 25, 4)
    assert_matches_torch(module, model, x, random_hx(module, 4))


@pytest.mark.parametrize("num_threads", [2, 3])
def test_large_layers_on_packed_sequences(num_threads):
    torch.manual_seed(0)
    module = torch.nn.LSTM(8, 512, num_layers=2).eval()
    model = fastlstm.LSTM.from_torch(module, num_threads=num_threads)
    lengths = torch.tensor([30, 3, 17, 1, 30, 9, 22])
    x = torch.randn(30, len(lengths), 8)
    packed = rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    hx = tuple(torch.randn(2, len(lengths), 512) for _ in range(2))
    with torch.no_grad():
        expected, (h_n, c_n) = module(packed, hx)
    got, (got_h, got_c) = model(packed, hx)
    np.testing.assert_allclose(got.data, expected.data.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_h, h_n.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_c, c_n.numpy(), rtol=0, atol=1e-5)


def test_balanced_results_do_not_depend_on_which_thread_ran_a_block():
    # Which thread runs a block changes from call to call; the arithmetic must not.
    module, model = make_pair(32, 512, num_layers=2, num_threads=3)
    x = random_input(module, 60, 5)
    first, (first_h, first_c) = model(x)
    for _ in range(5):
        again, (h, c) = model(x)
        np.testing.assert_array_equal(again, first)
        np.testing.assert_array_equal(h, first_h)
        np.testing.assert_array_equal(c, first_c)
