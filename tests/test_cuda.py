"""The CUDA backend: availability and errors everywhere; on a machine with a GPU, parity with
torch (cuDNN when torch has CUDA, else its CPU path) and with fastlstm on the CPU, GPU arrays in
and out without copies, CUDA-graph replay, packed sequences and concurrency.

Without a GPU (or without the CUDA build) the GPU tests skip and say why. Run the GPU part under
compute-sanitizer with: compute-sanitizer --tool memcheck python -m pytest tests/test_cuda.py
"""

from __future__ import annotations

import importlib
import itertools
import threading

import numpy as np
import pytest

import fastlstm
from fastlstm import _cuda_runtime

HAS_GPU = fastlstm.cuda_available()
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason=f"no usable GPU: {fastlstm.cuda_unavailable_reason()}")
no_gpu = pytest.mark.skipif(HAS_GPU, reason="a GPU is available: this checks the behaviour without one")

try:
    importlib.import_module("fastlstm._cuda")
    CUDA_BUILT = True
except ImportError:
    CUDA_BUILT = False


# ----------------------------------------------------------------------------- everywhere
def test_cuda_available_is_a_bool_and_the_reason_says_why_not():
    available = fastlstm.cuda_available()
    assert isinstance(available, bool)
    reason = fastlstm.cuda_unavailable_reason()
    assert isinstance(reason, str)
    assert (reason == "") == available
    assert fastlstm.cuda_device_count() >= (1 if available else 0)
    assert isinstance(fastlstm.build_info()["cuda"], str)


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:0", 0])
def test_a_cuda_model_without_a_gpu_raises_runtime_error_with_the_reason(device):
    with pytest.raises(RuntimeError, match="CUDA is not available") as info:
        fastlstm.LSTM(4, 8, device=device)
    assert fastlstm.cuda_unavailable_reason() in str(info.value)


@no_gpu
def test_to_cuda_without_a_gpu_leaves_the_model_on_the_cpu():
    model = fastlstm.LSTM(4, 8)
    before = model.state_dict()
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        model.to("cuda")
    with pytest.raises(RuntimeError):
        model.cuda()
    with pytest.raises(RuntimeError):
        model.to("cuda", allow_tf32=True)
    assert model.device == "cpu" and model.allow_tf32 is False
    out, _ = model(np.ones((3, 2, 4), np.float32))
    assert isinstance(out, np.ndarray)
    for name, value in model.state_dict().items():
        assert np.array_equal(value, before[name])


def test_to_cpu_and_cpu_return_the_model_itself():
    model = fastlstm.LSTM(4, 8)
    assert model.to("cpu") is model and model.cpu() is model and model.to() is model
    assert model.device == "cpu"


@pytest.mark.parametrize(
    "device,expected", [(None, None), ("cpu", None), ("cuda", 0), ("cuda:0", 0), ("cuda:3", 3), (2, 2)]
)
def test_device_strings_parse_as_torch_spells_them(device, expected):
    assert _cuda_runtime.parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:-1", "cuda0", -1, True])
def test_bad_device_strings_raise_value_error_naming_device(device):
    with pytest.raises(ValueError, match="device"):
        _cuda_runtime.parse_device(device)


@pytest.mark.skipif(not CUDA_BUILT, reason="this build has no CUDA module (FASTLSTM_CUDA=OFF)")
def test_the_cuda_module_imports_and_reports_devices_without_failing():
    module = importlib.import_module("fastlstm._cuda")
    count, reason = module.device_count()
    assert count >= 0 and isinstance(reason, str)
    assert (count == 0) == bool(reason)
    for name in ("LstmFloat32", "LstmFloat64", "DeviceArray", "DeviceTensor"):
        assert hasattr(module, name)


@pytest.mark.skipif(not CUDA_BUILT, reason="this build has no CUDA module (FASTLSTM_CUDA=OFF)")
def test_the_cuda_module_is_not_loaded_on_a_cpu_that_lacks_its_instruction_set(monkeypatch):
    build = importlib.import_module("fastlstm._cuda_build")
    assert build.ISA in ("baseline", "avx2", "avx512")
    monkeypatch.setattr(_cuda_runtime, "_loaded", None)  # forget what this process found
    monkeypatch.setattr(_cuda_runtime, "_missing_cpu_features", lambda: ["avx2", "fma"])
    assert not fastlstm.cuda_available()
    assert "AVX2, FMA" in fastlstm.cuda_unavailable_reason()
    with pytest.raises(RuntimeError, match="AVX2, FMA"):
        fastlstm.LSTM(4, 8, device="cuda")


