"""What a task metric is: the :class:`TaskMetric` base class and the :class:`MetricResult` it answers."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ._data import EvalOutputs
from ._distances import Distance, check_distance


@dataclass(frozen=True)
class MetricResult:
    """What a metric makes of a task's outputs.

    Attributes:
        value: The score stored as the measurement (higher is better), ``values[primary]``.
        std: Its standard error (binomial for proportions; over queries or folds otherwise).
        count: How many units ``value`` averages: examples, valid queries or pairs.
        primary: The name of ``value`` among ``values``.
        values: Every number the metric reports, by name (finite floats).
    """

    value: float
    std: float
    count: int
    primary: str
    values: dict[str, float]


def binomial_se(p: float, n: int) -> float:
    """Standard error ``sqrt(p(1-p)/n)`` of a proportion ``p`` of ``n`` items (0 without items)."""
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of ``values`` (``ddof=1``; 0 for fewer than two values)."""
    return float(np.std(values, ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0


class TaskMetric(abc.ABC):
    """Base class of the metrics that score a task; registered under ``gpnas.metrics``.

    A plug-in subclasses it, sets the class attributes and implements :meth:`compute`; the
    profiler constructs it as ``cls()`` or, when :attr:`uses_distance`, ``cls(distance=...)``.

    Args:
        distance: ``cosine`` or ``euclidean`` between embeddings (default
            :attr:`default_distance`); only for metrics that compare embeddings.

    Raises:
        ValueError: A distance for a metric that compares no embeddings, or an unknown one.
    """

    name: ClassVar[str] = ""
    """Registry name (the entry-point name under ``gpnas.metrics``)."""
    version: ClassVar[str] = "1"
    """Bumped whenever a change could alter the numbers; stored with every measurement."""
    requires: tuple[str, ...] = ()
    """:class:`EvalOutputs` fields the metric reads besides ``outputs``."""
    uses_distance: ClassVar[bool] = False
    """Whether the metric compares embeddings (takes ``distance``)."""
    default_distance: ClassVar[Distance] = "cosine"
    needs_head: ClassVar[bool] = False
    """The outputs must be a classification head's logits (not an embedding)."""

    def __init__(self, distance: Distance | None = None) -> None:
        if distance is not None and not self.uses_distance:
            raise ValueError(f"metric {self.name!r} compares no embeddings; it takes no distance")
        self.distance: Distance | None = (
            check_distance(distance or self.default_distance) if self.uses_distance else None
        )

    def check(self, out: EvalOutputs, where: str = "the data") -> None:
        """Raise ValueError if ``out`` lacks a field this metric reads, naming it and what ``where`` gave."""
        missing = [name for name in self.requires if getattr(out, name) is None]
        if missing:
            raise ValueError(
                f"metric {self.name!r} needs the batch field(s) {missing} (see profilers.EvalBatch); "
                f"{where} gave {out.present()}"
            )

    def __call__(self, out: EvalOutputs, where: str = "the data") -> MetricResult:
        """:meth:`check`, then :meth:`compute`."""
        self.check(out, where)
        return self.compute(out)

    @abc.abstractmethod
    def compute(self, out: EvalOutputs) -> MetricResult:
        """Score the outputs (whose :attr:`requires` fields are present)."""

    def __repr__(self) -> str:
        inside = f"distance={self.distance!r}" if self.uses_distance else ""
        return f"{type(self).__name__}({inside})"
