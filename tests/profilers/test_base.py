"""Settings validation, the entry-point registry and the robust timing loop."""

from __future__ import annotations

import math

import pytest

import profilers
from profilers import (
    LatencyProfiler,
    ProfileResult,
    Setting,
    TorchCPUProfiler,
    available_profilers,
    create_profiler,
    get_profiler_class,
    summarize,
    time_repeats,
    validate_settings,
)
from supernet import get_space

BUILT_INS = {"torch-cpu", "onnxruntime-cpu", "torch-cuda", "table", "table-score", "supernet-eval"}


def test_builtins_are_registered_through_entry_points():
    assert set(available_profilers()) >= BUILT_INS
    for name in BUILT_INS:
        cls = get_profiler_class(name)
        assert cls.name == name
        assert cls.metric in ("latency_ms", "score")
    assert get_profiler_class("torch-cpu") is TorchCPUProfiler
    assert issubclass(get_profiler_class("table-score"), profilers.AccuracyProfiler)


def test_unknown_profiler_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown profiler 'nope'.*torch-cpu"):
        get_profiler_class("nope")
    with pytest.raises(ValueError, match="unknown profiler"):
        create_profiler("nope", get_space("ufo-track2"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"thread": 1}, "unknown setting 'thread' for profiler 'torch-cpu'"),
        ({"threads": "two"}, "setting 'threads' of profiler 'torch-cpu' must be an integer"),
        ({"threads": 0}, "setting 'threads' .* must be >= 1"),
        ({"threads": 1.5}, "must be an integer"),
        ({"dtype": "fp16"}, r"setting 'dtype' .* must be one of \['fp32', 'bf16'\]"),
        ({"target_rse": "x"}, "setting 'target_rse' .* must be a number"),
    ],
)
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        validate_settings("torch-cpu", settings)


def test_settings_are_converted_and_defaulted():
    out = validate_settings("torch-cpu", {"threads": "2", "batch_size": 4, "target_rse": "0.05"})
    assert out["threads"] == 2 and out["batch_size"] == 4 and out["target_rse"] == 0.05
    assert out["dtype"] == "fp32" and out["warmup"] == 3
    assert validate_settings("torch-cuda", {"tf32": "yes"})["tf32"] is True
    with pytest.raises(ValueError, match="setting 'path' of profiler 'table' is required"):
        validate_settings("table", {"column": "pixel2"})


def test_torch_profilers_reject_spaces_without_a_supernet():
    with pytest.raises(ValueError, match="space 'fbnet' has no supernet"):
        create_profiler("torch-cpu", get_space("fbnet"))


def test_summarize_is_robust_to_outliers():
    stats = summarize([10.0, 10.2, 9.8, 10.1, 9.9, 500.0])
    assert stats.median == pytest.approx(10.05)
    assert stats.std < 0.5  # the 500 ms outlier does not inflate the robust spread
    assert stats.p10 <= stats.median <= stats.p90
    assert stats.rse == pytest.approx(math.sqrt(math.pi / 2) * stats.std / math.sqrt(6) / stats.median)


def test_time_repeats_stops_when_stable_or_capped():
    calls = []

    def steady() -> float:
        calls.append(1)
        return 10.0 + 0.01 * (len(calls) % 3)

    stats = time_repeats(steady, warmup=2, min_repeats=5, max_repeats=50, target_rse=0.02)
    assert stats.repeats == 5 and len(calls) == 7  # 2 warm-up calls are not timed

    noisy = (10.0 + 5.0 * math.sin(i) for i in range(1000))
    stats = time_repeats(lambda: next(noisy), warmup=0, min_repeats=3, max_repeats=12, target_rse=0.001)
    assert stats.repeats == 12

    ticks = iter(range(1000))
    stats = time_repeats(
        lambda: float(next(noisy)),
        warmup=0,
        min_repeats=3,
        max_repeats=100,
        target_rse=0.0,
        max_seconds=5.0,
        clock=lambda: float(next(ticks)),
    )
    # The fake clock gains 1 s per read: read at the start (0), then after each sample from the
    # 3rd (min_repeats) on, so it reads 5 after the 7th sample and the 5 s cap stops there.
    assert stats.repeats == 7


def test_a_subclass_gets_validation_and_profile_dispatch(tiny_track2):
    class Constant(LatencyProfiler):
        name = "constant"
        settings_spec = {"ms": Setting(float, 1.0, minimum=0.0)}

        def measure(self, sub):
            return ProfileResult(self.settings["ms"] * self.subnet(sub).depth)

    arch = "j" + "111" * 10 + "000" * 2
    assert Constant(tiny_track2, ms="2").profile(arch).value == 20.0
    with pytest.raises(ValueError, match="must be >= 0.0"):
        Constant(tiny_track2, ms=-1)
    with pytest.raises(ValueError, match="37-character"):
        Constant(tiny_track2).measure("j111")
