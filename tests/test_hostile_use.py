"""Hostile use: sizes that overflow, special files and odd paths, files replaced or truncated
while they load, parameters read while another thread sets them, threads that cannot start, and
the odd corners of the API. Every rejected call raises a named exception and leaves the model
giving bit-identical outputs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

import fastlstm
from fastlstm._native import core as _core

INT64_MAX = 2**63 - 1
OVERFLOWING = [2**59, 2**61, 2**62, INT64_MAX, 2**64, 2**100]


def _model(**kwargs):
    np.random.seed(0)
    return fastlstm.LSTM(4, 8, num_layers=2, num_threads=2, **kwargs)


def _x(steps=3, batch=2):
    return np.random.default_rng(1).standard_normal((steps, batch, 4)).astype(np.float32)


def _outputs(model, x=None):
    output, (h_n, c_n) = model(_x() if x is None else x)
    return output, h_n, c_n


def _assert_unchanged(model, expected):
    assert all(np.array_equal(a, b) for a, b in zip(_outputs(model), expected))


# ------------------------------------------------------------------------- sizes that overflow
@pytest.mark.parametrize("size", OVERFLOWING)
@pytest.mark.parametrize("argument", ["input_size", "hidden_size"])
def test_a_size_whose_buffers_overflow_is_a_value_error_naming_it(argument, size):
    kwargs = dict(input_size=1, hidden_size=2, num_layers=1)
    kwargs[argument] = size
    with pytest.raises(ValueError, match=f"{argument}: size overflows"):
        fastlstm.LSTM(**kwargs)


@pytest.mark.parametrize("num_layers", [2**54, 2**61, INT64_MAX, 2**64])
def test_a_number_of_layers_whose_weights_overflow_is_a_value_error_naming_it(num_layers):
    with pytest.raises(ValueError, match="num_layers: size overflows"):
        fastlstm.LSTM(1, 2, num_layers=num_layers)


def test_a_number_of_layers_too_large_for_memory_is_a_memory_error_not_a_crash():
    # The weights' count fits in int64; their bookkeeping does not fit in memory.
    script = textwrap.dedent("""
        import resource, fastlstm
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))
        for num_layers in (2**30, 2**40, 2**50):
            try:
                fastlstm.LSTM(1, 2, num_layers=num_layers)
            except MemoryError:
                continue
            raise AssertionError(f"num_layers={num_layers} was built")
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("hidden_size", [2**31, 2**33])
def test_sizes_whose_products_overflow_together_are_refused(hidden_size):
    # Each size fits; the weights of 4 * hidden_size gates of (input_size + hidden_size) do not.
    with pytest.raises(ValueError, match="size overflows"):
        fastlstm.LSTM(2**40, hidden_size)


