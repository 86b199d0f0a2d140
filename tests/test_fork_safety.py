"""A model works on both sides of fork(): in the child (whose thread pool's workers stayed in the
parent) and, after it, in the parent, whether it forks idle, mid-forward in another thread, from
multiprocessing's fork context or from a child again. Every child is bounded by an alarm, so a
hang fails the test instead of stalling the suite."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading

import numpy as np
import pytest

import fastlstm

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_SECONDS = 20


def _model(num_threads=2, **kwargs):
    np.random.seed(0)
    return fastlstm.LSTM(6, 32, num_layers=2, num_threads=num_threads, **kwargs)


def _input(steps=5, batch=3, seed=1):
    return np.random.default_rng(seed).standard_normal((steps, batch, 6)).astype(np.float32)


def _outputs(model, x):
    output, (h_n, c_n) = model(x)
    return output, h_n, c_n


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def _in_child(body) -> int:
    """Runs body() in a forked child; returns its exit status (0: body returned True)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            signal.alarm(CHILD_SECONDS)
            status = 0 if body() else 2
        except BaseException as error:  # noqa: BLE001
            print(f"child: {type(error).__name__}: {error}", file=sys.stderr)
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_a_model_used_before_fork_gives_the_same_outputs_in_the_child_and_the_parent(num_threads):
    model, x = _model(num_threads), _input()
    expected = _outputs(model, x)
    assert _in_child(lambda: _same(_outputs(model, x), expected) and _same(_outputs(model, x), expected)) == 0
    assert _same(_outputs(model, x), expected)


def test_a_model_never_run_before_fork_runs_in_the_child():
    model, x = _model(), _input()
    assert _in_child(lambda: _outputs(model, x)[0].shape == (5, 3, 32)) == 0
    assert _outputs(model, x)[0].shape == (5, 3, 32)


def test_a_model_built_in_the_child_runs_there():
    x = _input()
    expected = _outputs(_model(), x)  # the parent has a pool running
    assert _in_child(lambda: _same(_outputs(_model(), x), expected)) == 0


def test_streams_and_packed_input_run_in_the_child():
    model, x = _model(), _input()
    stream = model.stream(batch_size=3)
    expected_steps = [stream.step(x[t]) for t in range(2)]
    packed = fastlstm.pack_padded_sequence(x, lengths=[5, 3, 2])
    expected_packed = model(packed)[0].data

    def child():
        stream.reset()
        steps_ok = all(np.array_equal(stream.step(x[t]), expected_steps[t]) for t in range(2))
        return steps_ok and np.array_equal(model(packed)[0].data, expected_packed)

    assert _in_child(child) == 0


def test_a_grandchild_forked_from_a_child_runs_the_model():
    model, x = _model(), _input()
    expected = _outputs(model, x)
    assert _in_child(lambda: _same(_outputs(model, x), expected)
                     and _in_child(lambda: _same(_outputs(model, x), expected)) == 0) == 0


def test_fork_while_another_thread_is_inside_a_forward():
    model = _model()
    long_x, x = _input(steps=400, batch=8, seed=2), _input()
    expected = _outputs(model, x)
    stop, running, errors = threading.Event(), threading.Event(), []

    def forward_loop():
        try:
            while not stop.is_set():
                running.set()
                model(long_x)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=forward_loop)
    thread.start()
    try:
        running.wait()
        statuses = [_in_child(lambda: _same(_outputs(model, x), expected)) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    assert statuses == [0] * 5 and not errors
    assert _same(_outputs(model, x), expected)


def test_multiprocessing_fork_context_workers_use_a_model_of_the_parent():
    model, inputs = _model(), [_input(seed=s) for s in range(4)]
    expected = [_outputs(model, x) for x in inputs]
    global _SHARED_MODEL
    _SHARED_MODEL = model  # inherited by the forked workers, not pickled
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_forward_with_inherited_model, range(len(inputs)), chunksize=1)
    assert all(_same(result, want) for result, want in zip(results, expected))
    assert _same(_outputs(model, inputs[0]), expected[0])


_SHARED_MODEL = None


def _forward_with_inherited_model(seed):
    return _outputs(_SHARED_MODEL, _input(seed=seed))
