"""Real latency measurements: eager torch on CPU, onnxruntime, and torch-cuda (GPU only)."""

from __future__ import annotations

import pytest
import torch

from profilers import ProfilerUnavailableError, TorchCUDAProfiler, create_profiler

FAST = {"warmup": 1, "min_repeats": 5, "max_repeats": 15, "max_seconds": 5}


def _extremes(space):
    """The largest (depth 12, 12 heads, ratio 4) and smallest (depth 10, 10 heads, ratio 3) arch."""
    return "l" + "111" * 12, "j" + "331" * 10 + "000" * 2


def test_torch_cpu_measures_pins_threads_and_records_environment(tiny_track2):
    torch.set_num_threads(1)
    profiler = create_profiler("torch-cpu", tiny_track2, threads=1, **FAST)
    large, small = _extremes(tiny_track2)
    big, little = profiler.measure(large), profiler.measure(small)
    for result in (big, little):
        assert 5 <= result.repeats <= 15
        assert result.p10 <= result.value <= result.p90
        assert result.value > 0 and result.std >= 0
        assert len(result.environment["samples_ms"]) == result.repeats
    env = big.environment
    assert env["threads"] == 1 and env["torch"] == torch.__version__ and env["cpu_model"]
    assert env["input_shape"] == [1, 3, 32, 32] and env["profiler"] == "torch-cpu"
    two = create_profiler("torch-cpu", tiny_track2, threads=2, warmup=0, min_repeats=1, max_repeats=1)
    assert two.measure(small).environment["threads"] == 2
    assert torch.get_num_threads() == 1  # restored after timing


def test_torch_cpu_batch_size_is_part_of_the_device(tiny_multipath):
    arch = tiny_multipath.format(tiny_multipath.sample(1, seed=0)[0])
    one = create_profiler("torch-cpu", tiny_multipath, batch_size=1, **FAST)
    many = create_profiler("torch-cpu", tiny_multipath, batch_size=64, **FAST)
    # Other processes share these 2 cores: compare the fastest repeat of two runs per device (the
    # least disturbed one) rather than medians taken at different moments.
    fastest_one = min(min(one.measure(arch).environment["samples_ms"]) for _ in range(2))
    results = [many.measure(arch) for _ in range(2)]
    assert results[0].environment["input_shape"][0] == 64
    assert min(min(r.environment["samples_ms"]) for r in results) > 3 * fastest_one


def test_onnxruntime_cpu_runs_the_exported_subnet(tiny_track2):
    profiler = create_profiler("onnxruntime-cpu", tiny_track2, threads=1, **FAST)
    result = profiler.measure(_extremes(tiny_track2)[1])
    assert result.value > 0 and 5 <= result.repeats <= 15
    env = result.environment
    assert env["runtime"] == "onnxruntime" and env["provider"] == "CPUExecutionProvider"
    assert env["threads"] == 1 and env["onnxruntime"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_torch_cuda_is_unavailable_without_a_gpu(tiny_track2):
    with pytest.raises(ProfilerUnavailableError, match="needs a CUDA device"):
        TorchCUDAProfiler(tiny_track2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_torch_cuda_measures_each_dtype(tiny_track2, dtype):
    profiler = create_profiler("torch-cuda", tiny_track2, dtype=dtype, batch_size=8)
    large, small = _extremes(tiny_track2)
    big, little = profiler.measure(large), profiler.measure(small)
    assert big.value > 0 and little.value > 0
    assert big.environment["dtype"] == dtype and big.environment["gpu"]
    assert big.repeats >= 10


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_cuda_vit_base_half_precision_is_faster():
    from supernet import get_space

    space = get_space("ufo-track2")
    arch = "l" + "111" * 12
    fp32 = create_profiler("torch-cuda", space, dtype="fp32", batch_size=32).measure(arch)
    fp16 = create_profiler("torch-cuda", space, dtype="fp16", batch_size=32).measure(arch)
    assert fp16.value < fp32.value


@pytest.mark.parametrize("name", ["torch-cpu", "onnxruntime-cpu"])
def test_cpu_clock_times_the_single_compute_thread(tiny_track2, name):
    small = _extremes(tiny_track2)[1]
    result = create_profiler(name, tiny_track2, clock="cpu", threads=1, **FAST).measure(small)
    assert result.environment["clock"] == "cpu" and result.value > 0
    with pytest.raises(ValueError, match="setting 'clock' of profiler .*'cpu' needs threads=1"):
        create_profiler(name, tiny_track2, clock="cpu", threads=2)
