"""Initial parameters follow torch's distribution, U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)),
drawn from NumPy's global random state."""

import math

import numpy as np
import pytest

import fastlstm


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kwargs",
    [dict(input_size=3, hidden_size=5), dict(input_size=7, hidden_size=33, num_layers=3, bidirectional=True,
                                                proj_size=4), dict(input_size=2, hidden_size=1, bias=False)],
)
def test_every_parameter_lies_within_the_init_bound(kwargs, dtype):
    np.random.seed(0)
    model = fastlstm.LSTM(**kwargs, dtype=dtype)
    bound = 1.0 / math.sqrt(kwargs["hidden_size"])
    for name, value in model.named_parameters():
        assert value.dtype == np.dtype(dtype), name
        # float32 rounding may land on the bound itself, never beyond it by more than an ulp.
        assert np.all(np.abs(value) <= np.float32(bound) * (1 + 1e-7)), name
        if value.size > 1:
            assert np.unique(value).size > 1, f"{name} is constant"


def test_init_is_uniform_with_torch_bound_for_a_large_model():
    np.random.seed(1)
    model = fastlstm.LSTM(256, 512, num_layers=2, bidirectional=True, proj_size=100)
    bound = 1.0 / math.sqrt(512)
    values = []
    for name, value in model.named_parameters():
        assert value.size >= 100, name
        # Every parameter is drawn from the full range, not just a part of it.
        assert value.min() < -0.9 * bound and value.max() > 0.9 * bound, name
        values.append(value.astype(np.float64).ravel())
    every = np.concatenate(values)
    assert every.size > 2_000_000
    assert abs(every.mean()) < 0.002 * bound
    assert every.var() == pytest.approx(bound ** 2 / 3, rel=0.01)
    # Uniform, not merely bounded: the quarters of the range hold a quarter of the values each.
    counts, _ = np.histogram(every, bins=4, range=(-bound, bound))
    np.testing.assert_allclose(counts / every.size, 0.25, atol=0.002)


def test_parameters_differ_from_each_other():
    np.random.seed(2)
    model = fastlstm.LSTM(16, 16, num_layers=2, bidirectional=True)
    values = [value for _, value in model.named_parameters() if value.shape == (64, 16)]
    assert len(values) >= 4
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert not np.array_equal(values[i], values[j])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_seed_makes_init_reproducible(dtype):
    kwargs = dict(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=3, dtype=dtype)
    np.random.seed(123)
    first = fastlstm.LSTM(**kwargs).state_dict()
    np.random.seed(123)
    second = fastlstm.LSTM(**kwargs).state_dict()
    third = fastlstm.LSTM(**kwargs).state_dict()  # the random state moved on
    np.random.seed(124)
    other_seed = fastlstm.LSTM(**kwargs).state_dict()
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert not any(np.array_equal(first[name], third[name]) for name in first)
    assert not any(np.array_equal(first[name], other_seed[name]) for name in first)


def test_reset_parameters_redraws_from_the_same_distribution():
    np.random.seed(5)
    model = fastlstm.LSTM(4, 9, num_layers=2)
    before = model.state_dict()
    np.random.seed(5)
    model.weight_ih_l0 = np.zeros_like(model.weight_ih_l0)
    model.reset_parameters()
    after = model.state_dict()
    assert all(np.array_equal(before[name], after[name]) for name in before)


def test_models_built_from_weights_leave_the_random_state_alone(tmp_path):
    # load, from_state_dict and from_torch set the weights they are given: they draw nothing
    # (a random draw would also take longer than the load of a large model).
    torch = pytest.importorskip("torch")
    source = fastlstm.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=3)
    source.save(tmp_path / "model.safetensors")
    state_dict = source.state_dict()
    module = torch.nn.LSTM(6, 8, num_layers=2)
    builds = {
        "load": lambda: fastlstm.LSTM.load(tmp_path / "model.safetensors"),
        "from_state_dict": lambda: fastlstm.LSTM.from_state_dict(state_dict),
        "from_torch": lambda: fastlstm.LSTM.from_torch(module),
    }
    for name, build in builds.items():
        np.random.seed(7)
        model = build()
        assert np.random.get_state()[2] == np.random.RandomState(7).get_state()[2], name
        assert np.array_equal(np.random.rand(4), np.random.RandomState(7).rand(4)), name
        expected = {k: v.detach().numpy() for k, v in module.state_dict().items()} if name == "from_torch" else state_dict
        for key, value in expected.items():
            assert np.array_equal(getattr(model, key), value), (name, key)
