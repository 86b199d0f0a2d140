"""Parameters, state_dict, pickling and repr behave as torch.nn.LSTM's do."""

import pickle

import numpy as np
import pytest
import torch

import fastlstm
from lstm_helpers import (
    TORCH_DTYPE, assert_matches_torch, assert_state_equal, make_pair, random_hx, random_input, state_of, torch_forward,
)

CONFIGS = [
    dict(input_size=5, hidden_size=7),
    dict(input_size=5, hidden_size=7, num_layers=3, bidirectional=True),
    dict(input_size=5, hidden_size=7, num_layers=2, bias=False, proj_size=3),
    dict(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=3, batch_first=True),
]
CONFIG_IDS = ["plain", "3layers-bidir", "nobias-proj", "bidir-proj-batch_first"]


def _pair(config, dtype=np.float32, seed=0):
    return make_pair(dtype=dtype, seed=seed, **config)


def _fresh_model(module, dtype=np.float32):
    """A fastlstm.LSTM with module's configuration and its own (different) random weights."""
    np.random.seed(1234)
    return fastlstm.LSTM(
        module.input_size, module.hidden_size, module.num_layers, module.bias, module.batch_first,
        bidirectional=module.bidirectional, proj_size=module.proj_size, dtype=dtype,
    )


def _run(module, model, seed=1):
    x = random_input(module, steps=4, batch=3, seed=seed)
    return assert_matches_torch(module, model, x, random_hx(module, 3))


# ------------------------------------------------------------------------- names, order, shapes
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_has_torch_keys_order_shapes_and_values(config):
    module, model = _pair(config)
    ours, theirs = model.state_dict(), module.state_dict()
    assert list(ours) == list(theirs)
    for name, value in theirs.items():
        assert isinstance(ours[name], np.ndarray)
        assert ours[name].shape == tuple(value.shape), name
        assert ours[name].dtype == np.float32
        assert np.array_equal(ours[name], value.numpy()), name


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_named_parameters_follow_torch_order(config):
    module, model = _pair(config)
    assert [name for name, _ in model.named_parameters()] == [name for name, _ in module.named_parameters()]
    for (name, ours), (_, theirs) in zip(model.named_parameters(), module.named_parameters()):
        assert np.array_equal(ours, theirs.detach().numpy()), name


def test_parameters_yields_named_parameters_values_in_order():
    _, model = _pair(CONFIGS[1])
    values = list(model.parameters())
    named = list(model.named_parameters())
    assert len(values) == len(named) == 3 * 2 * 4
    assert all(np.array_equal(a, b) for a, (_, b) in zip(values, named))


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_parameters_are_attributes_under_torch_names(config):
    module, model = _pair(config)
    for name, value in module.named_parameters():
        assert np.array_equal(getattr(model, name), value.detach().numpy()), name
    with pytest.raises(AttributeError):
        model.weight_ih_l9


def test_state_dict_returns_copies():
    module, model = _pair(CONFIGS[0])
    state = model.state_dict()
    state["weight_ih_l0"][...] = 0
    assert not np.array_equal(model.weight_ih_l0, state["weight_ih_l0"])
    _run(module, model)


# ------------------------------------------------------------------------- read-only snapshots
@pytest.mark.parametrize("how", ["item", "slice", "inplace_op", "named_parameters", "parameters"])
def test_parameters_are_read_only(how):
    module, model = _pair(CONFIGS[2])
    before = state_of(model)
    with pytest.raises(ValueError, match="read-only"):
        if how == "item":
            model.weight_ih_l0[0, 0] = 1.0
        elif how == "slice":
            model.weight_hr_l1[:] = 0.0
        elif how == "inplace_op":
            view = model.weight_hh_l0
            view *= 2
        elif how == "named_parameters":
            dict(model.named_parameters())["weight_hh_l1"][0] = 1.0
        else:
            next(model.parameters())[0] = 1.0
    assert_state_equal(model, before)
    _run(module, model)


