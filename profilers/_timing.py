"""Robust repeated timing shared by the latency profilers, and the environment they record."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

# Asymptotic efficiency factor of the median: SE(median) ~= sqrt(pi / 2) * sigma / sqrt(n).
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)
# 1.4826 * MAD estimates sigma for normal data while ignoring outliers (a GC pause, a
# neighbour's burst), which plain std would not.
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class TimingStats:
    """Summary of repeated timings (milliseconds).

    Attributes:
        median: Median of the samples.
        std: Robust standard deviation, ``1.4826 * MAD``.
        p10: 10th percentile.
        p90: 90th percentile.
        rse: Relative standard error of the median, ``1.2533 * std / sqrt(n) / median``.
        samples: The raw samples, in measurement order.
    """

    median: float
    std: float
    p10: float
    p90: float
    rse: float
    samples: tuple[float, ...]

    @property
    def repeats(self) -> int:
        return len(self.samples)


def robust_std(x: np.ndarray) -> float:
    """``1.4826 * MAD`` of the 1-d array ``x``."""
    return _MAD_TO_SIGMA * float(np.median(np.abs(x - np.median(x))))


def median_rse(median: float, std: float, n: int) -> float:
    """Relative standard error of the median of ``n`` values, ``1.2533 * std / sqrt(n) / median``."""
    return _MEDIAN_SE_FACTOR * std / math.sqrt(n) / median if median > 0 else math.inf


def summarize(samples: list[float] | np.ndarray) -> TimingStats:
    """Robust statistics of ``samples`` (a non-empty 1-d sequence of milliseconds)."""
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("summarize needs a non-empty 1-d sequence of timings")
    median = float(np.median(x))
    std = robust_std(x)
    rse = median_rse(median, std, x.size)
    p10, p90 = (float(v) for v in np.percentile(x, [10, 90]))
    return TimingStats(median, std, p10, p90, rse, tuple(float(v) for v in x))


def time_repeats(
    run_once: Callable[[], float],
    warmup: int = 3,
    min_repeats: int = 5,
    max_repeats: int = 100,
    target_rse: float = 0.02,
    max_seconds: float = 30.0,
    clock: Callable[[], float] = time.perf_counter,
) -> TimingStats:
    """Call ``run_once`` until the median is stable.

    Runs ``warmup`` untimed calls, then at least ``min_repeats`` timed ones, and stops as soon
    as the median's relative standard error is ``<= target_rse``, or after ``max_repeats``
    calls, or once ``max_seconds`` of wall time have been spent on timed calls (whichever comes
    first, but never before ``min_repeats``).

    Args:
        run_once: Runs the workload once and returns its duration in milliseconds (so that
            device-side timers such as CUDA events can be used).
        clock: Wall clock (seconds) for the ``max_seconds`` cap.

    Returns:
        The :class:`TimingStats` of the timed calls.
    """
    if min_repeats < 1 or max_repeats < min_repeats:
        raise ValueError(f"need 1 <= min_repeats <= max_repeats, got {min_repeats}, {max_repeats}")
    for _ in range(warmup):
        run_once()
    samples: list[float] = []
    start = clock()
    while len(samples) < max_repeats:
        samples.append(float(run_once()))
        if len(samples) >= min_repeats and (
            summarize(samples).rse <= target_rse or clock() - start >= max_seconds
        ):
            break
    return summarize(samples)


@cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    """The 1-minute load average, rounded (``None`` where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def base_environment() -> dict[str, Any]:
    """What every latency measurement records about the host."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
