"""Broken and hostile model files: each raises a ValueError that names the file and the problem,
never a crash, an out-of-bounds read or an allocation the file's bytes do not back."""

import json
import struct

import numpy as np
import pytest

import fastlstm
from fastlstm._native import core as _core

F32_4x2 = {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]}


def raw_file(header, data=b"", length=None) -> bytes:
    """A safetensors file: the 8-byte little-endian header length, the header, the data."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def tiny_model_bytes(tmp_path) -> bytes:
    np.random.seed(0)
    model = fastlstm.LSTM(2, 1)  # weight_ih (4, 2), weight_hh (4, 1), bias_ih (4,), bias_hh (4,)
    model.save(tmp_path / "tiny.safetensors")
    return (tmp_path / "tiny.safetensors").read_bytes()


def tensors(**overrides):
    """The header of a valid LSTM(2, 1) without bias (48 bytes of data), with entries overridden."""
    header = {
        "weight_ih_l0": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
        "weight_hh_l0": {"dtype": "F32", "shape": [4, 1], "data_offsets": [32, 48]},
    }
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not None}


DATA = bytes(48)

CASES = {
    # truncated, and header lengths that do not fit
    "empty file": (b"", r"truncated: 0 bytes, less than the 8-byte header length"),
    "5 bytes": (b"\x02\0\0\0\0", r"truncated: 5 bytes"),
    "header length beyond the file": (raw_file("{}", length=3), r"truncated: header length 3 exceeds the 2 bytes"),
    "header length 2**63": (raw_file("{}", length=2**63), r"header length 9223372036854775808 exceeds the limit"),
    "header length 2**64-1": (raw_file("{}", length=2**64 - 1), r"exceeds the limit of 16777216 bytes"),
    "data cut short": (raw_file(tensors(), DATA[:40]), r"'weight_hh_l0': data_offsets \[32, 48\] reach beyond the 40 bytes"),
    # bad JSON
    "empty header": (raw_file(""), r"bad header: the header must be a JSON object"),
    "array header": (raw_file("[]"), r"the header must be a JSON object"),
    "unterminated object": (raw_file("{"), r"bad header: syntax error .* unexpected end of input"),
    "key without value": (raw_file('{"a"}'), r"expected ':'"),
    "tensor not an object": (raw_file('{"a": 1}'), r"tensor 'a' must be an object"),
    "trailing comma": (raw_file('{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]},}'),
                       r"unexpected '}'; expected string literal"),
    "single quotes": (raw_file("{'a': 1}"), r"invalid literal.*expected string literal"),
    "garbage after the object": (raw_file("{} x"), r"expected end of input"),
    "two objects": (raw_file("{}{}"), r"expected end of input"),
    "unterminated string": (raw_file('{"abc'), r"missing closing quote"),
    "invalid escape": (raw_file('{"a\\x": 1}'), r"forbidden character after backslash"),
    "truncated unicode escape": (raw_file('{"\\u12'), r"must be followed by 4 hex digits"),
    "lone surrogate": (raw_file('{"\\ud800": 1}'), r"surrogate U\+D800\.\.U\+DBFF must be followed by U\+DC00\.\.U\+DFFF"),
    "control character": (raw_file('{"a\nb": 1}'), r"control character U\+000A \(LF\) must be escaped"),
    "invalid UTF-8": (raw_file(b'{"\xff": 1}'), r"ill-formed UTF-8 byte; last read: '\"\\x"),
    "overlong UTF-8": (raw_file(b'{"\xc0\xaf": 1}'), r"ill-formed UTF-8 byte; last read: '\"\\x"),
    "UTF-8 cut at the end": (raw_file(b'{"\xe2\x82'), r"ill-formed UTF-8 byte; last read: '\"\\x"),
    "deep nesting": (raw_file("[" * 100000), r"the header must be a JSON object"),
    "deep nesting in a shape": (raw_file('{"a": {"shape": ' + "[" * 100000), r"shape must hold non-negative integers"),
    "duplicate tensor": (raw_file('{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, '
                                  '"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}', bytes(4)),
                         r"duplicate key 'a'"),
    "duplicate field": (raw_file('{"a": {"dtype": "F32", "dtype": "F32"}}'), r"tensor 'a': duplicate key 'dtype'"),
    "unknown field": (raw_file(tensors(weight_hh_l0=dict(F32_4x2, extra=1))), r"unknown key 'extra'"),
    "no dtype": (raw_file(tensors(weight_ih_l0={"shape": [4, 2], "data_offsets": [0, 32]}), DATA), r"no 'dtype'"),
    "no shape": (raw_file(tensors(weight_ih_l0={"dtype": "F32", "data_offsets": [0, 32]}), DATA), r"no 'shape'"),
    "no data_offsets": (raw_file(tensors(weight_ih_l0={"dtype": "F32", "shape": [4, 2]}), DATA), r"no 'data_offsets'"),
    "dtype not a string": (raw_file(tensors(weight_ih_l0=dict(F32_4x2, dtype=4))), r"dtype must be a string"),
    "negative extent": (raw_file('{"a": {"dtype": "F32", "shape": [-1]}}'), r"shape must hold non-negative integers"),
    "fractional extent": (raw_file('{"a": {"dtype": "F32", "shape": [1.0]}}'), r"shape must hold integers"),
    "exponent extent": (raw_file('{"a": {"dtype": "F32", "shape": [1e3]}}'), r"shape must hold integers"),
    "leading zero": (raw_file('{"a": {"dtype": "F32", "shape": [01]}}'), r"unexpected number literal"),
    "integer overflow": (raw_file('{"a": {"dtype": "F32", "shape": [99999999999999999999]}}'), r"integer too large"),
    "string extent": (raw_file('{"a": {"dtype": "F32", "shape": ["4"]}}'), r"shape must hold non-negative integers"),
    "three offsets": (raw_file('{"a": {"data_offsets": [0, 1, 2]}}'), r"data_offsets has more than 2 entries"),
    "one offset": (raw_file('{"a": {"dtype": "F32", "shape": [], "data_offsets": [0]}}'), r"must be \[begin, end\]"),
    "rank 65": (raw_file('{"a": {"shape": [' + ",".join(["1"] * 65) + "]}}"), r"shape has more than 64 entries"),
    "metadata not an object": (raw_file('{"__metadata__": []}'), r"__metadata__ must be an object of strings"),
    "metadata value not a string": (raw_file('{"__metadata__": {"hidden_size": 7}}'), r"__metadata__ values must be strings"),
    "metadata null": (raw_file('{"__metadata__": null}'), r"__metadata__ must be an object"),
    # offsets and sizes
    "offsets backwards": (raw_file(tensors(weight_hh_l0=dict(F32_4x2, data_offsets=[48, 32])), DATA),
                          r"'weight_hh_l0': data_offsets \[48, 32\] end before they begin"),
    "offsets beyond the data": (raw_file(tensors(weight_hh_l0={"dtype": "F32", "shape": [4, 1], "data_offsets": [48, 64]}), DATA),
                                r"data_offsets \[48, 64\] reach beyond the 48 bytes of data"),
    "overlapping tensors": (raw_file(tensors(weight_hh_l0={"dtype": "F32", "shape": [4, 1], "data_offsets": [16, 32]}), DATA),
                            r"tensors 'weight_ih_l0' and 'weight_hh_l0' overlap"),
    "shape larger than its bytes": (raw_file(tensors(weight_ih_l0=dict(F32_4x2, shape=[4, 3])), DATA),
                                    r"'weight_ih_l0': shape \(4, 3\) of F32 needs 48 bytes but data_offsets \[0, 32\] hold 32"),
    "shape smaller than its bytes": (raw_file(tensors(weight_ih_l0=dict(F32_4x2, shape=[4, 1])), DATA),
                                     r"shape \(4, 1\) of F32 needs 16 bytes but data_offsets \[0, 32\] hold 32"),
    "shape that overflows": (raw_file(tensors(weight_ih_l0=dict(F32_4x2, shape=[2**32, 2**32, 4])), DATA),
                             r"shape \(4294967296, 4294967296, 4\): size overflows"),
    "shape whose bytes overflow": (raw_file(tensors(weight_ih_l0=dict(F32_4x2, shape=[2**62])), DATA),
                                   r"shape \(4611686018427387904,\): size overflows"),
    "absurd size claimed": (raw_file(tensors(weight_ih_l0={"dtype": "F32", "shape": [400000, 100000],
                                                           "data_offsets": [48, 160000000048]}), DATA),
                            r"reach beyond the 48 bytes of data"),
    # dtypes
    "U16 weights": (raw_file(tensors(weight_ih_l0={"dtype": "U16", "shape": [4, 2], "data_offsets": [0, 16]},
                                     weight_hh_l0={"dtype": "F32", "shape": [4, 1], "data_offsets": [16, 32]}), DATA[:32]),
                    r"tensor 'weight_ih_l0' has dtype U16; fastlstm reads F32, F64, F16 and BF16"),
    "unknown weight_format": (raw_file(dict(tensors(), __metadata__={"weight_format": "int4"}), DATA),
                              r"metadata weight_format = 'int4' is not"),
    "I64 weights": (raw_file(tensors(weight_ih_l0={"dtype": "I64", "shape": [4, 2], "data_offsets": [0, 64]},
                                     weight_hh_l0={"dtype": "F32", "shape": [4, 1], "data_offsets": [64, 80]}), bytes(80)),
                    r"has dtype I64"),
    "unknown dtype": (raw_file(tensors(weight_ih_l0=dict(F32_4x2, dtype="F33")), DATA), r"'weight_ih_l0': unknown dtype 'F33'"),
    # tensors that do not make an LSTM
    "no tensors": (raw_file("{}"), r"no LSTM parameters under prefix ''"),
    "shape disagrees with the configuration": (
        raw_file(tensors(weight_hh_l0={"dtype": "F32", "shape": [4, 2], "data_offsets": [32, 64]}), bytes(64)),
        r"'weight_hh_l0' has shape \(4, 2\), expected \(4, 1\) for an LSTM with input_size=2, hidden_size=1"),
    "a missing tensor": (raw_file(tensors(weight_hh_l0=None), DATA[:32]), r"missing key 'weight_hh_l0'"),
    "metadata disagrees": (raw_file(dict(tensors(), __metadata__={
        "input_size": "2", "hidden_size": "1", "num_layers": "1", "bias": "true", "batch_first": "false",
        "bidirectional": "false", "proj_size": "0"}), DATA), r"the metadata describes an LSTM with .*bias=True.*bias=False"),
}


@pytest.mark.parametrize("content, message", list(CASES.values()), ids=list(CASES))
def test_a_broken_file_raises_value_error_naming_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"^" + str(path) + ": " + r".*" + message):
        fastlstm.LSTM.load(path)
    with pytest.raises(ValueError, match=message):  # the C++ entry point, fastlstm::Lstm<T>::load
        _core.LstmFloat64.load(str(path), "", 1)


def test_the_valid_file_the_cases_break_loads(tmp_path):
    path = tmp_path / "valid.safetensors"
    path.write_bytes(raw_file(tensors(), np.arange(12, dtype=np.float32).tobytes()))
    model = fastlstm.LSTM.load(path)
    assert (model.input_size, model.hidden_size, model.bias) == (2, 1, False)
    np.testing.assert_array_equal(model.weight_hh_l0, [[8], [9], [10], [11]])


def test_every_truncation_of_a_model_file_is_an_error(tmp_path):
    content = tiny_model_bytes(tmp_path)
    path = tmp_path / "cut.safetensors"
    for length in range(len(content)):
        path.write_bytes(content[:length])
        with pytest.raises(ValueError, match="cut.safetensors: "):
            fastlstm.LSTM.load(path)


def test_trailing_bytes_after_the_tensors_are_ignored(tmp_path):
    path = tmp_path / "long.safetensors"
    path.write_bytes(tiny_model_bytes(tmp_path) + b"\0" * 16)
    assert fastlstm.LSTM.load(path).hidden_size == 1


def test_a_failed_load_builds_nothing_and_leaves_other_models_alone(tmp_path):
    np.random.seed(0)
    model = fastlstm.LSTM(2, 1, bias=False)
    before = model.state_dict()
    path = tmp_path / "broken.safetensors"
    path.write_bytes(raw_file(tensors(weight_hh_l0=dict(F32_4x2, data_offsets=[48, 32])), DATA))
    with pytest.raises(ValueError, match="broken.safetensors"):
        fastlstm.LSTM.load(path)
    for name, value in before.items():
        assert np.array_equal(getattr(model, name), value)


# Loads in a loop while a second process truncates the file and writes it back in place (as a
# `cp` over a model file does): every load gets the whole model or an OSError, and the process
# never dies of SIGBUS (a memory-mapped reader does: checked against one).
_RACE = r"""
import multiprocessing as mp, os, sys, time
import numpy as np
import fastlstm

