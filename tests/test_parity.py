"""fastlstm.LSTM computes what torch.nn.LSTM computes (eval mode) on the same weights."""

import itertools

import numpy as np
import pytest
import torch

from lstm_helpers import ATOL, assert_matches_torch, make_pair, random_hx, random_input, torch_forward

DTYPES = [np.float32, np.float64]


def _grid_params():
    # batch None: unbatched (L, H_in) input. 7 -> 25 crosses the engine's 24-unit gate blocks.
    for layers, bias, batch_first, bidirectional, proj, batch, with_hx, dtype in itertools.product(
        [1, 2, 3], [True, False], [False, True], [False, True], [0, 5], [None, 0, 1, 3], [False, True], DTYPES
    ):
        id_ = "-".join([
            f"layers{layers}",
            "bias" if bias else "nobias",
            "batch_first" if batch_first else "time_first",
            "bidir" if bidirectional else "unidir",
            f"proj{proj}",
            "unbatched" if batch is None else f"N{batch}",
            "hx" if with_hx else "nohx",
            np.dtype(dtype).name,
        ])
        yield pytest.param(layers, bias, batch_first, bidirectional, proj, batch, with_hx, dtype, id=id_)


@pytest.mark.parametrize("num_layers,bias,batch_first,bidirectional,proj_size,batch,with_hx,dtype", list(_grid_params()))
def test_forward_matches_torch(num_layers, bias, batch_first, bidirectional, proj_size, batch, with_hx, dtype):
    module, model = make_pair(
        7, 25, num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional,
        proj_size=proj_size, dtype=dtype, weight_scale=3.0,
    )
    x = random_input(module, steps=5, batch=batch, dtype=dtype)
    hx = random_hx(module, batch, dtype=dtype) if with_hx else None
    assert_matches_torch(module, model, x, hx)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize(
    "input_size,hidden_size,proj_size,steps,batch",
    [
        (1, 1, 0, 1, 1),
        (1, 2, 1, 1, 1),
        (7, 33, 0, 7, 2),
        (33, 7, 3, 1, 7),
        (16, 16, 0, 3, 5),
        (3, 31, 30, 2, 1),
        (5, 65, 0, 11, 4),
        (2, 47, 13, 9, 33),
    ],
)
def test_forward_matches_torch_for_odd_sizes(input_size, hidden_size, proj_size, steps, batch, batch_first, dtype):
    module, model = make_pair(
        input_size, hidden_size, num_layers=2, batch_first=batch_first, bidirectional=True,
        proj_size=proj_size, dtype=dtype,
    )
    x = random_input(module, steps=steps, batch=batch, dtype=dtype)
    assert_matches_torch(module, model, x, random_hx(module, batch, dtype=dtype))


@pytest.mark.parametrize(
    "input_size,hidden_size,num_layers,bidirectional,proj_size,batch_first,steps,batch,dtype",
    [
        (256, 512, 2, True, 0, False, 50, 8, np.float32),
        (256, 512, 2, True, 0, True, 50, 8, np.float64),
        (128, 256, 3, False, 64, True, 40, 5, np.float32),
        (100, 300, 1, True, 0, False, 100, None, np.float32),
        # Depths over 512 (the products' depth blocks), a batch of 13 (column panels of 8 and 5).
        (700, 520, 2, False, 260, False, 20, 13, np.float32),
    ],
    ids=["256-512-2layers-bidir-f32", "256-512-2layers-bidir-batch_first-f64", "128-256-3layers-proj64-f32",
         "100-300-unbatched-100steps-f32", "700-520-proj260-batch13-f32"],
)
def test_forward_matches_torch_for_large_models(
    input_size, hidden_size, num_layers, bidirectional, proj_size, batch_first, steps, batch, dtype
):
    module, model = make_pair(
        input_size, hidden_size, num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional,
        proj_size=proj_size, dtype=dtype,
    )
    x = random_input(module, steps=steps, batch=batch, dtype=dtype)
    assert_matches_torch(module, model, x, random_hx(module, batch, dtype=dtype))


@pytest.mark.parametrize("num_threads", [2, 3, 5])
@pytest.mark.parametrize("hidden_size", [7, 25, 100, 130])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_threads_share_the_units_of_any_hidden_size(num_threads, hidden_size, bidirectional):
    # Shares end inside a gate block (the partial block of each share) or on a direction boundary.
    module, model = make_pair(5, hidden_size, num_layers=2, bidirectional=bidirectional, num_threads=num_threads)
    x = random_input(module, steps=4, batch=3)
    assert_matches_torch(module, model, x, random_hx(module, 3))


