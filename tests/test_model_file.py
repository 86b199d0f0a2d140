"""The model file (safetensors) and from_state_dict: round trips, every kind of configuration,
prefixes, LSTMCell keys, interop with the safetensors package both ways, and metadata checks."""

import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

import fastlstm
from fastlstm._native import core as _core
from lstm_helpers import TORCH_DTYPE, assert_matches_torch, make_pair, random_hx, random_input

CONFIGS = [
    dict(input_size=5, hidden_size=7),
    dict(input_size=5, hidden_size=7, num_layers=3),
    dict(input_size=5, hidden_size=7, bidirectional=True),
    dict(input_size=5, hidden_size=7, proj_size=3),
    dict(input_size=5, hidden_size=7, bias=False),
    dict(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=3, batch_first=True),
    dict(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, bias=False, dtype=np.float64),
]
CONFIG_IDS = ["plain", "stacked", "bidirectional", "proj", "no-bias", "stacked-bidir-proj-batch_first",
              "float64-stacked-bidir-no-bias"]
ATTRIBUTES = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "bidirectional", "proj_size")


def _outputs(model, module, seed=1):
    x = random_input(module, steps=4, batch=3, dtype=model.dtype, seed=seed)
    return x, model(x, random_hx(module, 3, dtype=model.dtype))


def assert_identical(model, reference, module):
    """Same configuration, same parameters bit for bit, same outputs bit for bit."""
    for attribute in ATTRIBUTES:
        assert getattr(model, attribute) == getattr(reference, attribute), attribute
    assert model.dtype == reference.dtype
    assert list(model.state_dict()) == list(reference.state_dict())
    for name, value in reference.named_parameters():
        assert np.array_equal(getattr(model, name), value), name
    x, (out, (h_n, c_n)) = _outputs(reference, module)
    got, (got_h, got_c) = model(x, random_hx(module, 3, dtype=model.dtype))
    assert np.array_equal(got, out) and np.array_equal(got_h, h_n) and np.array_equal(got_c, c_n)


class Encoder(torch.nn.Module):
    """A network with an LSTM inside, as people save them."""

    def __init__(self, **lstm_args):
        super().__init__()
        self.embedding = torch.nn.Embedding(11, lstm_args["input_size"])
        self.norm = torch.nn.BatchNorm1d(lstm_args["input_size"])  # an int64 buffer in the state_dict
        self.rnn = torch.nn.LSTM(**lstm_args)
        self.head = torch.nn.Linear(lstm_args.get("proj_size") or lstm_args["hidden_size"], 2)


class Network(torch.nn.Module):
    def __init__(self, **lstm_args):
        super().__init__()
        self.encoder = Encoder(**lstm_args)
        self.decoder = torch.nn.LSTMCell(4, 6)


def _torch_args(config):
    return {k: v for k, v in config.items() if k != "dtype"}


# ------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_save_then_load_gives_an_identical_model(tmp_path, config):
    module, model = make_pair(**config)
    model.save(tmp_path / "model.safetensors")
    loaded = fastlstm.LSTM.load(tmp_path / "model.safetensors")
    assert_identical(loaded, model, module)
    x = random_input(module, steps=4, batch=3, dtype=model.dtype)
    assert_matches_torch(module, loaded, x, random_hx(module, 3, dtype=model.dtype))


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_cpp_load_gives_the_results_of_the_saved_model(tmp_path, config):
    module, model = make_pair(**config)
    path = str(tmp_path / "model.safetensors")
    model.save(path)
    engine_class = _core.LstmFloat64 if model.dtype == np.float64 else _core.LstmFloat32
    engine = engine_class.load(path, "", model.num_threads)  # fastlstm::Lstm<T>::load
    assert [name for name, _ in engine.parameter_shapes()] == list(model.state_dict())
    x, (out, (h_n, c_n)) = _outputs(model, module)
    got, got_h, got_c = engine.forward(x, *random_hx(module, 3, dtype=model.dtype))
    assert np.array_equal(got, out) and np.array_equal(got_h, h_n) and np.array_equal(got_c, c_n)


def test_cpp_save_loads_in_python(tmp_path):
    module, model = make_pair(**CONFIGS[5])
    engine = _core.LstmFloat32.load(_saved(model, tmp_path / "a.safetensors"), "", 0)
    engine.save(str(tmp_path / "b.safetensors"))  # fastlstm::Lstm<T>::save
    assert_identical(fastlstm.LSTM.load(str(tmp_path / "b.safetensors")), model, module)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def _saved(model, path):
    model.save(path)
    return str(path)


