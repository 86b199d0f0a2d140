"""Streaming: a sequence fed a step or a chunk at a time gives one forward's outputs."""

import threading

import numpy as np
import pytest

import fastlstm


def _model(**kwargs):
    np.random.seed(3)
    return fastlstm.LSTM(5, 8, **kwargs)


@pytest.mark.parametrize("num_layers,proj_size,batch_first", [(1, 0, False), (2, 3, True), (3, 0, False), (2, 0, True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steps_and_chunks_equal_one_forward(num_layers, proj_size, batch_first, dtype):
    model = _model(num_layers=num_layers, proj_size=proj_size, batch_first=batch_first, dtype=dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 11, 5) if batch_first else (11, 3, 5)).astype(dtype)
    expected, (h_n, c_n) = model(x)
    assert np.abs(expected).max() > 1e-2

    stream = model.stream(batch_size=3)
    time_axis = 1 if batch_first else 0
    steps = [stream.step(np.take(x, t, axis=time_axis)) for t in range(4)]
    middle = stream(np.take(x, range(4, 7), axis=time_axis))
    rest = stream(np.take(x, range(7, 11), axis=time_axis))
    got = np.concatenate([np.stack(steps, axis=time_axis), middle, rest], axis=time_axis)

    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)
    h, c = stream.state
    np.testing.assert_allclose(h, h_n, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(c, c_n, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)


def test_unbatched_step_and_chunk_with_batch_size_one():
    model = _model(num_layers=2)
    x = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    expected, _ = model(x)
    stream = model.stream()
    first = stream.step(x[0])
    assert first.shape == (8,)
    rest = stream(x[1:])
    assert rest.shape == (5, 8)
    np.testing.assert_allclose(np.vstack([first[None], rest]), expected, rtol=0, atol=1e-6)


class _Subclass(np.ndarray):
    pass


def _misaligned(a):
    """A copy of `a` whose data starts one byte past an aligned address."""
    raw = np.empty(a.nbytes + 1, np.uint8)[1:]
    out = raw.view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("batch", [1, 3])
def test_step_reads_inputs_in_any_layout(batch):
    # Layouts the engine reads in place or copies, and one that takes step's checked path, step
    # after step, against one forward.
    model = _model(num_layers=2)
    x = np.random.default_rng(4).standard_normal((8, batch, 5)).astype(np.float32)
    expected, (h_n, _) = model(x)
    layouts = [
        lambda a: a,
        lambda a: np.ascontiguousarray(a[:, ::-1])[:, ::-1],  # negative stride
        lambda a: np.repeat(a, 2, axis=1)[:, ::2],  # every other element
        np.asfortranarray,
        _misaligned,
        lambda a: a.view(_Subclass),  # not an ndarray itself: the checked path
    ]
    if batch == 1:
        layouts.append(lambda a: a[0])  # (H_in,) -> (H_out,)
    stream = model.stream(batch_size=batch)
    for t in range(8):
        x_t = layouts[t % len(layouts)](x[t])
        y_t = stream.step(x_t)
        assert y_t.shape == ((8,) if np.ndim(x_t) == 1 else (batch, 8))
        np.testing.assert_allclose(y_t.reshape(batch, 8), expected[t], rtol=0, atol=1e-6)
    np.testing.assert_allclose(stream.state[0], h_n, rtol=0, atol=1e-6)


def test_reset_starts_the_stream_over():
    model = _model()
    x = np.random.default_rng(2).standard_normal((4, 1, 5)).astype(np.float32)
    stream = model.stream()
    first = stream(x)
    stream.reset()
    assert not np.any(stream.state[0]) and not np.any(stream.state[1])
    np.testing.assert_array_equal(stream(x), first)


def test_state_can_be_set_and_matches_hx():
    model = _model(num_layers=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, 5)).astype(np.float32)
    h_0 = rng.standard_normal((2, 2, 8)).astype(np.float32)
    c_0 = rng.standard_normal((2, 2, 8)).astype(np.float32)
    expected, _ = model(x, (h_0, c_0))
    stream = model.stream(batch_size=2)
    stream.state = (h_0, c_0)
    np.testing.assert_allclose(stream(x), expected, rtol=0, atol=1e-6)


def test_state_is_a_copy():
    stream = _model().stream()
    h, _ = stream.state
    h[...] = 5
    assert not np.any(stream.state[0])


def test_bidirectional_models_cannot_stream():
    with pytest.raises(ValueError, match="bidirectional"):
        _model(bidirectional=True).stream()


@pytest.mark.parametrize(
    "bad,error",
    [
        (np.zeros((2, 5), np.float32), ValueError),  # wrong batch
        (np.zeros((1, 4), np.float32), ValueError),  # wrong features
        (np.zeros((1, 5), np.float64), TypeError),  # wrong dtype
        ([0.0] * 5, TypeError),  # not an array
    ],
)
def test_step_rejects_bad_input(bad, error):
    stream = _model().stream()
    with pytest.raises(error):
        stream.step(bad)
    assert not np.any(stream.state[0])


def test_chunk_rejects_wrong_batch():
    with pytest.raises(ValueError, match="N=2"):
        _model().stream(batch_size=2)(np.zeros((3, 1, 5), np.float32))


def test_state_setter_checks_shapes_and_dtype():
    stream = _model().stream()
    with pytest.raises(ValueError, match="h of shape"):
        stream.state = (np.zeros((1, 2, 8), np.float32), np.zeros((1, 1, 8), np.float32))
    with pytest.raises(TypeError):
        stream.state = (np.zeros((1, 1, 8), np.float64), np.zeros((1, 1, 8), np.float32))


def test_many_streams_share_one_model_across_threads():
    model = _model(num_layers=2)
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((30, 1, 5)).astype(np.float32) for _ in range(4)]
    expected = [model(x)[0] for x in inputs]
    results = [None] * 4

    def run(i):
        stream = model.stream()
        results[i] = np.stack([stream.step(inputs[i][t]) for t in range(30)])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 3])