def test_parameters_read_are_snapshots_that_later_updates_leave_alone():
    module, model = _pair(CONFIGS[1])
    before = model.weight_hh_l1_reverse
    named_before = dict(model.named_parameters())["bias_ih_l0"]
    old_weight, old_bias = before.copy(), named_before.copy()
    new_weight = np.random.default_rng(0).uniform(-0.3, 0.3, before.shape).astype(np.float32)
    model.weight_hh_l1_reverse = new_weight
    new_bias = np.full(named_before.shape, 0.25, dtype=np.float32)
    model.load_state_dict({"bias_ih_l0": new_bias}, strict=False)
    assert np.array_equal(before, old_weight) and np.array_equal(named_before, old_bias)
    assert np.array_equal(model.weight_hh_l1_reverse, new_weight)
    assert np.array_equal(dict(model.named_parameters())["bias_ih_l0"], new_bias)


def test_assignment_copies_the_array():
    module, model = _pair(CONFIGS[0])
    new_weight = np.random.default_rng(0).uniform(-0.3, 0.3, model.weight_ih_l0.shape).astype(np.float32)
    model.weight_ih_l0 = new_weight
    new_weight[...] = 0  # the caller's array stays the caller's
    assert not np.array_equal(model.weight_ih_l0, new_weight)


# ------------------------------------------------------------------------- assignment
@pytest.mark.parametrize(
    "name", ["weight_ih_l0", "weight_hh_l0", "bias_ih_l1", "bias_hh_l0_reverse", "weight_hr_l1_reverse", "weight_ih_l1"]
)
@pytest.mark.parametrize("source", ["numpy", "torch"])
def test_assigning_a_parameter_changes_outputs_as_in_torch(name, source):
    config = dict(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=3)
    module, model = _pair(config)
    before = torch_forward(module, random_input(module, steps=4, batch=3))[0]
    shape = tuple(getattr(module, name).shape)
    new_value = np.random.default_rng(7).uniform(-1.0, 1.0, shape).astype(np.float32)
    with torch.no_grad():
        getattr(module, name).copy_(torch.from_numpy(new_value))
    setattr(model, name, new_value if source == "numpy" else torch.from_numpy(new_value.copy()))
    assert np.array_equal(getattr(model, name), new_value)
    output, _ = _run(module, model)
    assert not np.allclose(output, before, atol=1e-3), "the new value must change the outputs"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_assigning_a_wrong_shape_raises_value_error_and_changes_nothing(dtype):
    module, model = _pair(CONFIGS[1], dtype=dtype)
    before = state_of(model)
    for wrong in [
        np.zeros((28, 6), dtype=dtype),
        np.zeros((5, 28), dtype=dtype),
        np.zeros((28,), dtype=dtype),
        np.zeros((1, 28, 5), dtype=dtype),
        np.zeros((), dtype=dtype),
    ]:
        with pytest.raises(ValueError, match="weight_ih_l0"):
            model.weight_ih_l0 = wrong
    with pytest.raises(ValueError, match="bias_hh_l2_reverse"):
        model.bias_hh_l2_reverse = np.zeros((27,), dtype=dtype)
    assert_state_equal(model, before)
    x = random_input(module, steps=4, batch=3, dtype=dtype)
    assert_matches_torch(module, model, x)


@pytest.mark.parametrize(
    "model_dtype,wrong_dtype", [(np.float32, np.float64), (np.float64, np.float32), (np.float32, np.int32),
                                (np.float32, np.float16), (np.float64, np.int64)]
)
def test_assigning_a_wrong_dtype_raises_type_error_and_changes_nothing(model_dtype, wrong_dtype):
    module, model = _pair(CONFIGS[0], dtype=model_dtype)
    before = state_of(model)
    with pytest.raises(TypeError, match="weight_hh_l0"):
        model.weight_hh_l0 = np.ones(model.weight_hh_l0.shape, dtype=wrong_dtype)
    assert_state_equal(model, before)
    assert_matches_torch(module, model, random_input(module, steps=4, batch=3, dtype=model_dtype))


@pytest.mark.parametrize("value", [None, "weights", [[0.0] * 7] * 28, 3.0])
def test_assigning_a_non_array_raises_type_error_and_changes_nothing(value):
    module, model = _pair(CONFIGS[0])
    before = state_of(model)
    with pytest.raises(TypeError, match="weight_hh_l0"):
        model.weight_hh_l0 = value
    assert_state_equal(model, before)


@pytest.mark.parametrize("name", ["input_size", "hidden_size", "num_layers", "bias", "batch_first",
                                  "bidirectional", "proj_size", "dropout", "dtype"])
