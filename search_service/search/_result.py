"""What a predicted front is: its points, the budget-query candidates, and their dict form.

Every point carries its subnet's exact parameter count and MACs for the front's task (the space's
:meth:`~supernet.SearchSpace.params` and :meth:`~supernet.SearchSpace.macs`), and the
(score, parameters) front comes from the same candidates (:func:`candidate_front`).

A latency front lists as distinct only points whose predicted mean latencies differ by more than
``resolution`` times the larger of their latency stds (:func:`resolve_front`): a latency model
that cannot tell subnets apart (noisy measurements, a flat fit) shows one point, the best-scored,
where the plain Pareto set would show a column of "optimal" points within a fraction of a std.
The budget-query candidates keep every point: a query compares each candidate's own quantile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from supernet import SearchSpace, Subnet

from ._pareto import pareto_mask

DEFAULT_CONFIDENCES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)

#: What a front trades the score against: predicted mean latency, or the exact parameter count.
FrontObjective = Literal["latency", "params"]
FRONT_OBJECTIVES: tuple[FrontObjective, ...] = ("latency", "params")


@dataclass(frozen=True)
class FrontPoint:
    """One subnet with its predicted score and latency.

    Attributes:
        arch: Canonical arch string of ``subnet``.
        subnet: The subnet.
        score: Predicted score mean (higher is better).
        score_std: Predicted score standard deviation.
        latency_ms: Predicted latency mean, milliseconds.
        latency_std: Predicted latency standard deviation, milliseconds.
        params: Exact parameter count of the subnet for the front's task (``space.params``), or
            None when the space cannot count parameters.
        macs: Multiply-accumulates of one forward pass (``space.macs``), or None when the space
            has no cost model.
    """

    arch: str
    subnet: Subnet
    score: float
    score_std: float
    latency_ms: float
    latency_std: float
    params: int | None = None
    macs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: arch, score, score_std, latency_ms, latency_std, params, macs."""
        return {
            "arch": self.arch,
            "score": self.score,
            "score_std": self.score_std,
            "latency_ms": self.latency_ms,
            "latency_std": self.latency_std,
            "params": self.params,
            "macs": self.macs,
        }


_COLUMNS = ("score", "score_std", "latency_ms", "latency_std")