@pytest.mark.parametrize("num_threads", [1, 2, 3, 8, 64])
def test_forward_matches_torch_for_any_thread_count(num_threads):
    # More threads than gate blocks or projection columns leaves some threads without work.
    module, model = make_pair(6, 21, num_layers=2, bidirectional=True, proj_size=4, num_threads=num_threads)
    assert model.num_threads == num_threads
    x = random_input(module, steps=6, batch=3)
    assert_matches_torch(module, model, x, random_hx(module, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_returns_empty_outputs_shaped_like_torch(batch_first, with_hx, dtype):
    module, model = make_pair(4, 6, num_layers=2, batch_first=batch_first, bidirectional=True, proj_size=3, dtype=dtype)
    x = random_input(module, steps=5, batch=0, dtype=dtype)
    hx = random_hx(module, 0, dtype=dtype) if with_hx else None
    output, (h_n, c_n) = assert_matches_torch(module, model, x, hx)
    assert output.shape == ((0, 5, 6) if batch_first else (5, 0, 6))
    assert h_n.shape == (4, 0, 3) and c_n.shape == (4, 0, 6)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_sequence_is_a_value_error(batch_first, batched):
    module, model = make_pair(4, 6, batch_first=batch_first)
    x = random_input(module, steps=0, batch=2 if batched else None)
    with pytest.raises(RuntimeError, match="sequence length"):
        torch_forward(module, x)  # torch refuses L = 0 too
    with pytest.raises(ValueError, match="sequence length"):
        model(x)


def test_omitted_hx_equals_zero_state():
    module, model = make_pair(5, 9, num_layers=2, bidirectional=True, proj_size=4)
    x = random_input(module, steps=4, batch=3)
    h_0, c_0 = random_hx(module, 3)
    zeros = (np.zeros_like(h_0), np.zeros_like(c_0))
    without, (h_without, c_without) = model(x)
    with_zeros, (h_zeros, c_zeros) = model(x, zeros)
    assert np.array_equal(without, with_zeros)
    assert np.array_equal(h_without, h_zeros) and np.array_equal(c_without, c_zeros)
    # ... and a non-zero state does change the result.
    assert not np.allclose(model(x, (h_0, c_0))[0], without)


def test_repeated_calls_give_identical_results():
    module, model = make_pair(5, 9, num_layers=2, bidirectional=True)
    x = random_input(module, steps=4, batch=3)
    first = model(x)
    model(random_input(module, steps=9, batch=7, seed=5))  # different shapes in between
    second = model(x)
    assert np.array_equal(first[0], second[0])
    assert np.array_equal(first[1][0], second[1][0]) and np.array_equal(first[1][1], second[1][1])


def test_forward_does_not_modify_its_arguments():
    module, model = make_pair(5, 9, num_layers=2, bidirectional=True, proj_size=3)
    x = random_input(module, steps=4, batch=3)
    h_0, c_0 = random_hx(module, 3)
    copies = (x.copy(), h_0.copy(), c_0.copy())
    model(x, (h_0, c_0))
    assert all(np.array_equal(a, b) for a, b in zip((x, h_0, c_0), copies))


def test_forward_method_equals_call():
    module, model = make_pair(5, 9)
    x = random_input(module, steps=4, batch=2)
    hx = random_hx(module, 2)
    assert np.array_equal(model.forward(x, hx)[0], model(x, hx)[0])


def test_from_torch_keeps_torch_dtype():
    module64, model64 = make_pair(3, 4, dtype=np.float64)
    assert model64.dtype == np.float64
    _, model32 = make_pair(3, 4, dtype=np.float32)
    assert model32.dtype == np.float32
    x = random_input(module64, steps=3, batch=2, dtype=np.float64)
    assert model64(x)[0].dtype == np.float64
    assert abs(model64(x)[0] - torch_forward(module64, x)[0]).max() <= ATOL[np.dtype(np.float64)]


def test_outputs_are_independent_arrays():
    module, model = make_pair(3, 4)
    x = random_input(module, steps=3, batch=2)
    output, (h_n, c_n) = model(x)
    expected = output.copy()
    output2, _ = model(x)
    output2[...] = 0  # results are the caller's: writing one leaves the others alone
    assert np.array_equal(output, expected)
    assert not np.shares_memory(output, h_n) and not np.shares_memory(h_n, c_n)
