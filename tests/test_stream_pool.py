"""StreamPool: streams that open, close and step in any subset, in any order, from several threads,
give what each stream gives alone (``lstm.stream(1)``); states move in and out; every rejected
call leaves every stream as it was."""

from __future__ import annotations

import os
import pickle
import threading

import numpy as np
import pytest

import fastlstm

RNG = np.random.default_rng(2026)


def make_model(dtype=np.float32, weight_format=None, **options):
    config = dict(input_size=5, hidden_size=7, num_layers=2)
    config.update(options)
    model = fastlstm.LSTM(**config, dtype=dtype, num_threads=2)
    model.load_state_dict({name: RNG.uniform(-0.4, 0.4, value.shape).astype(dtype)
                           for name, value in model.state_dict().items()})
    return model.quantize(weight_format) if weight_format else model


def tolerance(model):
    return 1e-12 if model.dtype == np.float64 else 1e-5


def run_schedule(model, pool, rng, ticks=50, most=None):
    """Random opens, closes and steps of random subsets, at most `most` streams open (the pool's
    capacity: the pool is this caller's alone); each step checked against the streams stepped
    alone. Returns the open streams and their solo streams."""
    solo = {}
    alone = most is None
    most = pool.capacity if alone else most
    for tick in range(ticks):
        if len(solo) < most and rng.random() < 0.4:
            solo[pool.open()] = model.stream(1)
        if solo and rng.random() < 0.15:
            victim = list(solo)[rng.integers(len(solo))]
            pool.close(victim)
            del solo[victim]
            assert victim not in pool
        ids = [sid for sid in solo if rng.random() < 0.8]
        rng.shuffle(ids)
        x = rng.standard_normal((len(ids), model.input_size)).astype(model.dtype)
        y = pool.step(ids, x)
        assert y.shape == (len(ids), model.proj_size or model.hidden_size) and y.dtype == model.dtype
        for row, sid in enumerate(ids):
            np.testing.assert_allclose(y[row], solo[sid].step(x[row]), rtol=tolerance(model), atol=tolerance(model))
        assert len(pool) == len(solo) or not alone
    return solo


@pytest.mark.parametrize("dtype,weight_format,options", [
    (np.float32, None, {}),
    (np.float64, None, {}),
    (np.float32, None, {"proj_size": 3}),
    (np.float32, None, {"num_layers": 1, "bias": False}),
    (np.float32, "int8", {}),
    (np.float32, "bfloat16", {"proj_size": 3}),
    (np.float32, "float16", {}),
])
def test_random_schedules_equal_each_stream_alone(dtype, weight_format, options):
    model = make_model(dtype, weight_format, **options)
    pool = model.stream_pool(6)
    solo = run_schedule(model, pool, np.random.default_rng(7))
    for sid, stream in solo.items():
        h, c = pool.get_state(sid)
        expected_h, expected_c = stream.state
        assert h.shape == expected_h.shape and c.shape == expected_c.shape
        np.testing.assert_allclose(h, expected_h, rtol=tolerance(model), atol=tolerance(model))
        np.testing.assert_allclose(c, expected_c, rtol=tolerance(model), atol=tolerance(model))


def test_threads_each_with_their_own_streams():
    model = make_model()
    pool = model.stream_pool(16)
    errors = []

    def worker(seed):
        try:
            run_schedule(model, pool, np.random.default_rng(seed), ticks=40, most=4)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


def test_states_move_between_pools_and_survive_a_saved_model(tmp_path):
    model = make_model(proj_size=3)
    pool = model.stream_pool(4)
    sid = pool.open()
    xs = RNG.standard_normal((6, 1, model.input_size)).astype(np.float32)
    for x in xs[:3]:
        pool.step([sid], x)
    state = pool.get_state(sid)
    expected = [pool.step([sid], x) for x in xs[3:]]

    path = tmp_path / "model.safetensors"
    model.save(path)
    for restored_model in (fastlstm.LSTM.load(path), pickle.loads(pickle.dumps(model))):
        other = restored_model.stream_pool(3)
        moved = other.open(state)
        unbatched = other.open((state[0][:, 0], state[1][:, 0]))  # (num_layers, H) too
        set_later = other.open()
        with pytest.raises(fastlstm.PoolFullError):
            other.open()
        other.close(set_later)
        set_later = other.open()
        other.set_state(set_later, state)
        other.close(unbatched)
        for x, y in zip(xs[3:], expected):
            out = other.step(np.array([set_later, moved]), np.concatenate([x, x]))
            np.testing.assert_array_equal(out, np.concatenate([y, y]))
    pool.reset(sid)
    assert all(np.all(part == 0) for part in pool.get_state(sid))


def test_ids_are_never_reused_and_any_integer_sequence_names_streams():
    pool = make_model().stream_pool(2)
    a, b = pool.open(), pool.open()
    pool.close(b)
    c = pool.open()
    assert c not in (a, b) and b not in pool and a in pool and c in pool
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    expected = pool.get_state(a), pool.get_state(c)
    for ids in ([a, c], (a, c), np.array([a, c], dtype=np.int32), np.array([a, c], dtype=np.uint64),
                np.array([a, c])[::1]):
        for sid, state in zip((a, c), expected):
            pool.set_state(sid, state)
        first = pool.step(ids, x)
        for sid, state in zip((a, c), expected):
            pool.set_state(sid, state)
        np.testing.assert_array_equal(pool.step([a, c], x), first)
    empty = pool.step([], np.empty((0, 5), np.float32))
    assert empty.shape == (0, 7)
    assert "x" not in pool and True not in pool and -1 not in pool and 2**70 not in pool


