"""Timing deployments: the joint model of several tasks' paths, on one shared or separate inputs.

Real eager-torch timing on a tiny ViT; the assertions are on structure (what was timed, with
which settings, what the environment records), not on absolute times. The one ratio checked,
separate inputs against a shared one for two identical paths, uses the timing thread's CPU
time (``clock=cpu``), which other processes on the machine do not inflate, and a wide band.
"""

from __future__ import annotations

import pytest
import torch

from profilers import (
    LatencyProfiler,
    LocalConfig,
    OnnxRuntimeCPUProfiler,
    TableLatencyProfiler,
    create_profiler,
)
from supernet import Deployment, deployment_params

FAST = {"warmup": 1, "min_repeats": 5, "max_repeats": 9, "max_seconds": 2}
SHARED = "12" + "s11" * 12
EXPERTS = "10" + "t11" * 3 + "s11" * 7 + "000" * 2


def deployment(space, **paths: str) -> Deployment:
    return Deployment.of(space.name, {task: space.parse(arch) for task, arch in paths.items()})


def test_a_deployment_is_timed_with_the_batch_protocol_and_named_in_the_environment(tiny_multipath):
    profiler = create_profiler("torch-cpu", tiny_multipath, threads=1, **FAST)
    assert profiler.measures_deployments
    dep = deployment(tiny_multipath, face=SHARED, vehicle=EXPERTS)
    for input in ("shared", "separate"):
        result = profiler.measure_deployment(dep, input=input)
        # Rounds whose reference was an outlier (the machine's load) are dropped from the median.
        assert result.value > 0 and result.std >= 0 and 5 <= result.repeats + result.rounds_dropped <= 9
        assert result.p10 <= result.value <= result.p90
        env = result.environment
        assert env["deployment_tasks"] == ["face", "vehicle"]
        assert env["deployment_archs"] == [SHARED, EXPERTS]
        assert env["deployment_input"] == input
        assert env["protocol"] == "interleaved" and env["reference"] == profiler.space.format(
            profiler.reference
        )
        assert env["threads"] == 1 and env["input_shape"] == [1, 3, 32, 32] and env["profiler"] == "torch-cpu"
        assert len(env["samples_ms"]) == result.repeats and result.reference_spread is not None
    assert torch.get_num_threads() == 1  # restored after timing


def test_paths_and_deployments_share_the_rounds_of_one_batch(tiny_multipath):
    profiler = create_profiler("torch-cpu", tiny_multipath, threads=1, clock="cpu", **FAST)
    two = deployment(tiny_multipath, face=SHARED, person=SHARED)
    bad = Deployment.of("another-space", {"face": tiny_multipath.parse(SHARED)})
    unknown = deployment(tiny_multipath, face=SHARED)
    unknown = Deployment(unknown.space, (("cat", unknown["face"]),))
    shared, separate, path, wrong, nameless, typo = profiler.measure_deployments(
        [two, two, SHARED, bad, unknown, "12xyz"],
        ["shared", "separate", "shared", "shared", "shared", "shared"],
    )
    assert isinstance(wrong, ValueError) and "another-space" in str(wrong)
    assert isinstance(nameless, ValueError) and "cat" in str(nameless)
    assert isinstance(typo, ValueError)
    for result in (shared, separate, path):
        assert result.environment["rounds_timed"] == shared.environment["rounds_timed"]
        assert result.environment["batch_subnets"] == 3 and result.environment["batch_deployments"] == 2
        assert result.environment["reference_median_ms"] == shared.environment["reference_median_ms"]
    assert "deployment_tasks" not in path.environment
    # How much faster the shared input runs is measured by benchmarks/deployment_latency.py, not
    # asserted here: on 2 shared cores even CPU-time ratios of millisecond models drift.
    assert all(r.value > 0 for r in (shared, separate, path))


def test_sequential_protocol_times_a_deployment_on_its_own(tiny_track2):
    profiler = create_profiler("torch-cpu", tiny_track2, threads=1, protocol="sequential", **FAST)
    dep = deployment(tiny_track2, cplfw="l" + "111" * 12, veri="j" + "331" * 10 + "000" * 2)
    result = profiler.measure_deployment(dep, "separate")
    assert result.value > 0 and 5 <= result.repeats <= 9 and result.reference_spread is None
    assert result.environment["protocol"] == "sequential"
    assert result.environment["deployment_input"] == "separate"


def test_a_small_memory_budget_times_deployments_in_chunks(tiny_multipath):
    profiler = create_profiler("torch-cpu", tiny_multipath, threads=1, memory_mb=1.0, **FAST)
    dep = deployment(tiny_multipath, face=SHARED, person=EXPERTS, vehicle=SHARED)
    assert deployment_params(tiny_multipath, dep) * 4 > 0.4 * 2**20  # so two do not fit in 1 MB
    results = profiler.measure_deployments([dep, dep, dep])
    assert all(not isinstance(r, Exception) for r in results)
    assert results[0].environment["chunks"] >= 2


def test_bad_arguments_are_rejected_before_timing(tiny_multipath):
    profiler = create_profiler("torch-cpu", tiny_multipath, threads=1, **FAST)
    dep = deployment(tiny_multipath, face=SHARED)
    with pytest.raises(ValueError, match="input must be one of"):
        profiler.measure_deployments([dep], "both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 input modes for 1 items"):
        profiler.measure_deployments([dep], ["shared", "separate"])
    with pytest.raises(ValueError, match="empty batch"):
        profiler.measure_deployments([])
    with pytest.raises(ValueError, match="another-space"):
        profiler.measure_deployment(Deployment.of("another-space", {"face": dep["face"]}))


def test_profilers_that_cannot_time_a_deployment_say_so(tiny_multipath, tmp_path):
    (tmp_path / "latency.csv").write_text(f"arch,cpu\n{SHARED},1.5\n")
    local = LocalConfig(data_dir=tmp_path)
    replay = create_profiler("table", tiny_multipath, local=local, path="latency.csv", column="cpu")
    assert isinstance(replay, LatencyProfiler) and not replay.measures_deployments
    dep = deployment(tiny_multipath, face=SHARED)
    with pytest.raises(NotImplementedError, match="cannot time deployments"):
        replay.measure_deployment(dep)
    assert not TableLatencyProfiler.measures_deployments


@pytest.mark.parametrize("input", ["shared", "separate"])
def test_onnxruntime_times_the_deployments_graph(tiny_multipath, input: str):
    assert OnnxRuntimeCPUProfiler.measures_deployments
    onnx = create_profiler("onnxruntime-cpu", tiny_multipath, threads=1, **FAST)
    dep = deployment(tiny_multipath, face=SHARED, vehicle=EXPERTS)
    path, joint = onnx.measure_deployments([SHARED, dep], input)
    assert joint.value > 0 and joint.environment["deployment_input"] == input
    assert joint.environment["runtime"] == "onnxruntime"
    assert joint.environment["rounds_timed"] == path.environment["rounds_timed"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_cuda_times_a_shared_input_deployment(tiny_multipath):
    profiler = create_profiler("torch-cuda", tiny_multipath, **FAST)
    dep = deployment(tiny_multipath, face=SHARED, person=EXPERTS)
    result = profiler.measure_deployment(dep, "shared")
    assert result.value > 0 and result.environment["deployment_input"] == "shared"
    assert result.environment["runtime"] == "torch-eager-cuda"