@pytest.mark.parametrize("rows", [2**61 + 1, 2**62, INT64_MAX // 4])
def test_batch_sizes_whose_sum_overflows_are_refused(rows):
    model = _model()
    expected = _outputs(model)
    data = np.zeros((8, 4), np.float32)
    packed = fastlstm.PackedSequence(data, np.array([rows] * 8, dtype=np.int64))
    with pytest.raises(ValueError, match="batch_sizes: size overflows"):
        model(packed)
    with pytest.raises(ValueError, match="batch_sizes: size overflows"):  # the engine's own check
        model._engine.forward_packed(data, [rows] * 8, None, None)
    _assert_unchanged(model, expected)


def test_zero_stride_inputs_whose_size_overflows_are_refused():
    model = _model()
    expected = _outputs(model)
    row = np.zeros(4, np.float32)
    huge = np.lib.stride_tricks.as_strided(row, shape=(2**30, 2**28, 4), strides=(0, 0, 4))
    with pytest.raises(ValueError, match="input: size overflows"):
        model(huge)
    _assert_unchanged(model, expected)


def test_a_huge_batch_through_many_layers_whose_states_overflow_is_refused():
    # The input (one step) fits; the states returned, 4096 layers of it, do not.
    model = fastlstm.LSTM(4, 2, num_layers=4096, num_threads=1)
    row = np.zeros(4, np.float32)
    wide = np.lib.stride_tricks.as_strided(row, shape=(1, 2**50, 4), strides=(0, 0, 4))
    with pytest.raises(ValueError, match="input: size overflows"):
        model(wide)


@pytest.mark.parametrize("batch_size", [2**62, INT64_MAX, 2**64])
def test_a_stream_of_an_overflowing_batch_size_is_refused(batch_size):
    with pytest.raises(ValueError, match="batch_size: size overflows"):
        _model().stream(batch_size)


@pytest.mark.parametrize("num_threads", [1025, 2**31, 2**64])
def test_num_threads_beyond_the_limit_is_refused(num_threads):
    with pytest.raises(ValueError, match="num_threads"):
        fastlstm.LSTM(4, 8, num_threads=num_threads)


def test_a_huge_unsigned_length_says_it_is_too_large():
    x = np.zeros((3, 1, 4), np.float32)
    with pytest.raises(ValueError, match=r"lengths: value 18446744073709551615 is too large"):
        fastlstm.pack_padded_sequence(x, np.array([2**64 - 1], dtype=np.uint64))


def test_two_dimensional_batch_sizes_say_they_must_be_one_dimensional():
    packed = fastlstm.PackedSequence(np.zeros((4, 4), np.float32), np.array([[2, 2]]))
    with pytest.raises(ValueError, match=r"batch_sizes: expected a 1-D array of sizes, got shape \(1, 2\)"):
        _model()(packed)


# ------------------------------------------------------------------------- files
@pytest.fixture
def saved(tmp_path):
    model = _model(batch_first=False)
    path = tmp_path / "model.safetensors"
    model.save(path)
    return model, path


def _load_in_thread(path, timeout=20):
    """LSTM.load(path) in a thread: the exception it raised, or a failure if it blocked."""
    outcome = []

    def load():
        try:
            fastlstm.LSTM.load(path)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001
            outcome.append(error)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout)
    assert outcome, f"LSTM.load({path!r}) blocked"
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_at_once_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    error = _load_in_thread(str(fifo))
    assert isinstance(error, OSError) and str(fifo) in str(error) and "a FIFO, not a regular file" in str(error)


def test_a_directory_is_refused(tmp_path):
    error = _load_in_thread(str(tmp_path))
    assert isinstance(error, IsADirectoryError) and "a directory, not a regular file" in str(error)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_character_device_is_refused(device):
    error = _load_in_thread(device)
    assert isinstance(error, OSError) and device in str(error) and "a character device" in str(error)


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs UNIX sockets")
def test_a_socket_is_refused(tmp_path):
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        error = _load_in_thread(path)
    assert isinstance(error, OSError) and path in str(error)  # its open fails (ENXIO), or fstat refuses it


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_symlink_is_followed_to_what_it_names(tmp_path, saved):
    model, path = saved
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.symlink_to(path)
    os.mkfifo(tmp_path / "fifo")
    bad.symlink_to(tmp_path / "fifo")
    assert all(np.array_equal(a, b) for a, b in zip(_outputs(fastlstm.LSTM.load(good)), _outputs(model)))
    assert isinstance(_load_in_thread(str(bad)), OSError)


@pytest.mark.parametrize("suffix", ["\0x", "\0", "\0/../other"])
def test_a_nul_in_a_path_is_a_value_error_for_load_and_save(tmp_path, saved, suffix):
    model, path = saved
    with pytest.raises(ValueError, match="path: contains a NUL byte"):
        fastlstm.LSTM.load(str(path) + suffix)
    with pytest.raises(ValueError, match="path: contains a NUL byte"):
        model.save(str(tmp_path / "copy.safetensors") + suffix)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # nothing written


def test_a_file_truncated_while_it_loads_says_where_it_ended(saved):
    _, path = saved
    reader = _core.ModelFileReader(str(path))  # the header is read and checked
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)
    with pytest.raises(OSError, match=r"it ended at byte \d+ of the \d+ it had when opened") as raised:
        _core.LstmFloat32.from_model_file(reader, 1)
    assert raised.value.errno == 5 and raised.value.filename == str(path)


