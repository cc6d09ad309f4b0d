"""The metrics known on this machine: ``gpnas.metrics`` entry points and the local config's ``[metrics]``."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from .._local import ENTRY_POINT_GROUPS, LocalConfig
from ._protocol import TaskMetric

METRICS_ENTRY_POINT_GROUP = ENTRY_POINT_GROUPS["metric"]


def available_metrics(local: LocalConfig | None = None) -> list[str]:
    """Sorted names of the metrics known here: ``gpnas.metrics`` entry points (built-in and
    plug-in) and the ``[metrics]`` of ``local``'s config."""
    names = {ep.name for ep in entry_points(group=METRICS_ENTRY_POINT_GROUP)}
    return sorted(names | set(local.metrics if local is not None else ()))


def get_metric(name: str, local: LocalConfig | None = None, where: str = "task metric") -> type[TaskMetric]:
    """The metric class that ``name`` means on this machine (``local``'s ``[metrics]``, else a
    ``gpnas.metrics`` entry point).

    Raises:
        ValueError: No metric has that name (the message names it and lists the known ones), or
            it does not load a :class:`TaskMetric` subclass.
    """
    found = (local or LocalConfig()).resolve_callable("metric", name, where)
    if not (isinstance(found, type) and issubclass(found, TaskMetric)):
        raise ValueError(f"{where}: {name!r} is not a profilers.TaskMetric subclass")
    return found


def create_metric(name: str, local: LocalConfig | None = None, **options: Any) -> TaskMetric:
    """``get_metric(name, local)(**options)``."""
    return get_metric(name, local)(**options)
