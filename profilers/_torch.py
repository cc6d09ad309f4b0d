"""Latency of extracted UFO subnets on real runtimes: eager torch on CPU and on CUDA."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from supernet import SearchSpace, Subnet, UFOSpace

from ._base import LatencyProfiler, ProfileResult, ProfilerUnavailableError, Setting
from ._timing import TimingStats, base_environment, time_repeats

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Settings every runtime shares: what the device is (batch, input size) and how to time it.
COMMON_SETTINGS: dict[str, Setting] = {
    "batch_size": Setting(int, 1, "images per forward pass", minimum=1),
    "image_size": Setting(int, None, "input side in pixels (default: the space's geometry)", minimum=1),
    "task": Setting(str, None, "task whose path is extracted (multi-task spaces; default: the first)"),
    "warmup": Setting(int, 3, "untimed forward passes before timing", minimum=0),
    "min_repeats": Setting(int, 5, "timed passes at least", minimum=1),
    "max_repeats": Setting(int, 50, "timed passes at most", minimum=1),
    "target_rse": Setting(
        float, 0.02, "stop once the median's relative standard error is below this", minimum=0.0
    ),
    "max_seconds": Setting(float, 20.0, "stop timing a subnet after this many seconds", minimum=0.0),
    "seed": Setting(int, 0, "seed of the random supernet weights and inputs"),
}


CLOCK_SETTING = Setting(
    str,
    "wall",
    "wall: elapsed time; cpu: CPU time of the timing thread (needs threads=1; ignores waits for a busy CPU)",
    choices=("wall", "cpu"),
)


def cpu_clock(profiler: str, settings: dict[str, Any]) -> Callable[[], float]:
    """The timer (seconds) for ``settings["clock"]``.

    ``cpu`` reads :func:`time.thread_time`: with one intra-op thread the whole forward pass runs
    on the calling thread, so its CPU time is the compute time without the slices during which
    other processes held the core. On a dedicated core the two clocks agree.

    Raises:
        ValueError: If ``clock=cpu`` is combined with more than one thread.
    """
    import time

    if settings["clock"] == "cpu":
        if settings["threads"] != 1:
            raise ValueError(f"setting 'clock' of profiler {profiler!r}: 'cpu' needs threads=1")
        return time.thread_time
    return time.perf_counter


class ExtractedModelProfiler(LatencyProfiler):
    """Shared machinery: build the supernet once, extract each subnet, time its forward pass.

    Subclasses implement :meth:`_prepare` (move/convert/compile the extracted model and return a
    ``run_once`` closure that returns milliseconds) and :meth:`_runtime_environment`.
    Weights are random: latency does not depend on their values.
    """

    settings_spec: ClassVar[dict[str, Setting]] = COMMON_SETTINGS

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        if not isinstance(space, UFOSpace):
            raise ValueError(
                f"profiler {self.name!r} runs extracted UFO ViT subnets; "
                f"space {space.name!r} has no supernet "
                "(use the 'table' profiler to replay its latencies)"
            )
        if self.settings["min_repeats"] > self.settings["max_repeats"]:
            raise ValueError(f"setting 'min_repeats' of profiler {self.name!r} must be <= max_repeats")
        task = self.settings["task"]
        if task is not None:
            space.check_task(task)
        elif space.tasks and "ffn_path" in {d.name for d in space.dimensions}:
            task = space.tasks[0]  # every task's expert has the same shape, so the same latency
        self.task = task
        self._net: nn.Module | None = None

    @property
    def image_size(self) -> int:
        assert isinstance(self.space, UFOSpace)
        return self.settings["image_size"] or self.space.geometry.image_size

    def input_shape(self) -> tuple[int, int, int, int]:
        """``batch_size x in_chans x image_size x image_size``."""
        assert isinstance(self.space, UFOSpace)
        return (self.settings["batch_size"], self.space.geometry.in_chans, self.image_size, self.image_size)

    def supernet(self) -> nn.Module:
        """The randomly initialised supernet for this space and input size (built on first use)."""
        if self._net is None:
            from supernet import build_supernet

            overrides = {"image_size": self.image_size} if self.settings["image_size"] else {}
            self._net = build_supernet(self.space, seed=self.settings["seed"], **overrides).eval()
        return self._net

    def extract(self, sub: Subnet) -> nn.Module:
        """The standalone dense model of ``sub`` (``task``'s path), in eval mode."""
        return self.supernet().extract(sub, task=self.task).eval()

    def example_input(
        self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.settings["seed"])
        return torch.randn(self.input_shape(), generator=generator).to(device=device, dtype=dtype)

    def measure(self, sub: Subnet | str) -> ProfileResult:
        sub = self.subnet(sub)
        run_once, restore = self._prepare(self.extract(sub))
        try:
            stats = time_repeats(
                run_once,
                warmup=self.settings["warmup"],
                min_repeats=self.settings["min_repeats"],
                max_repeats=self.settings["max_repeats"],
                target_rse=self.settings["target_rse"],
                max_seconds=self.settings["max_seconds"],
            )
        finally:
            restore()
        return self._result(stats)

    def _result(self, stats: TimingStats) -> ProfileResult:
        environment = {
            **base_environment(),
            **self._runtime_environment(),
            "profiler": self.name,
            "profiler_version": self.version,
            "batch_size": self.settings["batch_size"],
            "input_shape": list(self.input_shape()),
            "warmup": self.settings["warmup"],
            "samples_ms": [round(s, 4) for s in stats.samples],
        }
        return ProfileResult(
            stats.median, stats.std, stats.repeats, stats.p10, stats.p90, stats.rse, environment
        )

    @abc.abstractmethod
    def _prepare(self, model: nn.Module) -> tuple[Callable[[], float], Callable[[], None]]:
        """Return ``(run_once, restore)``: one timed forward in ms, and undo of global state."""

    @abc.abstractmethod
    def _runtime_environment(self) -> dict[str, Any]:
        """Runtime-specific facts for :attr:`ProfileResult.environment`."""

    def close(self) -> None:
        self._net = None


class TorchCPUProfiler(ExtractedModelProfiler):
    """Eager PyTorch on the CPU, with the intra-op thread count pinned for the measurement.

    Settings (besides batch_size, image_size, task, warmup, min/max_repeats, target_rse,
    max_seconds, seed):
        threads: ``torch.set_num_threads`` while timing (restored afterwards); recorded.
        clock: ``wall`` (default) or ``cpu`` (the timing thread's CPU time, for shared machines).
        dtype: ``fp32`` or ``bf16``.
    """

    name: ClassVar[str] = "torch-cpu"
    version: ClassVar[str] = "1"
    settings_spec: ClassVar[dict[str, Setting]] = {
        **COMMON_SETTINGS,
        "threads": Setting(int, 1, "intra-op threads (torch.set_num_threads)", minimum=1),
        "dtype": Setting(str, "fp32", "parameter and input dtype", choices=("fp32", "bf16")),
        "clock": CLOCK_SETTING,
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        self.clock = cpu_clock(self.name, self.settings)

    def _prepare(self, model: nn.Module) -> tuple[Callable[[], float], Callable[[], None]]:
        dtype = DTYPES[self.settings["dtype"]]
        clock = self.clock
        model = model.to(dtype)
        x = self.example_input(dtype=dtype)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.settings["threads"])

        def run_once() -> float:
            with torch.inference_mode():
                start = clock()
                model(x)
                return (clock() - start) * 1e3

        return run_once, lambda: torch.set_num_threads(previous)

    def _runtime_environment(self) -> dict[str, Any]:
        return {
            "runtime": "torch-eager",
            "threads": self.settings["threads"],
            "clock": self.settings["clock"],
            "dtype": self.settings["dtype"],
            "mkldnn": torch.backends.mkldnn.is_available(),
        }


class TorchCUDAProfiler(ExtractedModelProfiler):
    """Eager PyTorch on a CUDA GPU, timed with CUDA events after synchronisation.

    Settings (besides the common ones):
        dtype: ``fp32``, ``fp16`` or ``bf16`` (weights and input).
        device_index: Which GPU.
        tf32: Allow TF32 matmuls for fp32 (off by default so fp32 means fp32).

    Raises:
        ProfilerUnavailableError: At construction when no CUDA device is visible.
    """

    name: ClassVar[str] = "torch-cuda"
    version: ClassVar[str] = "1"
    settings_spec: ClassVar[dict[str, Setting]] = {
        **COMMON_SETTINGS,
        "warmup": Setting(
            int, 10, "untimed forward passes before timing (kernel selection, clocks)", minimum=0
        ),
        "min_repeats": Setting(int, 10, "timed passes at least", minimum=1),
        "max_repeats": Setting(int, 200, "timed passes at most", minimum=1),
        "dtype": Setting(str, "fp32", "parameter and input dtype", choices=tuple(DTYPES)),
        "device_index": Setting(int, 0, "CUDA device ordinal", minimum=0),
        "tf32": Setting(bool, False, "allow TF32 tensor cores for fp32 matmuls"),
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        if not torch.cuda.is_available():
            raise ProfilerUnavailableError("profiler 'torch-cuda' needs a CUDA device; none is visible")
        if self.settings["device_index"] >= torch.cuda.device_count():
            raise ValueError(
                f"setting 'device_index' of profiler 'torch-cuda' is {self.settings['device_index']}, "
                f"but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        self.device = torch.device("cuda", self.settings["device_index"])
        if self.settings["dtype"] == "bf16" and not torch.cuda.is_bf16_supported():
            raise ProfilerUnavailableError(f"{torch.cuda.get_device_name(self.device)} does not support bf16")

    def _prepare(self, model: nn.Module) -> tuple[Callable[[], float], Callable[[], None]]:
        dtype = DTYPES[self.settings["dtype"]]
        previous_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.settings["tf32"]
        model = model.to(self.device, dtype)
        x = self.example_input(self.device, dtype)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run_once() -> float:
            with torch.inference_mode():
                torch.cuda.synchronize(self.device)  # nothing queued before the start event
                start.record()
                model(x)
                end.record()
                end.synchronize()
                return float(start.elapsed_time(end))

        def restore() -> None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous_tf32
            torch.cuda.empty_cache()

        return run_once, restore

    def _runtime_environment(self) -> dict[str, Any]:
        props = torch.cuda.get_device_properties(self.device)
        return {
            "runtime": "torch-eager-cuda",
            "gpu": props.name,
            "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "dtype": self.settings["dtype"],
            "tf32": self.settings["tf32"],
        }

    def close(self) -> None:
        super().close()
        torch.cuda.empty_cache()