@pytest.mark.skipif(CUDA_BUILT, reason="this build has the CUDA module")
def test_without_the_cuda_module_the_reason_says_how_to_build_it():
    assert "FASTLSTM_CUDA=ON" in fastlstm.cuda_unavailable_reason()


def test_numpy_arrays_are_not_device_arrays():
    assert not _cuda_runtime.is_device_array(np.zeros(3, np.float32))


# ----------------------------------------------------------------------------- with a GPU
if HAS_GPU:
    torch = pytest.importorskip("torch")
    from lstm_helpers import ATOL, assert_same_results, make_pair, random_hx, random_input, torch_forward

    TORCH_CUDA = torch.cuda.is_available()
else:
    torch = None
    TORCH_CUDA = False

needs_torch_cuda = pytest.mark.skipif(not TORCH_CUDA, reason="torch has no CUDA here")


def _cuda_pair(*args, **kwargs):
    module, model = make_pair(*args, **kwargs)
    return module, model.to("cuda")


def _reference(module, x, hx=None):
    """cuDNN's result when torch has CUDA (float32 math: TF32 off), else torch's CPU result."""
    if not TORCH_CUDA:
        return torch_forward(module, x, hx)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    gpu = module.to("cuda")
    try:
        with torch.no_grad():
            to_gpu = lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()  # noqa: E731
            out, (h, c) = gpu(to_gpu(x), None if hx is None else (to_gpu(hx[0]), to_gpu(hx[1])))
        return out.cpu().numpy(), (h.cpu().numpy(), c.cpu().numpy())
    finally:
        module.to("cpu")


def _grid():
    for layers, bias, batch_first, bidirectional, proj, batch, with_hx, dtype in itertools.product(
        [1, 2, 3], [True, False], [False, True], [False, True], [0, 5], [None, 0, 1, 3], [False, True],
        [np.float32, np.float64],
    ):
        yield pytest.param(layers, bias, batch_first, bidirectional, proj, batch, with_hx, dtype,
                           id=f"l{layers}-b{int(bias)}-bf{int(batch_first)}-bi{int(bidirectional)}-p{proj}-"
                              f"N{batch}-hx{int(with_hx)}-{np.dtype(dtype).name}")


@needs_gpu
@pytest.mark.parametrize("num_layers,bias,batch_first,bidirectional,proj_size,batch,with_hx,dtype", list(_grid()))
def test_gpu_forward_matches_torch_and_the_cpu(num_layers, bias, batch_first, bidirectional, proj_size, batch,
                                               with_hx, dtype):
    module, model = make_pair(7, 17, num_layers=num_layers, bias=bias, batch_first=batch_first,
                              bidirectional=bidirectional, proj_size=proj_size, dtype=dtype, weight_scale=3.0)
    x = random_input(module, steps=5, batch=batch, dtype=dtype)
    hx = random_hx(module, batch, dtype=dtype) if with_hx else None
    on_cpu = model(x, hx)
    model.to("cuda")
    assert model.device == "cuda:0"
    on_gpu = model(x, hx)
    atol = ATOL[np.dtype(dtype)]
    assert_same_results(on_gpu, _reference(module, x, hx), atol, require_nontrivial=batch != 0)
    assert_same_results(on_gpu, on_cpu, atol, require_nontrivial=False)


@needs_gpu
@pytest.mark.parametrize("input_size,hidden_size,proj_size,steps,batch",
                         [(1, 1, 0, 1, 1), (33, 7, 3, 1, 7), (5, 65, 0, 11, 4), (2, 47, 13, 9, 33), (64, 256, 0, 20, 64)])