def test_a_file_replaced_after_it_was_opened_is_read_as_it_was(tmp_path, saved):
    model, path = saved
    reader = _core.ModelFileReader(str(path))
    other = fastlstm.LSTM(4, 16, batch_first=True)
    other.save(tmp_path / "other.safetensors")
    os.replace(tmp_path / "other.safetensors", path)  # as save itself replaces a file
    engine = _core.LstmFloat32.from_model_file(reader, 1)
    assert engine.config == reader.config and engine.config["hidden_size"] == 8
    assert all(np.array_equal(a, b) for a, b in zip(engine.forward(_x()), _outputs(model)))


def test_loads_racing_a_writer_that_replaces_the_file_get_one_version_whole(tmp_path):
    versions = {}
    for batch_first, hidden in ((False, 8), (True, 12)):
        np.random.seed(hidden)
        versions[hidden] = fastlstm.LSTM(4, hidden, batch_first=batch_first, num_threads=1)
    path = tmp_path / "model.safetensors"
    versions[8].save(path)
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            for model in versions.values():
                model.save(path)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(150):
            loaded = fastlstm.LSTM.load(path, num_threads=1)
            expected = versions[loaded.hidden_size]
            x = np.ones((2, 3, 4), np.float32)
            assert loaded.batch_first == expected.batch_first
            assert np.array_equal(loaded(x)[0], expected(x)[0])
            assert loaded._engine.config["batch_first"] == expected.batch_first
    finally:
        stop.set()
        thread.join()


def test_a_header_at_the_size_limit_costs_a_bounded_time_and_memory(tmp_path):
    # ~16 MB of tiny tensor entries: refused (no LSTM in it) within a few times its size.
    script = textwrap.dedent(f"""
        import json, resource, struct, fastlstm
        entries = {{f"t{{i}}": {{"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}} for i in range(270000)}}
        header = json.dumps(entries, separators=(",", ":")).encode()
        assert len(header) < 16 << 20
        open({str(tmp_path / 'big.safetensors')!r}, "wb").write(struct.pack("<Q", len(header)) + header)
        del entries, header
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            fastlstm.LSTM.load({str(tmp_path / 'big.safetensors')!r})
        except ValueError as error:
            assert "no LSTM parameters" in str(error)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(grown)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 300_000  # KB: the 16 MB header and ~8x its size in entries at most


# ------------------------------------------------------------------------- concurrent weight updates
def test_parameters_read_during_load_state_dict_are_the_old_or_the_new_never_a_mix():
    np.random.seed(0)
    model = fastlstm.LSTM(64, 256, num_layers=2, num_threads=1)
    states = [{name: np.full(value.shape, v, np.float32) for name, value in model.state_dict().items()}
              for v in (1.0, 2.0)]
    model.load_state_dict(states[0])
    stop, torn = threading.Event(), []

    def writer():
        while not stop.is_set():
            for state in states:
                model.load_state_dict(state)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            weight = model.weight_hh_l0
            if len(np.unique(weight)) != 1:
                torn.append("weight_hh_l0")
            values = {float(np.unique(v)[0]) if len(np.unique(v)) == 1 else None
                      for v in model.state_dict().values()}
            if len(values) != 1 or None in values:
                torn.append("state_dict")
    finally:
        stop.set()
        thread.join()
    assert not torn


# ------------------------------------------------------------------------- threads that cannot start
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS semantics of Linux")
def test_a_pool_whose_threads_cannot_start_raises_naming_the_cause_and_the_process_goes_on():
    script = textwrap.dedent("""
        import resource, numpy as np, fastlstm
        fastlstm.LSTM(4, 8, num_threads=2)(np.zeros((1, 1, 4), np.float32))  # everything loaded
        usage = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (usage + (256 << 20), resource.RLIM_INFINITY))
        try:
            fastlstm.LSTM(4, 8, num_threads=1000)  # 8 MB of stack each: the limit stops them
        except RuntimeError as error:
            assert "cannot start thread" in str(error) and "num_threads" in str(error), error
        else:
            raise AssertionError("1000 threads started under a 256 MB limit")
        print(fastlstm.LSTM(4, 8, num_threads=2)(np.zeros((1, 1, 4), np.float32))[0].shape)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 1, 8)"


# ------------------------------------------------------------------------- corners of the API
def test_a_stream_of_batch_size_zero_steps_and_runs_chunks():
    model = _model()
    stream = model.stream(batch_size=0)
    assert stream.step(np.zeros((0, 4), np.float32)).shape == (0, 8)
    assert stream(np.zeros((3, 0, 4), np.float32)).shape == (3, 0, 8)
    h, c = stream.state
    assert h.shape == (2, 0, 8) and c.shape == (2, 0, 8)


