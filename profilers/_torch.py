"""Latency of extracted UFO subnets on real runtimes: eager torch on CPU and on CUDA."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from supernet import (
    INPUT_MODES,
    Deployment,
    DeploymentViT,
    InputMode,
    SearchSpace,
    Subnet,
    UFOSpace,
    UFOSupernet,
    deployment_params,
)

from ._base import LatencyProfiler, ProfileResult, ProfilerUnavailableError, Setting
from ._interleave import ESTIMATORS, RoundTimings, estimate_rounds, summarise_reference, time_rounds
from ._timing import base_environment, load_average, time_repeats

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PROTOCOLS = ("interleaved", "sequential")

# Settings every runtime shares: what the device is (batch, input size) and how to time it.
COMMON_SETTINGS: dict[str, Setting] = {
    "batch_size": Setting(int, 1, "images per forward pass", minimum=1),
    "image_size": Setting(int, None, "input side in pixels (default: the space's geometry)", minimum=1),
    "task": Setting(str, None, "task whose path is extracted (multi-task spaces; default: the first)"),
    "protocol": Setting(
        str,
        "interleaved",
        "interleaved: a batch is timed in rounds, each model once per round in random order, with "
        "the reference in every round; sequential: each subnet timed on its own (drift-prone)",
        choices=PROTOCOLS,
    ),
    "reference": Setting(
        str, None, "arch timed in every round as the yardstick (default: the space's mid-cost subnet)"
    ),
    "estimator": Setting(
        str,
        "normalised",
        "normalised: median of time / the round's reference time, times the reference's median; "
        "raw: median of the subnet's own times",
        choices=ESTIMATORS,
    ),
    "warmup": Setting(int, 3, "untimed forward passes of each model before timing", minimum=0),
    "min_repeats": Setting(int, 7, "timed passes of each subnet at least (interleaved: rounds)", minimum=1),
    # 15 rounds of a 30-subnet ViT-Base batch take about 8 s per subnet on one core; a 1% RSE
    # needs more on a shared VM, so the cap is what usually ends a batch there.
    "max_repeats": Setting(int, 15, "timed passes of each subnet at most (interleaved: rounds)", minimum=1),
    "target_rse": Setting(
        float, 0.01, "stop once every estimate's relative standard error is below this", minimum=0.0
    ),
    "max_seconds": Setting(
        float, 20.0, "timing budget per subnet: a batch of n stops after n times this", minimum=0.0
    ),
    "drift_threshold": Setting(
        float,
        0.10,
        "flag a batch whose reference's (p90 - p10) / median across rounds exceeds this",
        minimum=0.0,
    ),
    "memory_mb": Setting(
        float,
        4096.0,
        "weights one chunk of a batch may hold; larger batches are timed in chunks",
        minimum=1.0,
    ),
    "seed": Setting(int, 0, "seed of the random supernet weights, inputs and round orders"),
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


@dataclass(frozen=True)
class _Joint:
    """A deployment timed as one model, with how its tasks get their images."""

    deployment: Deployment
    input: InputMode


# What one slot of a timed batch is: a single path or a deployment.
_Item = Subnet | _Joint


class _JointForward(nn.Module):
    """``forward(x)`` of a deployment: ``forward_shared(x)`` (shared input), or every task's
    ``forward(x, task)`` one after another (separate inputs).

    Separate inputs all read the same tensor ``x``: a path's time does not depend on the pixels,
    and a fresh tensor per task would add its allocation to the time.
    """

    def __init__(self, model: DeploymentViT, input: InputMode) -> None:
        super().__init__()
        self.model, self.input = model, input

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.input == "shared":
            return list(self.model.forward_shared(x).values())
        return [self.model(x, task) for task in self.model.tasks]


def mid_cost_subnet(space: SearchSpace) -> Subnet:
    """The middle depth with the middle choice of every dimension in every layer."""
    depth = space.depths[len(space.depths) // 2]
    layer = tuple(len(dim) // 2 for dim in space.dimensions)
    return space.validate(Subnet(space.name, depth, (layer,) * depth))


class ExtractedModelProfiler(LatencyProfiler):
    """Shared machinery: build the supernet once, extract each subnet, time its forward pass.

    A batch (:meth:`measure_many`) is timed in interleaved rounds with a reference subnet (see
    :mod:`profilers._interleave`): every model is prepared once (in chunks whose weights fit in
    ``memory_mb``, the reference in each), warmed up, then each round times every model once in
    a fresh random order. :meth:`measure` is a batch of one. ``protocol=sequential`` times each
    subnet on its own instead, as gpnas did before (kept for comparison and for dedicated
    hardware).

    Deployments (:meth:`measure_deployments`) are timed by the same protocol, in the same
    rounds as any single paths of the batch: each is the supernet's
    :meth:`~supernet.UFOSupernet.extract_deployment`, run by ``forward_shared(x)`` (shared input)
    or by every task's ``forward(x, task)`` in turn (separate inputs); subclasses that can run
    such a model set :attr:`measures_deployments` and implement :meth:`_prepare_deployment`.

    Subclasses implement :meth:`_prepare` (move/convert/compile the extracted model and return a
    ``run_once`` closure that returns milliseconds), :meth:`_session` (process-wide state such as
    thread counts, set while timing) and :meth:`_runtime_environment`.
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
        reference = self.settings["reference"]
        try:
            self.reference = space.parse(reference) if reference else mid_cost_subnet(space)
        except ValueError as error:
            raise ValueError(
                f"setting 'reference' of profiler {self.name!r} is not a subnet of {space.name!r}: {error}"
            ) from None
        self._net: UFOSupernet | None = None

    @property
    def image_size(self) -> int:
        assert isinstance(self.space, UFOSpace)
        return self.settings["image_size"] or self.space.geometry.image_size

    def input_shape(self) -> tuple[int, int, int, int]:
        """``batch_size x in_chans x image_size x image_size``."""
        assert isinstance(self.space, UFOSpace)
        return (self.settings["batch_size"], self.space.geometry.in_chans, self.image_size, self.image_size)

    def supernet(self) -> UFOSupernet:
        """The randomly initialised supernet for this space and input size (built on first use)."""
        if self._net is None:
            from supernet import build_supernet

            assert isinstance(self.space, UFOSpace)
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

    # ------------------------------------------------------------------ measuring
    def measure(self, sub: Subnet | str) -> ProfileResult:
        (outcome,) = self.measure_many([sub])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def measure_many(self, subs: Sequence[Subnet | str]) -> list[ProfileResult | Exception]:
        """Latencies of a batch, timed in interleaved rounds (or one by one, ``protocol=sequential``).

        Returns:
            Per subnet, in order, its :class:`ProfileResult` or the exception that kept it from
            being measured (it does not parse, cannot be built, or its first run fails).

        Raises:
            ValueError: If ``subs`` is empty.
        """
        self._check_batch(subs)
        outcomes: list[ProfileResult | Exception | None] = [None] * len(subs)
        todo: list[tuple[int, _Item]] = []
        for i, sub in enumerate(subs):
            try:
                todo.append((i, self.subnet(sub)))
            except ValueError as error:
                outcomes[i] = error
        return self._measure_items(todo, outcomes)

    def measure_deployments(
        self,
        items: Sequence[Deployment | Subnet | str],
        input: InputMode | Sequence[InputMode] = "shared",
    ) -> list[ProfileResult | Exception]:
        """Latencies of deployments (and of single paths) timed in one batch, by the batch
        protocol of :meth:`measure_many`; see :meth:`LatencyProfiler.measure_deployments`.

        A deployment's environment adds ``deployment_tasks`` (its tasks, in order),
        ``deployment_archs`` (their paths' arch strings) and ``deployment_input``.

        Raises:
            NotImplementedError: If this profiler cannot run deployments.
            ValueError: If ``items`` is empty, an input mode is unknown, or ``input`` is a
                sequence whose length is not ``len(items)``.
        """
        if not self.measures_deployments:
            return super().measure_deployments(items, input)
        if not items:
            raise ValueError(f"profiler {self.name!r} got an empty batch; give at least one deployment")
        modes = [input] * len(items) if isinstance(input, str) else list(input)
        if len(modes) != len(items):
            raise ValueError(f"input names {len(modes)} input modes for {len(items)} items")
        for mode in modes:
            if mode not in INPUT_MODES:
                raise ValueError(f"input must be one of {list(INPUT_MODES)}, got {mode!r}")
        outcomes: list[ProfileResult | Exception | None] = [None] * len(items)
        todo: list[tuple[int, _Item]] = []
        for i, (item, mode) in enumerate(zip(items, modes, strict=True)):
            try:
                if isinstance(item, Deployment):
                    deployment_params(self._ufo_space, item)  # checks space, tasks and paths
                    todo.append((i, _Joint(item, mode)))
                else:
                    todo.append((i, self.subnet(item)))
            except ValueError as error:
                outcomes[i] = error
        return self._measure_items(todo, outcomes)

    @property
    def _ufo_space(self) -> UFOSpace:
        assert isinstance(self.space, UFOSpace)
        return self.space

    def _measure_items(
        self, todo: list[tuple[int, _Item]], outcomes: list[ProfileResult | Exception | None]
    ) -> list[ProfileResult | Exception]:
        load_start = load_average()
        with self._session():
            if self.settings["protocol"] == "sequential":
                for i, item in todo:
                    outcomes[i] = self._measure_alone(item, load_start)
            elif todo:
                self._measure_interleaved(todo, outcomes, load_start)
        return [o if o is not None else RuntimeError("not measured") for o in outcomes]

    def _prepared(self, item: _Item) -> Callable[[], float]:
        """``run_once`` of a path or deployment, run once so that a model that cannot run fails here."""
        if isinstance(item, _Joint):
            model = self.supernet().extract_deployment(item.deployment).eval()
            run_once = self._prepare_deployment(model, item.input)
        else:
            run_once = self._prepare(self.extract(item))
        run_once()
        return run_once

    def _param_count(self, item: _Item) -> int:
        if isinstance(item, _Joint):
            return deployment_params(self._ufo_space, item.deployment)
        return self._ufo_space.param_count(item, self.task)

    def _item_environment(self, item: _Item) -> dict[str, Any]:
        if not isinstance(item, _Joint):
            return {}
        dep = item.deployment
        return {
            "deployment_tasks": list(dep.tasks),
            "deployment_archs": [self.space.format(sub) for _, sub in dep],
            "deployment_input": item.input,
        }

    def _measure_alone(self, item: _Item, load_start: float | None) -> ProfileResult | Exception:
        try:
            run_once = self._prepared(item)
        except ProfilerUnavailableError:
            raise
        except Exception as error:  # this subnet's failure only
            return error
        stats = time_repeats(
            run_once,
            warmup=self.settings["warmup"],
            min_repeats=self.settings["min_repeats"],
            max_repeats=self.settings["max_repeats"],
            target_rse=self.settings["target_rse"],
            max_seconds=self.settings["max_seconds"],
        )
        environment = {**self._environment(load_start, stats.samples), **self._item_environment(item)}
        return ProfileResult(
            stats.median, stats.std, stats.repeats, stats.p10, stats.p90, stats.rse, environment
        )

    def _chunks(self, todo: list[tuple[int, _Item]]) -> list[list[tuple[int, _Item]]]:
        """Consecutive chunks whose weights, with the reference's, fit in ``memory_mb``."""
        budget = self.settings["memory_mb"] * 2**20 / self._bytes_per_param()
        budget -= self._param_count(self.reference)
        chunks: list[list[tuple[int, _Item]]] = [[]]
        used = 0.0
        for item in todo:
            size = self._param_count(item[1])
            if chunks[-1] and used + size > budget:
                chunks.append([])
                used = 0.0
            chunks[-1].append(item)
            used += size
        return chunks

    def _measure_interleaved(
        self,
        todo: list[tuple[int, _Item]],
        outcomes: list[ProfileResult | Exception | None],
        load_start: float | None,
    ) -> None:
        rng = np.random.default_rng(self.settings["seed"])
        reference = self._prepared(self.reference)
        timed: list[tuple[list[tuple[int, _Item]], RoundTimings]] = []
        chunks = self._chunks(todo)
        for number, chunk in enumerate(chunks, 1):
            if self.progress is not None:
                self.progress(f"chunk {number} of {len(chunks)}: preparing {len(chunk)} models")
            kept: list[tuple[int, _Item]] = []
            runners = []
            for i, item in chunk:
                try:
                    runners.append(self._prepared(item))
                    kept.append((i, item))
                except ProfilerUnavailableError:
                    raise
                except Exception as error:  # this subnet's failure only
                    outcomes[i] = error
            if not runners:
                continue
            timings = time_rounds(
                runners,
                reference,
                rng,
                warmup=self.settings["warmup"],
                min_rounds=self.settings["min_repeats"],
                max_rounds=self.settings["max_repeats"],
                target_rse=self.settings["target_rse"],
                max_seconds=self.settings["max_seconds"] * (len(runners) + 1),
                progress=self.progress,
            )
            timed.append((kept, timings))
            del runners  # free the chunk's models before preparing the next
            self._release()
        if not timed:
            return
        summary = summarise_reference([t for _, t in timed])
        flagged = summary.spread > self.settings["drift_threshold"]
        batch = {
            "protocol": "interleaved",
            "estimator": self.settings["estimator"],
            "reference": self.space.format(self.reference),
            "reference_median_ms": round(summary.median, 4),
            "reference_spread": round(summary.spread, 4),
            "batch_subnets": len(todo),
            "chunks": len(timed),
            "rounds_timed": summary.rounds,
        }
        joints = sum(isinstance(item, _Joint) for _, item in todo)
        if joints:
            batch["batch_deployments"] = joints  # of the batch_subnets items
        for kept, timings in timed:
            estimates = estimate_rounds(timings, summary.median, self.settings["estimator"])
            for (i, item), est in zip(kept, estimates, strict=True):
                outcomes[i] = ProfileResult(
                    value=est.value,
                    std=est.std,
                    repeats=est.rounds,
                    p10=est.p10,
                    p90=est.p90,
                    rse=est.rse,
                    environment={
                        **self._environment(load_start, est.samples),
                        **batch,
                        **self._item_environment(item),
                    },
                    raw_value=est.raw,
                    rounds_dropped=est.dropped,
                    reference_spread=summary.spread,
                    flagged=flagged,
                    reference_arch=batch["reference"],
                    reference_ms=summary.median,
                )

    def _environment(self, load_start: float | None, samples: Sequence[float]) -> dict[str, Any]:
        return {
            **base_environment(),
            "torch": torch.__version__,
            **self._runtime_environment(),
            "profiler": self.name,
            "profiler_version": self.version,
            "batch_size": self.settings["batch_size"],
            "input_shape": list(self.input_shape()),
            "warmup": self.settings["warmup"],
            "protocol": self.settings["protocol"],
            "load_avg_1m_start": load_start,
            "samples_ms": [round(s, 4) for s in samples],
        }

    def _bytes_per_param(self) -> int:
        """Bytes a prepared model holds per parameter (for the chunks' memory bound)."""
        return 4

    @abc.abstractmethod
    def _prepare(self, model: nn.Module) -> Callable[[], float]:
        """``run_once``: one timed forward pass of ``model`` in milliseconds.

        Called inside :meth:`_session`; the model's resources are freed when the closure is.
        """

    def _prepare_deployment(self, model: DeploymentViT, input: InputMode) -> Callable[[], float]:
        """``run_once`` of a deployment: one timed forward of all its tasks, in milliseconds.

        The default times :class:`_JointForward` with :meth:`_prepare`, which suits runtimes
        whose ``_prepare`` runs any ``nn.Module`` on one input tensor (eager torch).
        """
        return self._prepare(_JointForward(model, input))

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Process-wide settings (thread counts, math modes) held while a batch is timed."""
        yield

    def _release(self) -> None:  # noqa: B027 - optional hook
        """Return memory freed by a finished chunk to the runtime (e.g. the CUDA cache)."""

    @abc.abstractmethod
    def _runtime_environment(self) -> dict[str, Any]:
        """Runtime-specific facts for :attr:`ProfileResult.environment`."""

    def close(self) -> None:
        self._net = None


class TorchCPUProfiler(ExtractedModelProfiler):
    """Eager PyTorch on the CPU, with the intra-op thread count pinned for the measurement.

    Settings (besides the common ones: batch_size, image_size, task, protocol, reference,
    estimator, warmup, min/max_repeats, target_rse, max_seconds, drift_threshold, memory_mb, seed):
        threads: ``torch.set_num_threads`` while timing (restored afterwards); recorded.
        clock: ``wall`` (default) or ``cpu`` (the timing thread's CPU time, for shared machines).
        dtype: ``fp32`` or ``bf16``.
    """

    name: ClassVar[str] = "torch-cpu"
    version: ClassVar[str] = "2"
    measures_deployments: ClassVar[bool] = True
    settings_spec: ClassVar[dict[str, Setting]] = {
        **COMMON_SETTINGS,
        "threads": Setting(int, 1, "intra-op threads (torch.set_num_threads)", minimum=1),
        "dtype": Setting(str, "fp32", "parameter and input dtype", choices=("fp32", "bf16")),
        "clock": CLOCK_SETTING,
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        self.clock = cpu_clock(self.name, self.settings)

    def _bytes_per_param(self) -> int:
        return DTYPES[self.settings["dtype"]].itemsize

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.settings["threads"])
        try:
            yield
        finally:
            torch.set_num_threads(previous)

    def _prepare(self, model: nn.Module) -> Callable[[], float]:
        dtype = DTYPES[self.settings["dtype"]]
        clock = self.clock
        model = model.to(dtype)
        x = self.example_input(dtype=dtype)

        def run_once() -> float:
            with torch.inference_mode():
                start = clock()
                model(x)
                return (clock() - start) * 1e3

        return run_once

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
    version: ClassVar[str] = "2"
    measures_deployments: ClassVar[bool] = True
    settings_spec: ClassVar[dict[str, Setting]] = {
        **COMMON_SETTINGS,
        "warmup": Setting(
            int,
            10,
            "untimed forward passes of each model before timing (kernel selection, clocks)",
            minimum=0,
        ),
        "min_repeats": Setting(
            int, 10, "timed passes of each subnet at least (interleaved: rounds)", minimum=1
        ),
        "max_repeats": Setting(
            int, 100, "timed passes of each subnet at most (interleaved: rounds)", minimum=1
        ),
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

    def _bytes_per_param(self) -> int:
        return DTYPES[self.settings["dtype"]].itemsize

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        previous_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.settings["tf32"]
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous_tf32
            torch.cuda.empty_cache()

    def _prepare(self, model: nn.Module) -> Callable[[], float]:
        dtype = DTYPES[self.settings["dtype"]]
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

        return run_once

    def _release(self) -> None:
        torch.cuda.empty_cache()

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