def test_gpu_forward_matches_for_odd_and_larger_sizes(input_size, hidden_size, proj_size, steps, batch):
    module, model = _cuda_pair(input_size, hidden_size, num_layers=2, bidirectional=True, proj_size=proj_size)
    x = random_input(module, steps=steps, batch=batch)
    assert_same_results(model(x), _reference(module, x), 1e-5, require_nontrivial=False)


@needs_gpu
def test_graph_replay_repeats_and_follows_weight_changes():
    module, model = _cuda_pair(8, 32, num_layers=2, bidirectional=True)
    x = random_input(module, steps=6, batch=3)
    first = model(x)
    for _ in range(3):  # the second call captures the graph, later ones replay it
        again = model(x)
        for a, b in zip((first[0],) + first[1], (again[0],) + again[1]):
            assert np.array_equal(a, b)
    assert model._engine.graph_replays == 3  # not silently run directly
    with torch.no_grad():
        module.weight_hh_l1_reverse.mul_(-1.5)
    model.weight_hh_l1_reverse = module.weight_hh_l1_reverse.detach().numpy().copy()
    assert_same_results(model(x), torch_forward(module, x), 1e-5)


@needs_gpu
def test_shapes_interleave_and_graphs_match_eager_runs(monkeypatch):
    module, model = _cuda_pair(6, 24, num_layers=2, proj_size=7)
    inputs = [random_input(module, steps=steps, batch=batch, seed=steps) for steps, batch in
              [(4, 2), (9, 5), (4, 2), (1, 1), (9, 5), (4, 2)]]
    graphed = [model(x) for x in inputs]
    monkeypatch.setenv("FASTLSTM_CUDA_GRAPHS", "0")
    eager_model = fastlstm.LSTM.from_torch(module).to("cuda")
    for x, result in zip(inputs, graphed):
        assert_same_results(eager_model(x), result, 1e-6, require_nontrivial=False)
        assert_same_results(result, torch_forward(module, x), 1e-5)


@needs_gpu
@needs_torch_cuda
@pytest.mark.parametrize("batch_first", [False, True])
def test_torch_cuda_tensors_are_read_in_place_and_results_stay_on_the_gpu(batch_first):
    module, model = _cuda_pair(8, 16, num_layers=2, bidirectional=True, batch_first=batch_first)
    x = random_input(module, steps=5, batch=3)
    h0, c0 = random_hx(module, 3)
    t = lambda a: torch.from_numpy(a).cuda()  # noqa: E731
    out, (h, c) = model(t(x), (t(h0), t(c0)))
    for value in (out, h, c):
        assert isinstance(value, torch.Tensor) and value.is_cuda
    assert_same_results((out.cpu().numpy(), (h.cpu().numpy(), c.cpu().numpy())), model(x, (h0, c0)), 0)


@needs_gpu
@needs_torch_cuda
def test_strided_and_transposed_device_inputs():
    module, model = _cuda_pair(8, 16)
    x = random_input(module, steps=6, batch=4)
    base = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))).cuda()  # (N, L, I) memory
    transposed = base.transpose(0, 1)  # (L, N, I), not contiguous
    wide = torch.zeros(6, 4, 24, device="cuda")
    wide[:, :, ::3] = torch.from_numpy(x).cuda()  # feature stride 3
    expected = model(x)
    for value in (transposed, wide[:, :, ::3]):
        out, (h, c) = model(value)
        assert_same_results((out.cpu().numpy(), (h.cpu().numpy(), c.cpu().numpy())), expected, 0)


class _DLPackOnly:
    """A GPU array that speaks only DLPack."""

    def __init__(self, tensor):
        self._tensor = tensor

    def __dlpack__(self, stream=None, **kwargs):
        return self._tensor.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self._tensor.__dlpack_device__()


class _InterfaceOnly:
    """A GPU array that speaks only __cuda_array_interface__."""

    def __init__(self, tensor):
        self._tensor = tensor
        self.__cuda_array_interface__ = tensor.__cuda_array_interface__