def test_out_is_written_and_returned():
    pool = make_model().stream_pool(2)
    ids = [pool.open(), pool.open()]
    x = RNG.standard_normal((2, 5)).astype(np.float32)
    for sid in ids:
        pool.reset(sid)
    expected = pool.step(ids, x)
    for sid in ids:
        pool.reset(sid)
    out = np.empty((2, 7), np.float32)
    assert pool.step(ids, x, out=out) is out
    np.testing.assert_array_equal(out, expected)


def bad_calls(pool, a, b, closed):
    """Calls that must raise, each with the exception it must raise."""
    x = np.zeros((2, 5), np.float32)
    return [
        (lambda: pool.step([a, closed], x), fastlstm.UnknownStreamError),
        (lambda: pool.step([a, 12345], x), fastlstm.UnknownStreamError),
        (lambda: pool.step([a, -1], x), fastlstm.UnknownStreamError),
        (lambda: pool.step(np.array([a, 2**63 + 5], dtype=np.uint64), x), fastlstm.UnknownStreamError),
        (lambda: pool.step([a, a], x), fastlstm.InputError),
        (lambda: pool.step([b, a, b], np.zeros((3, 5), np.float32)), fastlstm.InputError),
        (lambda: pool.step([a, b], np.zeros((3, 5), np.float32)), fastlstm.InputError),
        (lambda: pool.step([a, b], np.zeros((2, 4), np.float32)), fastlstm.InputError),
        (lambda: pool.step([a, b], x.astype(np.float64)), TypeError),
        (lambda: pool.step([a, b], x.tolist()), TypeError),
        (lambda: pool.step([a, 1.5], x), fastlstm.InputError),
        (lambda: pool.step([[a, b]], x), fastlstm.InputError),
        (lambda: pool.step(a, x), TypeError),
        (lambda: pool.step([a, b], x, out=np.zeros((2, 6), np.float32)), fastlstm.InputError),
        (lambda: pool.step([a, b], x, out=np.zeros((2, 7), np.float64)), TypeError),
        (lambda: pool.step([a, b], x, out=np.zeros((7, 2), np.float32).T), fastlstm.InputError),
        (lambda: pool.set_state(a, (np.zeros((2, 1, 6), np.float32), np.zeros((2, 1, 7), np.float32))),
         fastlstm.InputError),
        (lambda: pool.set_state(a, (np.zeros((2, 1, 7), np.float32),)), TypeError),
        (lambda: pool.set_state(closed, pool.get_state(a)), fastlstm.UnknownStreamError),
        (lambda: pool.open((np.zeros((1, 1, 7), np.float32), np.zeros((1, 1, 7), np.float32))), fastlstm.InputError),
        (lambda: pool.close(closed), fastlstm.UnknownStreamError),
        (lambda: pool.close("a"), TypeError),
        (lambda: pool.get_state(2**64), fastlstm.UnknownStreamError),
        (lambda: pool.reset(closed), fastlstm.UnknownStreamError),
    ]


def test_every_rejected_call_is_a_named_error_and_changes_no_stream():
    model = make_model()
    pool = model.stream_pool(3)
    a, b, closed = pool.open(), pool.open(), pool.open()
    pool.close(closed)
    pool.step([a, b], RNG.standard_normal((2, 5)).astype(np.float32))
    before = {sid: pool.get_state(sid) for sid in (a, b)}
    for call, error in bad_calls(pool, a, b, closed):
        with pytest.raises(error):
            call()
        assert len(pool) == 2
        for sid, (h, c) in before.items():
            now_h, now_c = pool.get_state(sid)
            np.testing.assert_array_equal(now_h, h)
            np.testing.assert_array_equal(now_c, c)
    with pytest.raises(KeyError, match=str(closed)):  # UnknownStreamError is a KeyError
        pool.close(closed)


def test_a_full_pool_and_models_that_cannot_have_one():
    pool = make_model().stream_pool(1)
    pool.open()
    with pytest.raises(fastlstm.PoolFullError, match="full"):
        pool.open()
    assert isinstance(fastlstm.PoolFullError("x"), RuntimeError)
    with pytest.raises(ValueError, match="unidirectional"):
        make_model(bidirectional=True).stream_pool(4)
    for capacity in (0, -1, 2.0, True, "4"):
        with pytest.raises(ValueError, match="capacity"):
            make_model().stream_pool(capacity)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_steps_the_pool_it_inherited():
    model = make_model()
    pool = model.stream_pool(2)
    sid = pool.open()
    x = RNG.standard_normal((1, 5)).astype(np.float32)
    pool.step([sid], x)
    state = pool.get_state(sid)
    expected = pool.step([sid], x)
    pool.set_state(sid, state)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when it got the parent's result
        try:
            os.close(read)
            ok = np.array_equal(pool.step([sid], x), expected)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    np.testing.assert_array_equal(pool.step([sid], x), expected)  # the parent's pool is intact