def test_load_takes_num_threads(tmp_path):
    _, model = make_pair(5, 7)
    assert fastlstm.LSTM.load(_saved(model, tmp_path / "m.safetensors"), num_threads=2).num_threads == 2


@pytest.mark.parametrize("num_threads, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_load_and_from_state_dict_check_num_threads_as_the_constructor_does(tmp_path, num_threads, error):
    _, model = make_pair(5, 7)
    path = _saved(model, tmp_path / "m.safetensors")
    with pytest.raises(error, match="num_threads"):
        fastlstm.LSTM.load(path, num_threads=num_threads)
    with pytest.raises(error, match="num_threads"):
        fastlstm.LSTM.from_state_dict(model.state_dict(), num_threads=num_threads)


def test_load_casts_to_the_dtype_asked_for_as_torch_casts(tmp_path):
    module, model = make_pair(5, 7, num_layers=2)
    path = _saved(model, tmp_path / "m.safetensors")
    wide = fastlstm.LSTM.load(path, dtype=np.float64)
    assert wide.dtype == np.float64
    module64 = torch.nn.LSTM(5, 7, num_layers=2, dtype=torch.float64)
    module64.load_state_dict(module.state_dict())  # torch's cast float32 -> float64
    for name, value in module64.state_dict().items():
        assert np.array_equal(getattr(wide, name), value.numpy()), name
    x = random_input(module64, steps=4, batch=2, dtype=np.float64)
    assert_matches_torch(module64.eval(), wide, x)


def test_load_of_float64_file_into_float32_rounds_as_torch_does(tmp_path):
    module, model = make_pair(5, 7, dtype=np.float64)
    narrow = fastlstm.LSTM.load(_saved(model, tmp_path / "m.safetensors"), dtype="float32")
    module32 = torch.nn.LSTM(5, 7)
    module32.load_state_dict(module.state_dict())
    for name, value in module32.state_dict().items():
        assert np.array_equal(getattr(narrow, name), value.numpy()), name


def test_save_replaces_an_existing_file_and_leaves_no_temporary(tmp_path):
    _, small = make_pair(2, 3)
    module, model = make_pair(5, 7, bidirectional=True)
    path = tmp_path / "m.safetensors"
    small.save(path)
    model.save(path)
    assert os.listdir(tmp_path) == ["m.safetensors"]
    assert_identical(fastlstm.LSTM.load(path), model, module)


def test_save_to_a_missing_directory_raises_os_error_and_writes_nothing(tmp_path):
    _, model = make_pair(2, 3)
    with pytest.raises(FileNotFoundError):
        model.save(tmp_path / "no" / "such" / "dir.safetensors")
    assert os.listdir(tmp_path) == []


def test_load_of_a_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        fastlstm.LSTM.load(tmp_path / "nothing.safetensors")


def test_load_of_a_directory_raises_os_error(tmp_path):
    with pytest.raises(IsADirectoryError):
        fastlstm.LSTM.load(tmp_path)


# ------------------------------------------------------------------------------- interop with safetensors

@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_files_fastlstm_writes_load_in_safetensors_and_torch(tmp_path, config):
    module, model = make_pair(**config)
    path = _saved(model, tmp_path / "m.safetensors")
    arrays = np_load_file(path)
    assert sorted(arrays) == sorted(model.state_dict())
    for name, value in model.state_dict().items():
        assert arrays[name].dtype == value.dtype and np.array_equal(arrays[name], value), name
    fresh = torch.nn.LSTM(**_torch_args(config), dtype=TORCH_DTYPE[np.dtype(model.dtype)])
    fresh.load_state_dict(torch_load_file(path))
    for name, value in module.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    with safe_open(path, "np") as f:
        metadata = f.metadata()
    assert metadata == {
        "input_size": "5", "hidden_size": "7", "num_layers": str(model.num_layers),
        "bias": str(model.bias).lower(), "batch_first": str(model.batch_first).lower(),
        "bidirectional": str(model.bidirectional).lower(), "proj_size": str(model.proj_size),
        "dropout": "0", "dtype": model.dtype.name,
    }


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_files_safetensors_writes_from_a_torch_state_dict_load(tmp_path, config):
    module, _ = make_pair(**config)
    path = str(tmp_path / "torch.safetensors")
    torch_save_file(module.state_dict(), path, metadata={"format": "pt"})
    model = fastlstm.LSTM.load(path)
    assert model.dtype == np.dtype(config.get("dtype", np.float32))
    assert model.batch_first is False  # nothing in the file says otherwise
    for attribute in ATTRIBUTES[:-3] + ATTRIBUTES[-2:]:
        assert getattr(model, attribute) == getattr(module, attribute), attribute
    module.batch_first = False
    x = random_input(module, steps=4, batch=3, dtype=model.dtype)
    assert_matches_torch(module, model, x, random_hx(module, 3, dtype=model.dtype))


def test_a_whole_network_file_yields_its_lstm_under_a_prefix(tmp_path):
    torch.manual_seed(0)
    network = Network(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=3).eval()
    path = str(tmp_path / "network.safetensors")
    torch_save_file(network.state_dict(), path)
    model = fastlstm.LSTM.load(path, prefix="encoder.rnn.")
    x = random_input(network.encoder.rnn, steps=4, batch=3)
    assert_matches_torch(network.encoder.rnn, model, x)
    cell = fastlstm.LSTM.load(path, prefix="decoder.")
    assert (cell.input_size, cell.hidden_size, cell.num_layers) == (4, 6, 1)


def test_a_whole_network_file_without_prefix_says_where_the_lstms_are(tmp_path):
    path = str(tmp_path / "network.safetensors")
    torch_save_file(Network(input_size=5, hidden_size=7).state_dict(), path)
    with pytest.raises(ValueError, match=r"network\.safetensors.*no LSTM parameters under prefix ''.*'decoder\.', "
                                         r"'encoder\.rnn\.'"):
        fastlstm.LSTM.load(path)


def test_tensors_outside_the_prefix_may_have_any_dtype(tmp_path):
    module, _ = make_pair(5, 7)
    tensors = {f"rnn.{k}": v for k, v in module.state_dict().items()}
    tensors["head.weight"] = torch.zeros(3, 3, dtype=torch.bfloat16)
    tensors["steps"] = torch.tensor([3], dtype=torch.int64)
    path = str(tmp_path / "m.safetensors")
    torch_save_file(tensors, path)
    model = fastlstm.LSTM.load(path, "rnn.")
    assert_matches_torch(module, model, random_input(module, steps=3, batch=2))


def test_a_file_of_mixed_f32_and_f64_tensors_loads_as_float32(tmp_path):
    module, model = make_pair(5, 7)
    arrays = model.state_dict()
    arrays["bias_hh_l0"] = arrays["bias_hh_l0"].astype(np.float64)
    path = str(tmp_path / "m.safetensors")
    np_save_file(arrays, path)
    loaded = fastlstm.LSTM.load(path)
    assert loaded.dtype == np.float32
    assert_identical(loaded, model, module)


def test_lstm_cell_keys_in_a_file_load_as_a_one_layer_lstm(tmp_path):
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(5, 7)
    path = str(tmp_path / "cell.safetensors")
    torch_save_file(cell.state_dict(), path)
    _assert_runs_as_cell(fastlstm.LSTM.load(path), cell)


# ------------------------------------------------------------------------------- metadata

def _file_with_metadata(tmp_path, model, **changes):
    metadata = {
        "input_size": str(model.input_size), "hidden_size": str(model.hidden_size),
        "num_layers": str(model.num_layers), "bias": "true" if model.bias else "false",
        "batch_first": "false", "bidirectional": "true" if model.bidirectional else "false",
        "proj_size": str(model.proj_size), "dtype": model.dtype.name,
    }
    metadata.update(changes)
    metadata = {k: v for k, v in metadata.items() if v is not None}
    path = str(tmp_path / "m.safetensors")
    np_save_file(model.state_dict(), path, metadata=metadata)
    return path


@pytest.mark.parametrize("field, value, message", [
    ("hidden_size", "8", "hidden_size=8.*hidden_size=7"),
    ("input_size", "4", "input_size=4.*input_size=5"),
    ("num_layers", "3", "num_layers=3.*num_layers=2"),
    ("bias", "false", "bias=False.*bias=True"),
    ("bidirectional", "true", "bidirectional=True.*bidirectional=False"),
    ("proj_size", "2", "proj_size=2.*proj_size=0"),
])
def test_metadata_that_disagrees_with_the_tensors_is_an_error(tmp_path, field, value, message):
    _, model = make_pair(5, 7, num_layers=2)
    path = _file_with_metadata(tmp_path, model, **{field: value})
    with pytest.raises(ValueError, match="m.safetensors: the metadata describes an LSTM with .*" + message):
        fastlstm.LSTM.load(path)


@pytest.mark.parametrize("field, value, message", [
    ("num_layers", "two", "num_layers = 'two' is not a non-negative integer"),
    ("hidden_size", "-7", "hidden_size = '-7' is not a non-negative integer"),
    ("bias", "yes", "bias = 'yes' is not 'true' or 'false'"),
    ("dtype", "float16", "dtype = 'float16' is not 'float32' or 'float64'"),
    ("dropout", "lots", r"dropout = 'lots' is not a number in \[0, 1\]"),
    ("dropout", "1.5", r"dropout = '1.5' is not a number in \[0, 1\]"),
    ("dropout", "nan", r"dropout = 'nan' is not a number in \[0, 1\]"),
    ("dropout", "0.5x", r"dropout = '0.5x' is not a number in \[0, 1\]"),
    ("input_size", None, "metadata has .* but no input_size"),
])
def test_malformed_metadata_is_an_error(tmp_path, field, value, message):
    _, model = make_pair(5, 7, num_layers=2)
    path = _file_with_metadata(tmp_path, model, **{field: value})
    with pytest.raises(ValueError, match="m.safetensors: .*" + message):
        fastlstm.LSTM.load(path)


def test_metadata_gives_batch_first_and_dtype(tmp_path):
    module, model = make_pair(5, 7)
    path = _file_with_metadata(tmp_path, model, batch_first="true", dtype="float64")
    loaded = fastlstm.LSTM.load(path)
    assert loaded.batch_first is True and loaded.dtype == np.float64
    assert loaded.dropout == 0.0  # files of earlier versions have no dropout
    assert fastlstm.LSTM.load(path, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("dropout", [0.1, 0.25, 1 / 3, 1.0])
def test_dropout_survives_save_and_load(tmp_path, dropout):
    model = fastlstm.LSTM(5, 7, num_layers=2, dropout=dropout)
    loaded = fastlstm.LSTM.load(_saved(model, tmp_path / "m.safetensors"))
    assert loaded.dropout == dropout and repr(loaded) == repr(model)
    with safe_open(tmp_path / "m.safetensors", "np") as f:
        assert float(f.metadata()["dropout"]) == dropout


def test_metadata_of_other_tools_is_ignored(tmp_path):
    module, model = make_pair(5, 7)
    path = str(tmp_path / "m.safetensors")
    np_save_file(model.state_dict(), path, metadata={"format": "pt", "dtype": "bfloat16", "author": "me"})
    assert_identical(fastlstm.LSTM.load(path), model, module)


# ------------------------------------------------------------------------------- from_state_dict

@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_from_state_dict_of_a_torch_module_infers_its_configuration(config):
    module, model = make_pair(**config)
    built = fastlstm.LSTM.from_state_dict(module.state_dict())
    assert built.dtype == model.dtype
    for attribute in ("input_size", "hidden_size", "num_layers", "bias", "bidirectional", "proj_size"):
        assert getattr(built, attribute) == getattr(module, attribute), attribute
    assert built.batch_first is False
    module.batch_first = False
    assert_matches_torch(module, built, random_input(module, steps=4, batch=3, dtype=model.dtype))


def test_from_state_dict_takes_numpy_arrays():
    module, model = make_pair(5, 7, num_layers=2, proj_size=3)
    built = fastlstm.LSTM.from_state_dict(model.state_dict(), num_threads=1)
    assert built.num_threads == 1
    assert_identical(built, model, module)


def test_from_state_dict_of_a_wrapper_network_takes_the_lstm_under_the_prefix():
    torch.manual_seed(0)
    network = Network(input_size=5, hidden_size=7, num_layers=2, bidirectional=True).eval()
    model = fastlstm.LSTM.from_state_dict(network.state_dict(), prefix="encoder.rnn.")
    assert_matches_torch(network.encoder.rnn, model, random_input(network.encoder.rnn, steps=4, batch=3))


def test_from_state_dict_dtype_is_float64_only_when_every_tensor_is():
    module, _ = make_pair(5, 7, dtype=np.float64)
    assert fastlstm.LSTM.from_state_dict(module.state_dict()).dtype == np.float64
    assert fastlstm.LSTM.from_state_dict(module.state_dict(), dtype=np.float32).dtype == np.float32
    mixed = dict(module.state_dict(), bias_hh_l0=module.bias_hh_l0.detach().float())
    assert fastlstm.LSTM.from_state_dict(mixed).dtype == np.float32


def _assert_runs_as_cell(model, cell):
    assert (model.num_layers, model.bidirectional, model.proj_size) == (1, False, 0)
    x = np.random.default_rng(0).standard_normal((3, cell.input_size)).astype(np.float32)
    h = np.random.default_rng(1).standard_normal((3, cell.hidden_size)).astype(np.float32)
    c = np.random.default_rng(2).standard_normal((3, cell.hidden_size)).astype(np.float32)
    with torch.no_grad():
        want_h, want_c = cell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    _, (got_h, got_c) = model(x[None], (h[None], c[None]))
    np.testing.assert_allclose(got_h[0], want_h.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(got_c[0], want_c.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_from_state_dict_of_an_lstm_cell_is_a_one_layer_lstm(bias):
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(5, 7, bias=bias)
    model = fastlstm.LSTM.from_state_dict(cell.state_dict())
    assert model.bias is bias
    _assert_runs_as_cell(model, cell)


def test_from_state_dict_of_an_lstm_cell_under_a_prefix():
    torch.manual_seed(0)
    network = Network(input_size=5, hidden_size=7)
    _assert_runs_as_cell(fastlstm.LSTM.from_state_dict(network.state_dict(), "decoder."), network.decoder)


def _state_dict(**config):
    module, _ = make_pair(**config)
    return dict(module.state_dict())


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("weight_hh_l1"), r"missing key 'weight_hh_l1'"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.endswith("_l1")], r"missing key 'weight_ih_l1'"),
    (lambda sd: sd.pop("weight_ih_l0"), r"missing key 'weight_ih_l0'"),
    (lambda sd: sd.pop("bias_hh_l2"), r"missing key 'bias_hh_l2'"),
    (lambda sd: sd.pop("weight_ih_l1_reverse"), r"missing key 'weight_ih_l1_reverse'"),
    (lambda sd: sd.update(extra=torch.zeros(1)), r"unexpected key 'extra': not an LSTM parameter"),
    (lambda sd: sd.update(weight_ih_l01=torch.zeros(1)), r"unexpected key 'weight_ih_l01'"),
    (lambda sd: sd.update(weight_ih=torch.zeros(28, 5)), r"mix two kinds of module"),
    (lambda sd: sd.update(weight_hh_l1=torch.zeros(28, 6)),
     r"'weight_hh_l1' has shape \(28, 6\), expected \(28, 7\) for an LSTM with input_size=5, hidden_size=7"),
    (lambda sd: sd.update(weight_ih_l0=torch.zeros(27, 5)),
     r"'weight_ih_l0' has shape \(27, 5\), expected \(4 \* hidden_size, input_size\)"),
    (lambda sd: sd.update(weight_ih_l0=torch.zeros(28)), r"'weight_ih_l0' has shape \(28,\)"),
    (lambda sd: sd.update(bias_ih_l0=torch.zeros(28, 1)), r"'bias_ih_l0' has shape \(28, 1\), expected \(28,\)"),
    (lambda sd: sd.update(weight_hr_l0=torch.zeros(7, 7)), r"proj_size has to be smaller than hidden_size"),
])
def test_from_state_dict_names_the_key_that_is_wrong(change, message):
    state_dict = _state_dict(input_size=5, hidden_size=7, num_layers=3, bidirectional=True)
    change(state_dict)
    with pytest.raises(ValueError, match=message):
        fastlstm.LSTM.from_state_dict(state_dict)


def test_from_state_dict_with_a_wrong_prefix_says_where_the_lstm_is():
    network = Network(input_size=5, hidden_size=7)
    with pytest.raises(ValueError, match=r"no LSTM parameters under prefix 'encoder\.'.*'encoder\.rnn\.'"):
        fastlstm.LSTM.from_state_dict(network.state_dict(), prefix="encoder.")


def test_from_state_dict_of_an_empty_mapping_is_an_error():
    with pytest.raises(ValueError, match="no LSTM parameters under prefix ''"):
        fastlstm.LSTM.from_state_dict({})


def test_from_state_dict_rejects_what_is_not_a_state_dict():
    with pytest.raises(TypeError, match="state_dict"):
        fastlstm.LSTM.from_state_dict([("weight_ih_l0", np.zeros((4, 1)))])
    with pytest.raises(TypeError, match="prefix"):
        fastlstm.LSTM.from_state_dict({}, prefix=3)
    with pytest.raises(TypeError, match="weight_ih_l0"):
        fastlstm.LSTM.from_state_dict({"weight_ih_l0": "not an array"})