@needs_gpu
@needs_torch_cuda
@pytest.mark.parametrize("wrapper", [_DLPackOnly, _InterfaceOnly])
def test_any_dlpack_or_array_interface_producer_works(wrapper):
    module, model = _cuda_pair(8, 16, proj_size=4)
    x = random_input(module, steps=5, batch=2)
    out, (h, c) = model(wrapper(torch.from_numpy(x).cuda()))
    assert isinstance(out, fastlstm._cuda.DeviceArray) and out.device == "cuda:0"
    assert out.shape == (5, 2, 4) and out.dtype == np.float32
    assert_same_results((out.numpy(), (h.numpy(), c.numpy())), model(x), 0)


@needs_gpu
@needs_torch_cuda
def test_device_arrays_export_without_a_copy():
    module, model = _cuda_pair(8, 16)
    out, _ = model(_DLPackOnly(torch.from_numpy(random_input(module, steps=3, batch=2)).cuda()))
    pointer = out.__cuda_array_interface__["data"][0]
    as_torch = torch.from_dlpack(out)
    assert as_torch.data_ptr() == pointer and as_torch.is_cuda
    assert torch.as_tensor(out, device="cuda").data_ptr() == pointer
    np.testing.assert_array_equal(as_torch.cpu().numpy(), out.numpy())
    del out  # torch's tensor keeps the memory alive
    assert torch.isfinite(as_torch).all()


@needs_gpu
def test_cupy_arrays_in_cupy_arrays_out():
    cupy = pytest.importorskip("cupy")
    module, model = _cuda_pair(8, 16, bidirectional=True)
    x = random_input(module, steps=4, batch=3)
    out, (h, c) = model(cupy.asarray(x))
    assert isinstance(out, cupy.ndarray)
    assert_same_results((cupy.asnumpy(out), (cupy.asnumpy(h), cupy.asnumpy(c))), model(x), 0)


@needs_gpu
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequences_on_the_gpu(enforce_sorted, bidirectional):
    module, model = _cuda_pair(6, 20, num_layers=2, bidirectional=bidirectional, proj_size=5)
    lengths = [7, 3, 5, 1] if not enforce_sorted else [7, 5, 3, 1]
    x = random_input(module, steps=7, batch=4)
    packed = fastlstm.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    hx = random_hx(module, 4)
    out, (h, c) = model(packed, hx)
    ref_packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.tensor(lengths),
                                                         enforce_sorted=enforce_sorted)
    with torch.no_grad():
        ref_out, (ref_h, ref_c) = module(ref_packed, tuple(torch.from_numpy(a) for a in hx))
    np.testing.assert_allclose(out.data, ref_out.data.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(h, ref_h.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(c, ref_c.numpy(), atol=1e-5, rtol=0)
    if TORCH_CUDA:  # a torch PackedSequence on the GPU, indices on the GPU too
        gpu_packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x).cuda(), torch.tensor(lengths),
                                                             enforce_sorted=enforce_sorted)
        g_out, (g_h, g_c) = model(gpu_packed, tuple(torch.from_numpy(a).cuda() for a in hx))
        np.testing.assert_allclose(g_out.data.cpu().numpy(), out.data, atol=0, rtol=0)
        np.testing.assert_allclose(g_h.cpu().numpy(), h, atol=0, rtol=0)