def _space_counts(
    space: SearchSpace, subnets: Sequence[Subnet], task: str | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(params int64 n, macs float64 n)`` of ``subnets`` for ``task``, each None if the space lacks it.

    Raises:
        ValueError: If a subnet is not in the space, or ``task`` is unknown to a space with heads.
    """
    if not (space.has_params or space.has_costs):
        return None, None
    codes = space.choice_matrix(subnets)
    params = space.choice_params(codes, task) if space.has_params else None
    macs = space.choice_macs(codes) if space.has_costs else None
    return params, macs


@dataclass
class CandidateSet:
    """Columnar set of subnets kept for budget queries (vectorised, so queries take microseconds).

    Attributes:
        subnets: The subnets, length ``n``.
        archs: Their arch strings, length ``n``.
        score, score_std, latency_ms, latency_std: Predictions, each an array of shape ``n``.
        params: Exact parameter counts, int64 array of shape ``n``, or None (the space cannot count them).
        macs: Multiply-accumulates, float64 array of shape ``n``, or None (no cost model).
    """

    subnets: list[Subnet]
    archs: list[str]
    score: np.ndarray
    score_std: np.ndarray
    latency_ms: np.ndarray
    latency_std: np.ndarray
    params: np.ndarray | None = None
    macs: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.subnets)
        for name in (*_COLUMNS, "params", "macs"):
            value = getattr(self, name)
            if value is None and name in ("params", "macs"):
                continue
            column = np.asarray(value, dtype=np.float64).reshape(-1)
            if len(column) != n:
                raise ValueError(f"candidate column {name!r} has {len(column)} values for {n} subnets")
            if not np.isfinite(column).all():
                raise ValueError(f"candidate column {name!r} has NaN or infinite values")
            if (name.endswith("_std") or name in ("params", "macs")) and (column < 0).any():
                raise ValueError(f"candidate column {name!r} has negative values")
            if name == "params":
                if (column != np.round(column)).any():
                    raise ValueError("candidate column 'params' has non-integer values")
                column = np.asarray(value).reshape(-1).astype(np.int64)
            setattr(self, name, column)
        if len(self.archs) != n:
            raise ValueError(f"{len(self.archs)} archs for {n} subnets")

    def __len__(self) -> int:
        return len(self.subnets)

    def point(self, i: int) -> FrontPoint:
        """The ``i``-th candidate as a :class:`FrontPoint`."""
        return FrontPoint(
            self.archs[i],
            self.subnets[i],
            float(self.score[i]),
            float(self.score_std[i]),
            float(self.latency_ms[i]),
            float(self.latency_std[i]),
            None if self.params is None else int(self.params[i]),
            None if self.macs is None else float(self.macs[i]),
        )

    def points(self) -> list[FrontPoint]:
        return [self.point(i) for i in range(len(self))]

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON-ready columns: ``{"arch": [...], "score": [...], ..., "params": [...], "macs": [...]}``
        (``params`` and ``macs`` only when known)."""
        data: dict[str, list[Any]] = {"arch": list(self.archs)}
        data.update({name: getattr(self, name).tolist() for name in _COLUMNS})
        for name in ("params", "macs"):
            column = getattr(self, name)
            if column is not None:
                data[name] = column.tolist()
        return data

    @classmethod
    def from_dict(
        cls, data: dict[str, list[Any]], space: SearchSpace, task: str | None = None
    ) -> CandidateSet:
        """Inverse of :meth:`to_dict`; arch strings are parsed (and so validated) by ``space``.

        Data stored without ``params`` or ``macs`` (fronts from before they were kept) gets them
        from ``space`` for ``task``.
        """
        missing = [k for k in ("arch", *_COLUMNS) if k not in data]
        if missing:
            raise ValueError(f"candidate data lacks {', '.join(missing)}")
        archs = [str(a) for a in data["arch"]]
        subnets = space.parse_many(archs)
        params, macs = (np.asarray(data[k]) if k in data else None for k in ("params", "macs"))
        if params is None or macs is None:
            computed = _space_counts(space, subnets, task)
            params = computed[0] if params is None else params
            macs = computed[1] if macs is None else macs
        score, score_std, latency_ms, latency_std = (np.asarray(data[k], dtype=np.float64) for k in _COLUMNS)
        return cls(subnets, archs, score, score_std, latency_ms, latency_std, params, macs)

    def _checked_params(self, why: str) -> np.ndarray:
        """:attr:`params`, or a ValueError saying that ``why`` needs them."""
        if self.params is None:
            raise ValueError(
                f"{why} needs parameter counts; these candidates have none (their space has no count)"
            )
        return self.params


@dataclass
class FrontResult:
    """A predicted front and the candidates for budget queries.

    Attributes:
        space: Name of the search space.
        points: The Pareto front on (mean score max, mean latency min), ordered by latency.
        candidates: Everything a budget query at a confidence in ``confidences``' range can pick.
        method: ``"exact"`` (whole space enumerated) or ``"nsga2"``.
        evaluations: Number of distinct subnets whose predictions were computed.
        generations: NSGA-II generations (0 for exact).
        elapsed_s: Wall-clock seconds of the search.
        confidences: The confidences the candidates are built for (queries are exact in their range).
        task: The task whose score was maximised (its head, if any, is in the parameter counts),
            or None when not given.
        resolution: The latency resolution of :attr:`points` and of latency fronts under a cap,
            relative to the latency std (:func:`resolve_front`; 0: the plain Pareto set).
    """

    space: str
    points: list[FrontPoint]
    candidates: CandidateSet
    method: Literal["exact", "nsga2"]
    evaluations: int
    generations: int
    elapsed_s: float
    confidences: tuple[float, ...] = field(default=DEFAULT_CONFIDENCES)
    task: str | None = None
    resolution: float = 0.0

    def front_on(
        self, objective: FrontObjective = "latency", max_params: int | None = None
    ) -> list[FrontPoint]:
        """The predicted front on (score, ``objective``), optionally of the subnets within ``max_params``.

        ``"latency"`` without a cap is :attr:`points`; otherwise the front comes from the
        candidates (:func:`candidate_front`, latency fronts at :attr:`resolution`), which hold it
        exactly.

        Raises:
            ValueError: On an unknown objective or a bad ``max_params``, or when parameters are
                needed and the candidates have none.
        """
        if objective == "latency" and max_params is None:
            return list(self.points)
        return candidate_front(self.candidates, objective, max_params, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (only plain lists, numbers, strings and None)."""
        return {
            "space": self.space,
            "task": self.task,
            "points": [p.to_dict() for p in self.points],
            "candidates": self.candidates.to_dict(),
            "method": self.method,
            "evaluations": self.evaluations,
            "generations": self.generations,
            "elapsed_s": self.elapsed_s,
            "confidences": list(self.confidences),
            "resolution": self.resolution,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], space: SearchSpace, task: str | None = None) -> FrontResult:
        """Inverse of :meth:`to_dict`.

        Fronts stored before points carried ``params`` and ``macs`` (and the task) decode too:
        the counts are computed from ``space`` for ``task``, the front's task when the data does
        not name one.

        Raises:
            ValueError: If ``data`` is for another space or task, or misses a field.
        """
        if data.get("space") != space.name:
            raise ValueError(f"front data is for space {data.get('space')!r}, not {space.name!r}")
        stored_task = data.get("task")
        if stored_task is not None and task is not None and stored_task != task:
            raise ValueError(f"front data is for task {stored_task!r}, not {task!r}")
        task = stored_task if stored_task is not None else task
        try:
            points = [
                FrontPoint(
                    p["arch"],
                    space.parse(p["arch"]),
                    float(p["score"]),
                    float(p["score_std"]),
                    float(p["latency_ms"]),
                    float(p["latency_std"]),
                    None if p.get("params") is None else int(p["params"]),
                    None if p.get("macs") is None else float(p["macs"]),
                )
                for p in data["points"]
            ]
            if any(p.params is None or p.macs is None for p in points):
                params, macs = _space_counts(space, [p.subnet for p in points], task)
                points = [
                    replace(
                        p,
                        params=p.params if p.params is not None or params is None else int(params[i]),
                        macs=p.macs if p.macs is not None or macs is None else float(macs[i]),
                    )
                    for i, p in enumerate(points)
                ]
            return cls(
                space.name,
                points,
                CandidateSet.from_dict(data["candidates"], space, task),
                data["method"],
                int(data["evaluations"]),
                int(data["generations"]),
                float(data["elapsed_s"]),
                tuple(float(c) for c in data["confidences"]),
                task,
                # Fronts stored before the resolution existed are plain Pareto sets.
                float(data.get("resolution", 0.0)),
            )
        except KeyError as error:
            raise ValueError(f"front data lacks field {error.args[0]!r}") from None


def check_max_params(max_params: int | None) -> int | None:
    """``max_params`` as an int (None stays None), or a ValueError unless it is a positive integer."""
    if max_params is None:
        return None
    if isinstance(max_params, bool) or not isinstance(max_params, int | np.integer) or max_params < 1:
        raise ValueError(f"max_params must be a positive integer, got {max_params!r}")
    return int(max_params)


def candidate_front(
    candidates: CandidateSet,
    objective: FrontObjective = "latency",
    max_params: int | None = None,
    resolution: float = 0.0,
) -> list[FrontPoint]:
    """The non-dominated candidates on (score max, ``objective`` min), among those within ``max_params``.

    ``"latency"`` trades the score against the predicted mean latency and orders the points by
    it; ``"params"`` against the exact parameter count, ordered by parameters. Of candidates
    equal on both objectives the fastest is kept. On the candidates of :func:`compute_front`
    both are the fronts of everything evaluated (under any cap).

    Args:
        candidates: From :attr:`FrontResult.candidates`.
        objective: ``"latency"`` or ``"params"``.
        max_params: Keep only candidates with at most this many parameters (None: all).
        resolution: For ``"latency"``: list as distinct only points whose mean latencies differ
            by more than this many latency stds (:func:`resolve_front`); parameter counts are
            exact and need none.

    Returns:
        The front's points, ordered by ``objective``.

    Raises:
        ValueError: On an unknown objective or a bad ``max_params``, or when parameters are
            needed and the candidates have none.
    """
    if objective not in FRONT_OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(FRONT_OBJECTIVES)}, got {objective!r}")
    cap = check_max_params(max_params)
    index = np.arange(len(candidates))
    if cap is not None:
        index = index[candidates._checked_params("max_params")[index] <= cap]
    # Fastest first, so that of twins on both objectives (pareto_mask keeps the first) the fastest stays.
    index = index[np.argsort(candidates.latency_ms[index], kind="stable")]
    if objective == "latency":
        cost = candidates.latency_ms[index]
    else:
        cost = candidates._checked_params("objective 'params'")[index].astype(np.float64)
    mask = pareto_mask(np.column_stack([candidates.score[index], -cost]))
    front, front_cost = index[mask], cost[mask]
    front = front[np.argsort(front_cost, kind="stable")]
    if objective == "latency":
        front = front[resolve_front(candidates.latency_ms[front], candidates.latency_std[front], resolution)]
    return [candidates.point(int(i)) for i in front]


def resolve_front(latency_ms: np.ndarray, latency_std: np.ndarray, resolution: float) -> np.ndarray:
    """Which points of a mean-latency Pareto front are told apart at ``resolution``.

    Walks the front from its slowest (best-scored) point down: a point is kept when its mean
    latency is below the last kept one's by more than ``resolution`` times the larger of their
    two stds, else it merges into that one. On a Pareto front ordered by latency the score rises
    with the latency, so of points that cannot be told apart the better-scored one stays, and
    every two consecutive kept points differ by more than the resolution.

    Args:
        latency_ms: Predicted mean latencies of the front, shape ``n``, in ascending order.
        latency_std: Their stds, shape ``n``.
        resolution: Multiple of the std (>= 0); 0 keeps every point of distinct latency.

    Returns:
        Boolean mask of shape ``n``.

    Raises:
        ValueError: If ``resolution`` is negative or not finite.
    """
    if not (np.isfinite(resolution) and resolution >= 0):
        raise ValueError(f"resolution must be a finite number >= 0, got {resolution}")
    keep = np.zeros(len(latency_ms), dtype=bool)
    last = -1
    for i in range(len(latency_ms) - 1, -1, -1):
        gap = resolution * max(latency_std[i], latency_std[last]) if last >= 0 else 0.0
        if last < 0 or latency_ms[last] - latency_ms[i] > gap:
            keep[i], last = True, i
    return keep
