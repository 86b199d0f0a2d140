"""The constructor validates its arguments as torch.nn.LSTM does: the same exception types and,
where torch's message is specific, the same message. Every message names the argument."""

import warnings

import numpy as np
import pytest
import torch

import fastlstm

BASE = dict(input_size=10, hidden_size=20)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(input_size=0), "input_size"),
        (dict(input_size=-3), "input_size"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(hidden_size=-1), "hidden_size"),
        (dict(num_layers=0), "num_layers"),
        (dict(num_layers=-2), "num_layers"),
        (dict(proj_size=-1), "proj_size"),
        (dict(proj_size=20), "proj_size"),
        (dict(proj_size=21), "proj_size"),
        (dict(dropout=-0.1), "dropout"),
        (dict(dropout=1.5), "dropout"),
        (dict(dropout=float("nan")), "dropout"),
        (dict(dropout="0.5"), "dropout"),
        (dict(dropout=True), "dropout"),
    ],
)
def test_invalid_value_raises_value_error_like_torch(kwargs, argument):
    arguments = {**BASE, **kwargs}
    with pytest.raises(ValueError) as torch_error:
        torch.nn.LSTM(**arguments)
    with pytest.raises(ValueError, match=rf"\b{argument}\b") as error:
        fastlstm.LSTM(**arguments)
    assert str(error.value) == str(torch_error.value)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        (dict(input_size=10.0), "input_size"),
        (dict(input_size="10"), "input_size"),
        (dict(hidden_size=2.5), "hidden_size"),
        (dict(hidden_size=None), "hidden_size"),
        (dict(hidden_size=True), "hidden_size"),
        (dict(num_layers=1.5), "num_layers"),
        (dict(num_layers="2"), "num_layers"),
        (dict(proj_size=1.0), "proj_size"),
        (dict(bias=1), "bias"),
        (dict(bias="yes"), "bias"),
        (dict(bias=None), "bias"),
        (dict(batch_first=1), "batch_first"),
        (dict(batch_first="True"), "batch_first"),
        (dict(bidirectional=1), "bidirectional"),
        (dict(bidirectional=None), "bidirectional"),
        (dict(num_threads=2.0), "num_threads"),
        (dict(num_threads="4"), "num_threads"),
    ],
)
def test_wrong_type_raises_type_error_naming_the_argument(kwargs, argument):
    with pytest.raises(TypeError, match=rf"\b{argument}\b"):
        fastlstm.LSTM(**{**BASE, **kwargs})


@pytest.mark.parametrize("num_threads", [0, -1])
def test_num_threads_below_one_raises_value_error(num_threads):
    with pytest.raises(ValueError, match="num_threads"):
        fastlstm.LSTM(**BASE, num_threads=num_threads)


@pytest.mark.parametrize("num_threads", [None, 1, 3])
def test_valid_num_threads_is_used(num_threads):
    model = fastlstm.LSTM(**BASE, num_threads=num_threads)
    assert model.num_threads == (num_threads or fastlstm.build_info()["default_threads"])


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="dropout") as torch_warning:
        torch.nn.LSTM(**BASE, dropout=0.5)
    with pytest.warns(UserWarning, match="dropout") as record:
        fastlstm.LSTM(**BASE, dropout=0.5)
    assert [str(w.message) for w in record] == [str(w.message) for w in torch_warning]
    assert record[0].filename == __file__, "the warning points at the caller"


@pytest.mark.parametrize("kwargs", [dict(dropout=0.5, num_layers=2), dict(dropout=0.0), dict(dropout=0)])
def test_valid_dropout_does_not_warn(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastlstm.LSTM(**BASE, **kwargs)


@pytest.mark.parametrize("dropout", [0, 0.0, 1, 1.0, 0.3])
def test_dropout_bounds_are_inclusive_and_stored_as_float(dropout):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastlstm.LSTM(**BASE, num_layers=2, dropout=dropout)
    assert model.dropout == float(dropout) and isinstance(model.dropout, float)


@pytest.mark.parametrize("device", ["mps", "meta", "gpu", "cuda:", "cuda:x", "CUDA", -1, 1.5])
def test_unknown_device_raises_value_error(device):
    with pytest.raises(ValueError, match="device"):
        fastlstm.LSTM(**BASE, device=device)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_cpu_device_is_accepted(device):
    assert fastlstm.LSTM(**BASE, device=device).device == "cpu"


@pytest.mark.parametrize(
    "dtype", [np.float16, np.int32, np.int64, np.complex64, bool, "float16", "int8", "bfloat16", "half",
              torch.float16, torch.bfloat16, torch.int32, "not a dtype"],
    ids=str,
)
def test_unsupported_dtype_raises_type_error(dtype):
    with pytest.raises(TypeError, match="dtype"):
        fastlstm.LSTM(**BASE, dtype=dtype)


@pytest.mark.parametrize(
    "dtype,expected",
    [(np.float32, np.float32), ("float32", np.float32), (torch.float32, np.float32), ("float", np.float32),
     (np.dtype("float32"), np.float32), (np.float64, np.float64), ("float64", np.float64),
     (torch.float64, np.float64), ("double", np.float64), (float, np.float64)],
)
def test_supported_dtypes_are_accepted(dtype, expected):
    model = fastlstm.LSTM(**BASE, dtype=dtype)
    assert model.dtype == np.dtype(expected)
    assert all(value.dtype == np.dtype(expected) for value in model.parameters())


def test_dtype_none_means_the_default_float32_like_torch():
    assert torch.nn.LSTM(**BASE, dtype=None).weight_ih_l0.dtype == torch.float32
    assert fastlstm.LSTM(**BASE, dtype=None).dtype == np.float32


def test_defaults_match_torch():
    ours, theirs = fastlstm.LSTM(**BASE), torch.nn.LSTM(**BASE)
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
                 "proj_size"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.dtype == np.float32
    assert ours.training is False
