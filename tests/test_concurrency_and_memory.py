"""One model may be shared by many Python threads, and repeated calls do not leak memory."""

import gc
import threading

import numpy as np
import psutil
import pytest
import torch

from lstm_helpers import make_pair, random_hx, random_input

THREADS = 4
CALLS_PER_THREAD = 200


def test_threads_sharing_a_model_get_the_serial_results():
    module, model = make_pair(8, 24, num_layers=2, bidirectional=True, proj_size=6, batch_first=True)
    # Inputs of different shapes, so that concurrent calls would disturb each other's workspace.
    cases = []
    for i, (steps, batch) in enumerate([(3, 1), (7, 4), (1, 9), (12, 2), (5, 5), (9, 3), (2, 16), (6, 0)]):
        x = random_input(module, steps=steps, batch=batch, seed=10 + i)
        hx = random_hx(module, batch, seed=20 + i) if i % 2 else None
        cases.append((x, hx))
    x, hx = random_input(module, steps=4, batch=None, seed=40), random_hx(module, None, seed=41)
    cases.append((x, hx))  # unbatched
    serial = [model(x, hx) for x, hx in cases]
    assert any(np.abs(result[0]).max() > 1e-2 for result in serial if result[0].size)

    start = threading.Barrier(THREADS)
    mismatches, errors = [], []

    def work(thread):
        try:
            start.wait()
            for call in range(CALLS_PER_THREAD):
                index = (thread * 7 + call) % len(cases)
                output, (h_n, c_n) = model(*cases[index])
                expected_output, (expected_h, expected_c) = serial[index]
                if not (np.array_equal(output, expected_output) and np.array_equal(h_n, expected_h)
                        and np.array_equal(c_n, expected_c)):
                    mismatches.append((thread, call, index))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert errors == []
    assert mismatches == [], f"{len(mismatches)} of {THREADS * CALLS_PER_THREAD} calls differ, e.g. {mismatches[:5]}"


def test_parameter_reads_during_concurrent_forward_passes_are_consistent():
    module, model = make_pair(8, 24, num_layers=2, bidirectional=True)
    x = random_input(module, steps=6, batch=3)
    expected = model(x)[0]
    state = {name: value.copy() for name, value in model.named_parameters()}
    stop, errors = threading.Event(), []

    def forward():
        try:
            while not stop.is_set():
                if not np.array_equal(model(x)[0], expected):
                    errors.append("forward result changed")
        except Exception as error:  # pragma: no cover
            errors.append(error)

    threads = [threading.Thread(target=forward) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(200):
            current = model.state_dict()
            assert all(np.array_equal(current[name], state[name]) for name in state)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []


def _rss_bytes():
    return psutil.Process().memory_info().rss


@pytest.mark.parametrize("input_kind", ["numpy", "numpy_with_hx", "torch_with_hx", "unbatched_strided"])
def test_repeated_forward_calls_do_not_leak(input_kind):
    module, model = make_pair(8, 16, num_layers=2, bidirectional=True)
    x = random_input(module, steps=5, batch=3)
    hx = random_hx(module, 3)
    if input_kind == "numpy":
        call = lambda: model(x)  # noqa: E731
    elif input_kind == "numpy_with_hx":
        call = lambda: model(x, hx)  # noqa: E731
    elif input_kind == "torch_with_hx":
        tx, thx = torch.from_numpy(x), (torch.from_numpy(hx[0]), torch.from_numpy(hx[1]))
        call = lambda: model(tx, thx)  # noqa: E731
    else:
        strided, unbatched_hx = random_input(module, steps=10, batch=None)[::2], random_hx(module, None)
        call = lambda: model(strided, unbatched_hx)  # noqa: E731
    # Each call returns ~2.5 KB of results; 20k leaked results would be ~50 MB.
    for _ in range(2_000):
        call()
    gc.collect()
    before = _rss_bytes()
    for _ in range(20_000):
        call()
    gc.collect()
    growth = _rss_bytes() - before
    assert growth < 5 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over 20k calls"


def test_repeated_parameter_access_and_state_dict_do_not_leak():
    _, model = make_pair(8, 16, num_layers=2, bidirectional=True)
    new_value = np.full(model.weight_hh_l1.shape, 0.1, dtype=np.float32)

    def cycle():
        model.weight_ih_l0.sum()
        list(model.named_parameters())
        model.weight_hh_l1 = new_value
        model.load_state_dict(model.state_dict())

    for _ in range(500):
        cycle()
    gc.collect()
    before = _rss_bytes()
    for _ in range(5_000):  # each cycle copies ~30 KB of parameters
        cycle()
    gc.collect()
    growth = _rss_bytes() - before
    assert growth < 5 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB over 5k cycles"