@pytest.mark.parametrize("torch_dtype", [torch.bfloat16, torch.float16])
def test_from_torch_of_a_reduced_precision_module_gives_float32(torch_dtype):
    torch.manual_seed(0)
    module = torch.nn.LSTM(4, 8).to(torch_dtype).eval()
    model = fastlstm.LSTM.from_torch(module)
    assert model.dtype == np.float32
    reference = module.float()
    for name, value in model.state_dict().items():
        assert np.array_equal(value, getattr(reference, name).detach().numpy())
    x = _x()
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(x))
    np.testing.assert_allclose(model(x)[0], expected.numpy(), atol=1e-5)


def test_load_state_dict_casts_bfloat16_tensors_as_torch_does():
    model = _model()
    state = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    for name, value in model.state_dict().items():
        assert np.array_equal(value, state[name].float().numpy())


@pytest.mark.parametrize("name", ["hidden_size", "batch_first", "dtype", "num_threads", "weight_ih_l0", "_engine"])
def test_deleting_an_attribute_of_the_model_is_refused(name):
    model = _model()
    expected = _outputs(model)
    with pytest.raises(AttributeError, match=name):
        delattr(model, name)
    _assert_unchanged(model, expected)
    assert model.hidden_size == 8


def test_attributes_of_the_users_own_can_be_set_and_deleted():
    model = _model()
    model.note = "mine"
    model.note = "still mine"
    del model.note
    assert not hasattr(model, "note")


# ------------------------------------------------------------------------- nothing changes
def _rejected_calls(tmp_path):
    x = _x()
    bad_packed = fastlstm.PackedSequence(np.zeros((8, 4), np.float32), np.array([2**61 + 1] * 8))
    return {
        "input of the wrong width": lambda m: m(np.zeros((3, 2, 5), np.float32)),
        "input of the wrong dtype": lambda m: m(x.astype(np.float64)),
        "overflowing zero-stride input": lambda m: m(np.lib.stride_tricks.as_strided(
            np.zeros(4, np.float32), shape=(2**30, 2**28, 4), strides=(0, 0, 4))),
        "overflowing batch_sizes": lambda m: m(bad_packed),
        "two-dimensional batch_sizes": lambda m: m(fastlstm.PackedSequence(np.zeros((4, 4), np.float32),
                                                                           np.array([[2, 2]]))),
        "hx of the wrong shape": lambda m: m(x, (np.zeros((2, 2, 7), np.float32), np.zeros((2, 2, 8), np.float32))),
        "parameter of the wrong shape": lambda m: setattr(m, "weight_ih_l0", np.zeros((32, 5), np.float32)),
        "parameter of the wrong dtype": lambda m: setattr(m, "weight_ih_l0", np.zeros((32, 4), np.float64)),
        "state_dict with a misshaped key": lambda m: m.load_state_dict(
            {**m.state_dict(), "bias_hh_l1": np.zeros(3, np.float32)}),
        "state_dict with an unexpected key": lambda m: m.load_state_dict({**m.state_dict(), "extra": np.zeros(1)}),
        "deleting a parameter": lambda m: delattr(m, "weight_hh_l1"),
        "deleting the configuration": lambda m: delattr(m, "hidden_size"),
        "changing the configuration": lambda m: setattr(m, "num_layers", 1),
        "saving to a path with a NUL": lambda m: m.save(str(tmp_path / "a\0b")),
        "a stream of an overflowing batch size": lambda m: m.stream(2**62),
        "a stream step of the wrong width": lambda m: m.stream(1).step(np.zeros(5, np.float32)),
    }


def test_every_rejected_call_leaves_the_model_giving_bit_identical_outputs(tmp_path):
    model = _model()
    expected = _outputs(model)
    state = model.state_dict()
    for what, call in _rejected_calls(tmp_path).items():
        with pytest.raises((ValueError, TypeError, AttributeError, RuntimeError)):
            call(model)
        _assert_unchanged(model, expected)
        assert all(np.array_equal(v, state[k]) for k, v in model.state_dict().items()), what