def test_configuration_cannot_be_reassigned(name):
    _, model = _pair(CONFIGS[0])
    before = getattr(model, name)
    with pytest.raises(AttributeError, match=name):
        setattr(model, name, 3)
    assert getattr(model, name) == before


# ------------------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("source", ["torch", "numpy"])
def test_load_state_dict_from_torch_matches_torch(config, source):
    module, _ = _pair(config)
    model = _fresh_model(module)
    state = module.state_dict()
    if source == "numpy":
        state = {name: value.numpy() for name, value in state.items()}
    result = model.load_state_dict(state)
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    _run(module, model)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_loads_fastlstm_state_dict_and_matches(config, dtype):
    torch.manual_seed(99)
    module = torch.nn.LSTM(**config, dtype=TORCH_DTYPE[np.dtype(dtype)]).eval()
    model = _fresh_model(module, dtype=dtype)
    module.load_state_dict({name: torch.from_numpy(value) for name, value in model.state_dict().items()})
    for name, value in module.state_dict().items():
        assert np.array_equal(value.numpy(), getattr(model, name))
    x = random_input(module, steps=4, batch=3, dtype=dtype)
    assert_matches_torch(module, model, x, random_hx(module, 3, dtype=dtype))


def test_load_state_dict_accepts_an_ordered_dict_from_state_dict():
    module, model = _pair(CONFIGS[3])
    other = _fresh_model(module)
    other.load_state_dict(model.state_dict())
    assert_state_equal(other, state_of(model))


def _strict_error(load, state):
    with pytest.raises(RuntimeError) as error:
        load(state)
    return str(error.value)


@pytest.mark.parametrize(
    "edit",
    ["missing", "unexpected", "missing_and_unexpected", "size_mismatch", "size_mismatch_and_missing"],
)
def test_strict_load_state_dict_errors_carry_torch_message_and_change_nothing(edit):
    module, model = _pair(CONFIGS[1])
    fresh = _fresh_model(module)
    before, torch_before = state_of(fresh), {k: v.clone() for k, v in module.state_dict().items()}
    state = dict(model.state_dict())
    # Every case keeps some valid keys, which must not be loaded either.
    if "missing" in edit:
        del state["bias_hh_l0"], state["weight_ih_l2_reverse"]
    if "unexpected" in edit:
        state["weight_ih_l3"] = np.zeros((28, 14), dtype=np.float32)
        state["running_mean"] = np.zeros(3, dtype=np.float32)
    if "size_mismatch" in edit:
        state["weight_hh_l1"] = np.zeros((28, 8), dtype=np.float32)
        state["bias_ih_l2"] = np.zeros((29,), dtype=np.float32)
    torch_message = _strict_error(module.load_state_dict, {k: torch.from_numpy(v) for k, v in state.items()})
    message = _strict_error(fresh.load_state_dict, state)
    assert message == torch_message
    expected_fragment = {
        "missing": "Missing key(s) in state_dict",
        "unexpected": "Unexpected key(s) in state_dict",
        "missing_and_unexpected": "Unexpected key(s) in state_dict",
        "size_mismatch": "size mismatch for weight_hh_l1",
        "size_mismatch_and_missing": "size mismatch for bias_ih_l2",
    }[edit]
    assert expected_fragment in message
    assert_state_equal(fresh, before)
    assert all(torch.equal(v, torch_before[k]) for k, v in module.state_dict().items())


def test_size_mismatch_raises_even_when_not_strict_and_changes_nothing():
    module, model = _pair(CONFIGS[0])
    before = state_of(model)
    state = {"weight_ih_l0": np.zeros((28, 4), dtype=np.float32), "bias_ih_l0": np.zeros(28, dtype=np.float32)}
    torch_message = _strict_error(
        lambda s: module.load_state_dict(s, strict=False), {k: torch.from_numpy(v) for k, v in state.items()}
    )
    message = _strict_error(lambda s: model.load_state_dict(s, strict=False), state)
    assert message == torch_message and "size mismatch for weight_ih_l0" in message
    assert_state_equal(model, before)