def test_step_writes_into_out_and_returns_it(batch):
    model = _model(num_layers=2)
    x = np.random.default_rng(4).standard_normal((6, batch, 5)).astype(np.float32)
    expected, _ = model(x)
    stream = model.stream(batch_size=batch)
    out = np.empty((batch, 8), np.float32)
    for t in range(6):
        step = x[t, 0] if batch == 1 and t % 2 else x[t]  # (H_in,) and (N, H_in) alike
        o = out[0] if step.ndim == 1 else out
        assert stream.step(step, out=o) is o
        np.testing.assert_allclose(out, expected[t], rtol=0, atol=1e-6)


@pytest.mark.parametrize("out,error,message", [
    (np.empty((1, 7), np.float32), ValueError, r"out: expected shape \(1, 8\)"),
    (np.empty((1, 8), np.float64), TypeError, "out: expected dtype float32"),
    (np.empty((1, 16), np.float32)[:, ::2], ValueError, "C-contiguous"),
    ([0.0] * 8, TypeError, "numpy.ndarray"),
])
def test_step_rejects_a_bad_out_and_changes_nothing(out, error, message):
    stream = _model().stream()
    with pytest.raises(error, match=message):
        stream.step(np.ones((1, 5), np.float32), out=out)
    assert not np.any(stream.state[0])


def test_step_rejects_a_read_only_out():
    out = np.empty((1, 8), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _model().stream().step(np.ones((1, 5), np.float32), out=out)


def test_step_into_memory_that_x_t_shares_is_an_error_not_a_wrong_result():
    model = fastlstm.LSTM(8, 8, num_threads=2)  # H_in == H_out: one buffer could be both
    stream = model.stream()
    buffer = np.ones((1, 8), np.float32)
    with pytest.raises(ValueError, match="out: shares memory with x_t"):
        stream.step(buffer, out=buffer)
    joined = np.ones(12, np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        stream.step(joined[:8], out=joined[4:])  # overlapping, not the same
    assert not np.any(stream.state[0])
    np.testing.assert_array_equal(buffer, 1)