def rewrite(path, data, stop, parent):
    while not stop.is_set() and os.getppid() == parent:  # the loader may have died
        with open(path, "r+b") as f:
            f.truncate(64)
            f.seek(0)
            f.write(data)
        time.sleep(0.002)  # a whole file now and then

if __name__ == "__main__":
    path = sys.argv[1]
    data = open(path, "rb").read()
    expected = fastlstm.LSTM.load(path).weight_hh_l0.copy()
    stop = mp.Event()
    writer = mp.Process(target=rewrite, args=(path, data, stop, os.getpid()))
    writer.start()
    loaded = failed = 0
    deadline = time.monotonic() + float(sys.argv[2])
    try:
        while time.monotonic() < deadline or failed == 0 or loaded == 0:
            try:
                model = fastlstm.LSTM.load(path)
            except (OSError, ValueError):
                failed += 1
                continue
            assert np.array_equal(model.weight_hh_l0, expected)
            loaded += 1
    finally:
        stop.set()
        writer.join()
    print(loaded, failed)
"""


def test_a_file_truncated_while_it_loads_is_an_error_not_a_crash(tmp_path):
    import subprocess
    import sys

    fastlstm.LSTM(64, 512).save(tmp_path / "model.safetensors")  # 4.3 MB: a wide window
    script = tmp_path / "race.py"
    script.write_text(_RACE)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "model.safetensors"), "2"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    loaded, failed = map(int, result.stdout.split())
    assert failed > 0 and loaded > 0  # both sides of the race were run