@needs_gpu
def test_gpu_errors_match_the_cpu_ones():
    module, model = _cuda_pair(8, 16, num_layers=2)
    with pytest.raises(fastlstm.InputError, match="input.size\\(-1\\) must be equal to input_size"):
        model(np.zeros((3, 2, 5), np.float32))
    with pytest.raises(fastlstm.InputError, match="Expected input to be 2D or 3D"):
        model(np.zeros((3,), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        model(np.zeros((3, 2, 8), np.float64))
    with pytest.raises(fastlstm.InputError, match="h_0: Expected hidden size"):
        model(np.zeros((3, 2, 8), np.float32), (np.zeros((2, 3, 16), np.float32), np.zeros((2, 2, 16), np.float32)))
    with pytest.raises(fastlstm.InputError, match="sequence length"):
        model(np.zeros((0, 2, 8), np.float32))
    with pytest.raises(fastlstm.InputError, match="x_t: expected shape"):
        model.stream(2).step(np.zeros((3, 8), np.float32))
    out, _ = model(np.zeros((3, 2, 8), np.float32))  # still works
    assert out.shape == (3, 2, 16)


@needs_gpu
def test_moving_between_devices_keeps_the_weights():
    module, model = make_pair(8, 16, bidirectional=True)
    x = random_input(module, steps=4, batch=2)
    expected = model(x)
    assert model.to("cuda") is model and model.device == "cuda:0"
    assert_same_results(model(x), expected, 1e-5, require_nontrivial=False)
    assert model.cpu().device == "cpu"
    assert_same_results(model(x), expected, 0, require_nontrivial=False)
    assert fastlstm.LSTM(8, 16, device="cuda").device == "cuda:0"
    import pickle
    clone = pickle.loads(pickle.dumps(model.cuda()))
    assert clone.device == "cuda:0"
    assert_same_results(clone(x), model(x), 0, require_nontrivial=False)


@needs_gpu
def test_reset_parameters_reaches_the_gpu_copy():
    module, model = _cuda_pair(8, 16, bidirectional=True)
    x = random_input(module, steps=4, batch=2)
    before = model(x)
    model.reset_parameters()  # new weights on the CPU copy: the GPU must run with them too
    module.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    after = model(x)
    assert not np.allclose(after[0], before[0])
    assert_same_results(after, torch_forward(module, x), 1e-5)


@needs_gpu
def test_tf32_is_off_by_default_and_can_be_asked_for():
    module, model = _cuda_pair(64, 128, num_layers=2)
    assert model.allow_tf32 is False
    x = random_input(module, steps=10, batch=16)
    fast = fastlstm.LSTM.from_torch(module).to("cuda", allow_tf32=True)
    assert fast.allow_tf32
    assert_same_results(fast(x), torch_forward(module, x), 5e-2, require_nontrivial=False)


@needs_gpu
def test_threads_share_one_gpu_model():
    module, model = _cuda_pair(8, 32, num_layers=2)
    inputs = [random_input(module, steps=5 + i % 3, batch=1 + i % 4, seed=i) for i in range(8)]
    expected = [torch_forward(module, x) for x in inputs]
    errors = []

    def work(i):
        try:
            for _ in range(5):
                assert_same_results(model(inputs[i]), expected[i], 1e-5, require_nontrivial=False)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]


@needs_gpu
def test_from_torch_of_a_cuda_module_gives_a_cuda_model():
    if not TORCH_CUDA:
        pytest.skip("torch has no CUDA here")
    module, _ = make_pair(8, 16)
    model = fastlstm.LSTM.from_torch(module.cuda())
    assert model.device == "cuda:0"


@needs_gpu
@pytest.mark.parametrize("proj_size", [0, 3])
def test_streams_run_on_the_gpu_as_on_the_cpu(proj_size):
    module, model = make_pair(5, 12, num_layers=2, proj_size=proj_size)
    x = random_input(module, steps=6, batch=2)
    cpu_stream = model.stream(2)
    expected = [cpu_stream.step(x[t]) for t in range(6)]
    expected_chunk = cpu_stream(x)
    gpu_stream = model.to("cuda").stream(2)
    for t in range(6):
        np.testing.assert_allclose(gpu_stream.step(x[t]), expected[t], atol=1e-5, rtol=0)
    np.testing.assert_allclose(gpu_stream(x), expected_chunk, atol=1e-5, rtol=0)
    for value, reference in zip(gpu_stream.state, cpu_stream.state):
        np.testing.assert_allclose(value, reference, atol=1e-5, rtol=0)
    gpu_stream.state = cpu_stream.state
    gpu_stream.reset()
    assert all(not value.any() for value in gpu_stream.state)


@needs_gpu
@needs_torch_cuda
def test_a_gpu_stream_takes_gpu_arrays_and_gives_them_back():
    module, model = make_pair(5, 12)
    x = random_input(module, steps=4, batch=1)
    expected = model.stream(1)(x)
    stream = model.to("cuda").stream(1)
    outputs = [stream.step(torch.from_numpy(x[t]).cuda()) for t in range(4)]
    assert all(isinstance(out, torch.Tensor) and out.is_cuda for out in outputs)
    np.testing.assert_allclose(torch.stack(outputs).cpu().numpy(), expected, atol=1e-5, rtol=0)
