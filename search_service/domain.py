"""The service's domain vocabulary, defined once: what is measured (:class:`Metric`), what a
predictor is fitted for (:class:`Target`), where a job stands (:class:`JobStatus`) and where a
unit of background work stands (:class:`WorkStatus`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from supernet import Metric

__all__ = ["ACTIVE_JOB_STATUSES", "JobStatus", "Metric", "Target", "WorkKind", "WorkStatus"]


class JobStatus(StrEnum):
    """A profiling job's state: ``queued`` -> ``leased`` -> ``done``, or back to ``queued`` on a
    failure or an expired lease, and ``failed`` for good after the last attempt."""

    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


class WorkKind(StrEnum):
    """What a unit of background work computes."""

    FIT = "fit"
    FRONT = "front"
    CAMPAIGN = "campaign"
    DEPLOYMENT = "deployment"
    ARTIFACT = "artifact"


class WorkStatus(StrEnum):
    """A unit of background work: ``queued`` -> ``running`` -> ``done``; ``failed`` when it cannot
    succeed on its inputs (retried only once they change); ``error`` when something outside it
    broke (the database, the worker), so that it is dispatched again."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    ERROR = "error"


#: Jobs that still hold their subnet: the same measurement is not queued twice.
ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.LEASED)


@dataclass(frozen=True, order=True)
class Target:
    """What one predictor is fitted for: a device's latency or a task's score in one space.

    Attributes:
        space: The search space.
        metric: :attr:`Metric.LATENCY` (``name`` is a device) or :attr:`Metric.SCORE` (a task).
        name: The device or the task.
    """

    space: str
    metric: Metric
    name: str

    @classmethod
    def of(cls, space: str, device: str | None, task: str | None) -> Target:
        """The target a measurement (or a campaign) of ``device`` or ``task`` feeds: the task's
        score when a task is given, else the device's latency."""
        if task is not None:
            return cls(space, Metric.SCORE, task)
        if device is None:
            raise ValueError("give a device (for a latency) or a task (for a score)")
        return cls(space, Metric.LATENCY, device)

    def __str__(self) -> str:
        return f"{self.space}/{self.metric.value}/{self.name}"
