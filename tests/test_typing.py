"""The type hints: the package type-checks, and what user code sees through them is precise enough
to catch misuse (the package ships py.typed)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "python"

pytest.importorskip("mypy", reason="mypy comes with the test extras: pip install '.[test]'")


def _mypy(*args, cache):
    # The source tree, whatever the installation (an editable one hides it from mypy).
    env = dict(os.environ, MYPYPATH=str(SOURCE))
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--config-file",
                           str(ROOT / "pyproject.toml"), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mypy-cache")


def test_the_package_type_checks(cache):
    result = _mypy(str(SOURCE / "fastlstm"), cache=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (SOURCE / "fastlstm" / "py.typed").is_file()


USER_CODE = '''
import numpy as np
import fastlstm

lstm = fastlstm.LSTM(4, 8, num_layers=2)
x = np.zeros((5, 1, 4), np.float32)
output, (h_n, c_n) = lstm(x)
reveal_type(output)
reveal_type(h_n)
reveal_type(fastlstm.pack_sequence([x[:, 0], x[:3, 0]]))
stream = lstm.stream(1)
x_t = np.zeros((1, 4), np.float32)  # a typed array (NumPy's stubs type x[0] as Any)
reveal_type(stream.step(x_t))
reveal_type(fastlstm.LSTM.load("model.safetensors"))
lstm.save(3.5)
fastlstm.LSTM(4, 8).num_threads + "x"
'''


def test_user_code_sees_the_types(cache, tmp_path):
    script = tmp_path / "user.py"
    script.write_text(USER_CODE)
    result = _mypy(str(script), cache=cache)
    out = result.stdout
    lines = {int(line.split(":")[1]): line for line in out.splitlines() if line.startswith(str(script))}
    ndarray = "numpy.ndarray"

    def line_of(text):
        return USER_CODE.splitlines().index(text) + 1

    assert ndarray in lines[line_of("reveal_type(output)")], out
    assert ndarray in lines[line_of("reveal_type(h_n)")], out
    assert "PackedSequence" in lines[line_of("reveal_type(fastlstm.pack_sequence([x[:, 0], x[:3, 0]]))")], out
    assert ndarray in lines[line_of("reveal_type(stream.step(x_t))")], out
    assert "fastlstm._lstm.LSTM" in lines[line_of('reveal_type(fastlstm.LSTM.load("model.safetensors"))')], out
    # Misuse is caught: a float for a path, an int plus a str.
    assert "arg-type" in lines[line_of("lstm.save(3.5)")], out
    assert "operator" in lines[line_of('fastlstm.LSTM(4, 8).num_threads + "x"')], out
    assert result.returncode == 1, out  # errors, and nothing else went wrong
