"""Inputs and states that are not C-contiguous NumPy arrays are read correctly: views with any
non-negative strides are read in place, other layouts are copied, torch CPU tensors are accepted."""

import numpy as np
import pytest
import torch

from lstm_helpers import assert_matches_torch, make_pair, random_hx

DTYPES = [np.float32, np.float64]
H_IN = 6


def _normal(shape, dtype, seed=3):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _misaligned(array):
    """A copy of `array` whose data pointer is one byte past an aligned address."""
    buffer = np.empty(array.nbytes + array.itemsize, dtype=np.uint8)
    start = (-buffer.ctypes.data) % array.itemsize + 1
    view = buffer[start:start + array.nbytes].view(array.dtype).reshape(array.shape)
    view[...] = array
    assert view.ctypes.data % array.itemsize != 0
    return view


# name -> (the model's batch_first, a function dtype -> the view given to fastlstm). torch gets a
# contiguous copy of the same values.
LAYOUTS = {
    "batch_first_contiguous": (True, lambda dt: _normal((4, 5, H_IN), dt)),
    "transposed_batch_first_into_time_first": (False, lambda dt: _normal((4, 5, H_IN), dt).transpose(1, 0, 2)),
    "transposed_time_first_into_batch_first": (True, lambda dt: _normal((5, 4, H_IN), dt).transpose(1, 0, 2)),
    "batch_slice_step2_even": (False, lambda dt: _normal((5, 8, H_IN), dt)[:, ::2]),
    "batch_slice_step2_odd": (False, lambda dt: _normal((5, 7, H_IN), dt)[:, ::2]),
    "batch_slice_step3_batch_first": (True, lambda dt: _normal((7, 5, H_IN), dt)[::3]),
    "time_slice_step2": (False, lambda dt: _normal((9, 3, H_IN), dt)[::2]),
    "time_slice_step2_batch_first_even": (True, lambda dt: _normal((3, 10, H_IN), dt)[:, ::2]),
    "time_slice_step2_batch_first_odd": (True, lambda dt: _normal((3, 9, H_IN), dt)[:, ::2]),
    "single_row_slice": (False, lambda dt: _normal((5, 3, H_IN), dt)[:, 1:2]),
    "single_step_slice_batch_first": (True, lambda dt: _normal((4, 5, H_IN), dt)[:, 2:3]),
    "feature_strided": (False, lambda dt: _normal((5, 3, 2 * H_IN), dt)[..., ::2]),
    "feature_strided_batch_first": (True, lambda dt: _normal((3, 5, 2 * H_IN), dt)[..., ::2]),
    "fortran_order": (False, lambda dt: np.asfortranarray(_normal((5, 3, H_IN), dt))),
    "fortran_order_batch_first": (True, lambda dt: np.asfortranarray(_normal((3, 5, H_IN), dt))),
    "reversed_time": (False, lambda dt: _normal((5, 3, H_IN), dt)[::-1]),
    "reversed_features": (False, lambda dt: _normal((5, 3, H_IN), dt)[..., ::-1]),
    "broadcast_over_batch": (False, lambda dt: np.broadcast_to(_normal((5, 1, H_IN), dt), (5, 3, H_IN))),
    "broadcast_over_time": (False, lambda dt: np.broadcast_to(_normal((1, 3, H_IN), dt), (5, 3, H_IN))),
    "misaligned": (False, lambda dt: _misaligned(_normal((5, 3, H_IN), dt))),
    "unbatched_time_slice": (False, lambda dt: _normal((9, H_IN), dt)[::2]),
    "unbatched_feature_strided": (True, lambda dt: _normal((5, 2 * H_IN), dt)[:, ::2]),
    "unbatched_fortran_order": (False, lambda dt: np.asfortranarray(_normal((5, H_IN), dt))),
}


@pytest.mark.parametrize("proj_size", [0, 4])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_strided_input_is_read_correctly(layout, dtype, proj_size):
    batch_first, make = LAYOUTS[layout]
    x = make(dtype)
    if layout != "batch_first_contiguous":
        assert not x.flags.c_contiguous or x.ctypes.data % x.itemsize, "the layout under test must not be plain"
    module, model = make_pair(
        H_IN, 9, num_layers=2, batch_first=batch_first, bidirectional=True, proj_size=proj_size, dtype=dtype
    )
    batch = None if x.ndim == 2 else (x.shape[0] if batch_first else x.shape[1])
    assert_matches_torch(module, model, np.ascontiguousarray(x), random_hx(module, batch, dtype=dtype), fast_x=x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_hx_is_read_correctly(dtype):
    module, model = make_pair(H_IN, 9, num_layers=2, bidirectional=True, proj_size=4, dtype=dtype)
    x = _normal((5, 3, H_IN), dtype)
    h_0, c_0 = random_hx(module, 3, dtype=dtype)
    strided_h = _normal((3, 4, 4 * 2), dtype)[:, :, ::2].transpose(1, 0, 2)  # (4, 3, 4), all strides odd
    strided_h[...] = h_0
    fortran_c = np.asfortranarray(c_0)
    assert not strided_h.flags.c_contiguous and not fortran_c.flags.c_contiguous
    assert_matches_torch(module, model, x, (h_0, c_0), fast_hx=(strided_h, fortran_c))


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_tensors_are_accepted_as_input_and_hx(dtype):
    module, model = make_pair(H_IN, 9, num_layers=2, bidirectional=True, dtype=dtype)
    x = _normal((5, 3, H_IN), dtype)
    h_0, c_0 = random_hx(module, 3, dtype=dtype)
    assert_matches_torch(
        module, model, x, (h_0, c_0),
        fast_x=torch.from_numpy(x), fast_hx=(torch.from_numpy(h_0), torch.from_numpy(c_0)),
    )


def test_non_contiguous_torch_tensor_is_read_correctly():
    module, model = make_pair(H_IN, 9, num_layers=2, bidirectional=True)
    x_batch_first = torch.randn(3, 5, H_IN, generator=torch.Generator().manual_seed(0))
    x = x_batch_first.transpose(0, 1)  # (L, N, H_in) view of batch-first storage
    assert not x.is_contiguous()
    assert_matches_torch(module, model, x.contiguous().numpy(), fast_x=x)


def test_torch_tensor_that_requires_grad_is_accepted():
    module, model = make_pair(H_IN, 9)
    x = torch.randn(5, 3, H_IN, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert_matches_torch(module, model, x.detach().numpy(), fast_x=x)


def test_torch_output_fed_back_in_is_accepted():
    # The typical pipeline: a torch encoder's output, straight into fastlstm.
    module, model = make_pair(H_IN, 9, batch_first=True)
    with torch.no_grad():
        features = torch.nn.Linear(3, H_IN)(torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)))
    assert_matches_torch(module, model, features.numpy(), fast_x=features)


@pytest.mark.parametrize("dtype", DTYPES)
def test_unpickled_arrays_are_accepted_as_input_and_hx(dtype):
    # pickle (and so multiprocessing) rebuilds an equal dtype object that is not NumPy's
    # canonical instance; it is the same dtype and must be accepted as such.
    import pickle

    module, model = make_pair(H_IN, 9, num_layers=2, bidirectional=True, dtype=dtype)
    x = _normal((5, 3, H_IN), dtype)
    h_0, c_0 = random_hx(module, 3, dtype=dtype)
    fast_x, fast_h, fast_c = pickle.loads(pickle.dumps((x, h_0, c_0)))
    assert fast_x.dtype == np.dtype(dtype)
    assert_matches_torch(module, model, x, (h_0, c_0), fast_x=fast_x, fast_hx=(fast_h, fast_c))
