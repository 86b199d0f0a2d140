"""Shared helpers: a torch.nn.LSTM and a fastlstm.LSTM with the same weights, and comparisons of
their forward passes. torch is the reference for every behaviour tested here."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

import fastlstm

# Model dtype -> (torch dtype, absolute tolerance against torch).
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
ATOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-10}

# Outputs of a randomly initialised LSTM on standard-normal input are of order 0.1; anything
# below this means the comparison would pass for a model that returns zeros.
NONTRIVIAL = 1e-2


def make_pair(
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    bidirectional: bool = False,
    proj_size: int = 0,
    dtype=np.float32,
    seed: int = 0,
    num_threads: Optional[int] = None,
    weight_scale: float = 1.0,
) -> Tuple[torch.nn.LSTM, fastlstm.LSTM]:
    """A torch.nn.LSTM seeded with torch.manual_seed(seed), in eval mode, and fastlstm's copy.

    weight_scale multiplies torch's initial weights: deep models without bias shrink their
    signal layer by layer, and larger weights keep every layer's output far above the tolerance.
    """
    torch.manual_seed(seed)
    module = torch.nn.LSTM(
        input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
        bidirectional=bidirectional, proj_size=proj_size, dtype=TORCH_DTYPE[np.dtype(dtype)],
    ).eval()
    if weight_scale != 1.0:
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.mul_(weight_scale)
    return module, fastlstm.LSTM.from_torch(module, num_threads=num_threads)


def random_input(module: torch.nn.LSTM, steps: int, batch: Optional[int], dtype=np.float32, seed: int = 1) -> np.ndarray:
    """Standard-normal input: (L, H_in) when batch is None, else (L, N, H_in) or (N, L, H_in)."""
    rng = np.random.default_rng(seed)
    if batch is None:
        shape = (steps, module.input_size)
    elif module.batch_first:
        shape = (batch, steps, module.input_size)
    else:
        shape = (steps, batch, module.input_size)
    return rng.standard_normal(shape).astype(dtype)


def random_hx(module: torch.nn.LSTM, batch: Optional[int], dtype=np.float32, seed: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """A non-zero (h_0, c_0) of torch's shapes; without the batch dimension when batch is None."""
    rng = np.random.default_rng(seed)
    layers = module.num_layers * (2 if module.bidirectional else 1)
    h_size = module.proj_size or module.hidden_size
    lead = (layers,) if batch is None else (layers, batch)
    h_0 = rng.standard_normal(lead + (h_size,)).astype(dtype)
    c_0 = rng.standard_normal(lead + (module.hidden_size,)).astype(dtype)
    return h_0, c_0


def torch_forward(module: torch.nn.LSTM, x: np.ndarray, hx=None):
    """torch's output, (h_n, c_n) as NumPy arrays, on contiguous copies of the arrays given."""
    def to_torch(array):
        return torch.from_numpy(np.ascontiguousarray(array))

    with torch.no_grad():
        output, (h_n, c_n) = module(to_torch(x), None if hx is None else (to_torch(hx[0]), to_torch(hx[1])))
    return output.numpy(), (h_n.numpy(), c_n.numpy())


def assert_same_results(actual, expected, atol: float, require_nontrivial: bool = True) -> None:
    """output, (h_n, c_n) of fastlstm equal torch's: same shapes, dtypes, values within atol."""
    (out, (h_n, c_n)), (ref_out, (ref_h, ref_c)) = actual, expected
    for name, got, want in (("output", out, ref_out), ("h_n", h_n, ref_h), ("c_n", c_n, ref_c)):
        assert isinstance(got, np.ndarray), f"{name}: expected a numpy.ndarray, got {type(got).__name__}"
        assert got.shape == want.shape, f"{name}: shape {got.shape}, torch's is {want.shape}"
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, torch's is {want.dtype}"
        np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=name)
        if require_nontrivial and want.size:
            assert np.abs(want).max() > NONTRIVIAL, f"{name}: reference output is trivially small"


def assert_matches_torch(module, model, x, hx=None, *, fast_x=None, fast_hx=None, require_nontrivial=True):
    """Runs torch on (x, hx) and fastlstm on (fast_x, fast_hx) (default: the same arrays) and
    compares. Returns fastlstm's result."""
    expected = torch_forward(module, x, hx)
    actual = model(x if fast_x is None else fast_x, hx if fast_hx is None else fast_hx)
    assert_same_results(actual, expected, ATOL[np.dtype(model.dtype)], require_nontrivial)
    return actual


def state_of(model: fastlstm.LSTM):
    """A snapshot of every parameter, to show that a failed operation changed nothing."""
    return {name: value.copy() for name, value in model.named_parameters()}


def assert_state_equal(model: fastlstm.LSTM, snapshot) -> None:
    current = state_of(model)
    assert list(current) == list(snapshot)
    for name, value in snapshot.items():
        assert np.array_equal(current[name], value), f"{name} changed"
