"""StepBatcher: single steps submitted from many threads run as batched pool steps, each stream's
in submission order, and give what each stream gives alone; close() drains or fails; errors are
named."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fastlstm

RNG = np.random.default_rng(11)


def make_pool(capacity=32, dtype=np.float32, weight_format=None):
    model = fastlstm.LSTM(6, 9, num_layers=2, dtype=dtype, num_threads=2)
    model.load_state_dict({name: RNG.uniform(-0.4, 0.4, value.shape).astype(dtype)
                           for name, value in model.state_dict().items()})
    if weight_format:
        model = model.quantize(weight_format)
    return model, model.stream_pool(capacity)


@pytest.mark.parametrize("dtype,weight_format", [(np.float32, None), (np.float64, None), (np.float32, "int8")])
def test_threads_submitting_steps_get_each_streams_own_outputs_in_order(dtype, weight_format):
    model, pool = make_pool(dtype=dtype, weight_format=weight_format)
    batcher = fastlstm.StepBatcher(pool, max_batch=8, max_delay_us=300)
    failures = []

    def client(seed):
        rng = np.random.default_rng(seed)
        ids = [pool.open() for _ in range(3)]
        solo = {sid: model.stream(1) for sid in ids}
        xs = rng.standard_normal((20, 3, 6)).astype(dtype)
        # Every step of every stream queued at once: order within a stream is the batcher's job.
        futures = [(sid, x[k], batcher.submit(sid, x[k])) for x in xs for k, sid in enumerate(ids)]
        for sid, x_t, future in futures:
            expected = solo[sid].step(x_t)
            if not np.allclose(future.result(timeout=30), expected, rtol=1e-5, atol=1e-6):
                failures.append((seed, sid))
        for sid in ids:
            pool.close(sid)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert not failures
    assert batcher.steps == 5 * 3 * 20
    assert 20 <= batcher.batches < batcher.steps  # each stream steps once per batch; batches coalesce
    assert len(pool) == 0


def test_a_batch_goes_when_full_or_when_its_oldest_step_has_waited_max_delay():
    model, pool = make_pool()
    ids = [pool.open() for _ in range(4)]
    x = np.zeros(6, np.float32)
    with fastlstm.StepBatcher(pool, max_batch=4, max_delay_us=2_000_000) as batcher:
        start = time.perf_counter()
        futures = [batcher.submit(sid, x) for sid in ids]  # full: runs at once, not after 2 s
        for future in futures:
            future.result(timeout=10)
        assert time.perf_counter() - start < 1.0
        assert batcher.batches == 1
    with fastlstm.StepBatcher(pool, max_batch=64, max_delay_us=50_000) as batcher:
        start = time.perf_counter()
        future = batcher.submit(ids[0], x)
        with pytest.raises(TimeoutError):
            future.result(timeout=0.005)
        assert not future.done()
        future.result(timeout=10)
        assert future.done() and time.perf_counter() - start >= 0.045


def test_errors_are_named_and_fail_only_their_own_step():
    model, pool = make_pool()
    a, closed = pool.open(), pool.open()
    pool.close(closed)
    x = np.zeros(6, np.float32)
    batcher = fastlstm.StepBatcher(pool, max_batch=8, max_delay_us=1000)
    good, bad = batcher.submit(a, x), batcher.submit(closed, x)
    assert good.result(timeout=10).shape == (9,)
    with pytest.raises(fastlstm.UnknownStreamError):
        bad.result(timeout=10)
    with pytest.raises(TypeError):
        batcher.submit(a, x.astype(np.float64))
    with pytest.raises(fastlstm.InputError):
        batcher.submit(a, np.zeros(5, np.float32))
    with pytest.raises(fastlstm.UnknownStreamError):
        batcher.submit(-3, x).result(timeout=10)
    with pytest.raises(TypeError):
        batcher.submit("a", x)
    batcher.close()
    with pytest.raises(fastlstm.BatcherClosedError):
        batcher.submit(a, x)
    batcher.close()  # again: nothing
    for bad_arguments in ({"max_batch": 0}, {"max_batch": 2.5}, {"max_delay_us": -1}, {"max_delay_us": "1"}):
        with pytest.raises(ValueError):
            fastlstm.StepBatcher(pool, **bad_arguments)
    with pytest.raises(TypeError):
        fastlstm.StepBatcher(object())


def test_close_without_draining_fails_what_is_queued_and_moves_no_stream():
    model, pool = make_pool()
    a = pool.open()
    before = pool.get_state(a)
    batcher = fastlstm.StepBatcher(pool, max_batch=64, max_delay_us=10_000_000)
    futures = [batcher.submit(a, np.ones(6, np.float32)) for _ in range(3)]
    time.sleep(0.02)
    batcher.close(drain=False)
    for future in futures:
        with pytest.raises(fastlstm.BatcherClosedError):
            future.result(timeout=10)
    for now, then in zip(pool.get_state(a), before):
        np.testing.assert_array_equal(now, then)
    # Draining runs what is queued at once, without waiting for the delay.
    batcher = fastlstm.StepBatcher(pool, max_batch=64, max_delay_us=10_000_000)
    future = batcher.submit(a, np.ones(6, np.float32))
    batcher.close(drain=True)
    assert future.result(timeout=0).shape == (9,)


def test_a_strided_or_borrowed_input_row_is_read_as_it_is():
    model, pool = make_pool()
    a = pool.open()
    x = RNG.standard_normal(12).astype(np.float32)
    with fastlstm.StepBatcher(pool, max_batch=4, max_delay_us=100) as batcher:
        strided = batcher.submit(a, x[::2]).result(timeout=10)
        pool.reset(a)
        contiguous = batcher.submit(a, np.ascontiguousarray(x[::2])).result(timeout=10)
        pool.reset(a)
        column = batcher.submit(a, np.ascontiguousarray(np.stack([x[::2], x[1::2]], axis=1))[:, 0]).result(timeout=10)
        pool.reset(a)
        raw = np.zeros(6 * 4 + 1, np.uint8)
        misaligned = raw[1:].view(np.float32)  # data one byte past an aligned address
        misaligned[:] = x[::2]
        unaligned = batcher.submit(a, misaligned).result(timeout=10)
    np.testing.assert_array_equal(strided, contiguous)
    np.testing.assert_array_equal(column, contiguous)
    np.testing.assert_array_equal(unaligned, contiguous)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_is_told_to_make_its_own_batcher_and_the_parents_keeps_working():
    import os

    model, pool = make_pool()
    a = pool.open()
    x = np.ones(6, np.float32)
    with fastlstm.StepBatcher(pool, max_batch=4, max_delay_us=100) as batcher:
        batcher.submit(a, x).result(timeout=10)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its batcher's thread stayed in the parent
            try:
                os.close(read)
                try:
                    batcher.submit(a, x)
                    answer = b"0"
                except RuntimeError as error:
                    answer = b"1" if "fork" in str(error) else b"0"
                with fastlstm.StepBatcher(pool, max_batch=4, max_delay_us=100) as own:  # a new one works
                    if own.submit(a, x).result(timeout=10).shape != (9,):
                        answer = b"0"
                os.write(write, answer)
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 1)
        os.close(read)
        os.waitpid(pid, 0)
        assert answer == b"1"
        assert batcher.submit(a, x).result(timeout=10).shape == (9,)
