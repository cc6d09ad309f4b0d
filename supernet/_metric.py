"""What a measurement measures: the one definition every package uses."""

from __future__ import annotations

from enum import StrEnum


class Metric(StrEnum):
    """The two measured quantities. Members are strings (``Metric.LATENCY == "latency_ms"``), so
    they are stored, sent and compared as their values.

    Attributes:
        LATENCY: Milliseconds per forward pass on a device (lower is better; positive).
        SCORE: A task's score (higher is better; accuracy, mAP, a rank ...).
    """

    LATENCY = "latency_ms"
    SCORE = "score"

    @classmethod
    def parse(cls, value: str) -> Metric:
        """``value`` as a metric; ValueError naming the known ones."""
        try:
            return cls(value)
        except ValueError:
            known = " or ".join(m.value for m in cls)
            raise ValueError(f"unknown metric {value!r}; expected {known}") from None