def test_non_strict_load_returns_missing_and_unexpected_keys_like_torch_and_loads_the_rest():
    module, model = _pair(CONFIGS[1])
    new_bias = np.full((28,), 0.5, dtype=np.float32)
    state = {"bias_hh_l1": new_bias, "weight_ih_l5": np.zeros((1, 1), dtype=np.float32), "extra": np.zeros(2)}
    with torch.no_grad():
        expected = module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    result = model.load_state_dict(state, strict=False)
    assert isinstance(result, tuple)
    assert result.missing_keys == expected.missing_keys
    assert result.unexpected_keys == expected.unexpected_keys
    assert tuple(result) == (expected.missing_keys, expected.unexpected_keys)
    assert len(result.missing_keys) == len(list(module.state_dict())) - 1
    assert np.array_equal(model.bias_hh_l1, new_bias)
    _run(module, model)


def test_load_state_dict_casts_float64_values_to_a_float32_model():
    module64, _ = _pair(CONFIGS[3], dtype=np.float64)
    module32 = torch.nn.LSTM(**CONFIGS[3]).eval()
    model = _fresh_model(module32, dtype=np.float32)
    state64 = {name: value.numpy() for name, value in module64.state_dict().items()}
    assert all(v.dtype == np.float64 for v in state64.values())
    model.load_state_dict(state64)
    module32.load_state_dict(module64.state_dict())  # torch casts as well
    for name, value in model.named_parameters():
        assert value.dtype == np.float32
        assert np.array_equal(value, state64[name].astype(np.float32)), name
    _run(module32, model)


def test_load_state_dict_casts_float32_torch_tensors_to_a_float64_model():
    module32, _ = _pair(CONFIGS[0])
    model = _fresh_model(module32, dtype=np.float64)
    model.load_state_dict(module32.state_dict())
    for name, value in module32.state_dict().items():
        assert getattr(model, name).dtype == np.float64
        assert np.array_equal(getattr(model, name), value.numpy().astype(np.float64))


def test_load_state_dict_rejects_a_non_mapping():
    _, model = _pair(CONFIGS[0])
    with pytest.raises(TypeError, match="state_dict"):
        model.load_state_dict([("weight_ih_l0", np.zeros((28, 5), dtype=np.float32))])


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match="LSTM"):
        fastlstm.LSTM.from_torch(torch.nn.GRU(3, 4))
    with pytest.raises(TypeError, match="LSTM"):
        fastlstm.LSTM.from_torch(torch.nn.Linear(3, 4))


# ------------------------------------------------------------------------- pickle, repr
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_pickle_round_trip_preserves_configuration_weights_and_outputs(config, dtype):
    module, model = _pair(config, dtype=dtype)
    copy = pickle.loads(pickle.dumps(model))
    assert type(copy) is fastlstm.LSTM and copy is not model
    assert repr(copy) == repr(model)
    assert copy.dtype == model.dtype
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
                 "proj_size"):
        assert getattr(copy, name) == getattr(model, name), name
    assert_state_equal(copy, state_of(model))
    x = random_input(module, steps=4, batch=3, dtype=dtype)
    hx = random_hx(module, 3, dtype=dtype)
    ours, theirs = model(x, hx), copy(x, hx)
    assert np.array_equal(ours[0], theirs[0])
    assert np.array_equal(ours[1][0], theirs[1][0]) and np.array_equal(ours[1][1], theirs[1][1])
    copy.weight_ih_l0 = np.zeros_like(copy.weight_ih_l0)  # independent storage
    assert not np.array_equal(model.weight_ih_l0, copy.weight_ih_l0)


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((10, 20), {}),
        ((10, 20), dict(num_layers=2, batch_first=True, bidirectional=True)),
        ((10, 20), dict(proj_size=5, num_layers=2, bias=False, dropout=0.5)),
        ((1, 2), dict(dropout=1, num_layers=3)),
        ((3, 4), dict(bias=True, batch_first=False, bidirectional=False, proj_size=0, num_layers=1, dropout=0.0)),
        ((7, 33), dict(proj_size=1, bidirectional=True, batch_first=True, dropout=0.25, num_layers=4)),
    ],
)
def test_repr_equals_torch_repr(args, kwargs):
    assert repr(fastlstm.LSTM(*args, **kwargs)) == repr(torch.nn.LSTM(*args, **kwargs))
