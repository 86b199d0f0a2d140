"""Malformed calls raise a clear exception naming the culprit, never crash, never cast silently,
and leave the model usable."""

import numpy as np
import pytest
import torch

from lstm_helpers import assert_matches_torch, make_pair, random_hx, random_input

# Projections make h_0 and c_0 differ in size, so swapping them is an error.
CONFIG = dict(input_size=4, hidden_size=6, num_layers=2, bidirectional=True, proj_size=3)


@pytest.fixture(params=[False, True], ids=["time_first", "batch_first"])
def pair(request):
    return make_pair(**CONFIG, batch_first=request.param)


def _x(module, batch=2):
    return random_input(module, steps=5, batch=batch)


@pytest.mark.parametrize("shape", [(4,), (0,), (5, 2, 1, 4), (1, 1, 1, 1), ()], ids=["1d", "1d_empty", "4d", "4d_ones", "0d"])
def test_input_with_wrong_ndim_raises_value_error(pair, shape):
    _, model = pair
    with pytest.raises(ValueError, match=r"2D or 3D, got \dD"):
        model(np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("features", [3, 5, 1, 8])
@pytest.mark.parametrize("batched", [False, True])
def test_input_with_wrong_feature_size_raises_value_error_naming_input_size(pair, features, batched):
    module, model = pair
    shape = (5, features) if not batched else ((2, 5, features) if module.batch_first else (5, 2, features))
    with pytest.raises(ValueError, match=rf"input_size. Expected 4, got {features}"):
        model(np.zeros(shape, dtype=np.float32))


# (which, batched, the wrong shape). Right shapes: h_0 (4, N=2, 3), c_0 (4, 2, 6); unbatched (4, 3), (4, 6).
WRONG_HX_SHAPES = [
    ("h_0", True, (2, 2, 3)),   # layers
    ("h_0", True, (4, 3, 3)),   # batch
    ("h_0", True, (4, 1, 3)),   # batch
    ("h_0", True, (4, 2, 6)),   # hidden_size instead of proj_size
    ("c_0", True, (3, 2, 6)),   # layers
    ("c_0", True, (4, 1, 6)),   # batch
    ("c_0", True, (4, 2, 3)),   # proj_size instead of hidden_size
    ("h_0", False, (2, 3)),
    ("h_0", False, (4, 6)),
    ("c_0", False, (5, 6)),
    ("c_0", False, (4, 3)),
]


@pytest.mark.parametrize("which,batched,shape", WRONG_HX_SHAPES)
def test_hx_with_wrong_shape_raises_value_error_naming_it(pair, which, batched, shape):
    module, model = pair
    batch = 2 if batched else None
    h_0, c_0 = random_hx(module, batch)
    bad = np.zeros(shape, dtype=np.float32)
    hx = (bad, c_0) if which == "h_0" else (h_0, bad)
    with pytest.raises(ValueError, match=which):
        model(random_input(module, steps=5, batch=batch), hx)


def test_swapped_h_0_and_c_0_raise_value_error(pair):
    module, model = pair
    h_0, c_0 = random_hx(module, 2)
    with pytest.raises(ValueError, match="h_0"):
        model(_x(module), (c_0, h_0))


@pytest.mark.parametrize(
    "batched,h_ndim,c_ndim", [(True, 2, 2), (True, 2, 3), (True, 3, 2), (False, 3, 3), (False, 3, 2),
                              (False, 1, 1), (True, 4, 4)]
)
def test_hx_with_wrong_ndim_raises_value_error(pair, batched, h_ndim, c_ndim):
    module, model = pair
    batch = 2 if batched else None
    h_0 = np.zeros((4, 2, 3)[-h_ndim:] if h_ndim <= 3 else (1, 4, 2, 3), dtype=np.float32)
    c_0 = np.zeros((4, 2, 6)[-c_ndim:] if c_ndim <= 3 else (1, 4, 2, 6), dtype=np.float32)
    with pytest.raises(ValueError, match=r"hx and cx should also be \d-D"):
        model(random_input(module, steps=5, batch=batch), (h_0, c_0))


@pytest.mark.parametrize("hx", ["one_array", "stacked_array", "one_tuple", "three_tuple", "dict", "string"])
def test_hx_that_is_not_a_pair_raises_type_error(pair, hx):
    module, model = pair
    h_0, c_0 = random_hx(module, 2)
    value = {
        "one_array": h_0,
        "stacked_array": np.stack([h_0, h_0]),
        "one_tuple": (h_0,),
        "three_tuple": (h_0, c_0, c_0),
        "dict": {"h_0": h_0, "c_0": c_0},
        "string": "hc",
    }[hx]
    with pytest.raises(TypeError, match="hx"):
        model(_x(module), value)


@pytest.mark.parametrize("which", ["h_0", "c_0"])
@pytest.mark.parametrize("value", [None, [[0.0]], "zeros", 0.0])
def test_hx_member_that_is_not_an_array_raises_type_error(pair, which, value):
    module, model = pair
    h_0, c_0 = random_hx(module, 2)
    hx = (value, c_0) if which == "h_0" else (h_0, value)
    with pytest.raises(TypeError, match=which):
        model(_x(module), hx)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int64, np.bool_, np.complex64])
def test_input_of_another_dtype_raises_type_error_instead_of_casting(pair, dtype):
    module, model = pair
    with pytest.raises(TypeError, match="dtype"):
        model(_x(module).astype(dtype))


def test_float32_input_into_float64_model_raises_type_error():
    module, model = make_pair(**CONFIG, dtype=np.float64)
    with pytest.raises(TypeError, match="dtype"):
        model(random_input(module, steps=5, batch=2, dtype=np.float32))


def test_torch_tensor_of_another_dtype_raises_type_error(pair):
    module, model = pair
    with pytest.raises(TypeError, match="dtype"):
        model(torch.from_numpy(_x(module).astype(np.float64)))


@pytest.mark.parametrize("which", ["h_0", "c_0"])
@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_hx_of_another_dtype_raises_type_error(pair, which, dtype):
    module, model = pair
    h_0, c_0 = random_hx(module, 2)
    hx = (h_0.astype(dtype), c_0) if which == "h_0" else (h_0, c_0.astype(dtype))
    with pytest.raises(TypeError, match=which):
        model(_x(module), hx)


@pytest.mark.parametrize(
    "value",
    [[[0.0] * 4] * 5, [[[0.0] * 4] * 2] * 5, None, "input", b"\x00" * 80, {"input": 1}, 3, 2.5, object()],
    ids=["list2d", "list3d", "None", "str", "bytes", "dict", "int", "float", "object"],
)
def test_input_that_is_not_an_array_raises_type_error(pair, value):
    _, model = pair
    with pytest.raises(TypeError, match="input"):
        model(value)


def test_model_still_matches_torch_after_rejected_calls(pair):
    module, model = pair
    x = _x(module)
    h_0, c_0 = random_hx(module, 2)
    bad_calls = [
        (np.zeros(4, np.float32), None), (x[..., :3], None), (x.astype(np.float64), None), ([1.0], None),
        (x, h_0), (x, (h_0[:, :1], c_0)), (x, (h_0, c_0[:2])), (x, (h_0[0], c_0[0])), (x[:0] if not module.batch_first else x[:, :0], None),
    ]
    for bad_x, bad_hx in bad_calls:
        with pytest.raises((TypeError, ValueError)):
            model(bad_x, bad_hx)
    assert_matches_torch(module, model, x, (h_0, c_0))
