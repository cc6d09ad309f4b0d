"""Predicted Pareto fronts per (space, task, device) and latency-budget queries.

A front is computed from two fitted predictors: a score model for the task (higher is better)
and a latency model for the device (milliseconds). Both only need ``predict(subnets) -> (mean,
std)``. Small spaces are enumerated; larger ones are searched with NSGA-II on the posterior.
Predictors that also have ``encode_choices`` and ``predict_encoded`` (every ``predictors.Predictor``)
are fed NSGA-II's choice matrices directly: no ``Subnet`` is built until the front is known. A
previous front can warm-start the search, so that after a small predictor update a short search
suffices.

Budget queries ask for the best predicted score subject to
``P(latency <= budget) >= confidence``, i.e. ``mean + z_c * std <= budget`` with
``z_c = Phi^{-1}(confidence)``. For any fixed ``z`` the answer is a point of the front on
(score, ``mean + z * std``), and every such point for ``z`` in ``[z_lo, z_hi]`` is non-dominated
on the three objectives (score, ``mean + z_lo * std``, ``mean + z_hi * std``), because
``mean + z * std`` is a convex combination of the other two. The stored candidates are that
three-objective front of everything evaluated, so queries at any confidence in the configured
range return the same subnet as a query over the whole evaluated set.

Queries may also cap the parameter count (``max_params``): the candidates are then the
non-dominated set on four objectives (score, the two latency quantiles, parameters), which holds
the answer for every cap too, and the quantile range always includes the mean (``z = 0``), so
the (score, mean latency) front of the subnets under a cap is among them as well. Every point
carries its subnet's exact parameter count and MACs for the front's task (the space's
:meth:`~supernet.SearchSpace.params` and :meth:`~supernet.SearchSpace.macs`), and the
(score, parameters) front comes from the same candidates (:func:`candidate_front`).

A latency front lists as distinct only points whose predicted mean latencies differ by more than
``resolution`` times the larger of their latency stds (:func:`resolve_front`): a latency model
that cannot tell subnets apart (noisy measurements, a flat fit) shows one point, the best-scored,
where the plain Pareto set would show a column of "optimal" points within a fraction of a std.
The budget-query candidates keep every point: a query compares each candidate's own quantile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from scipy.special import ndtr, ndtri

from supernet import SearchSpace, Subnet

from ._nsga2 import EvolutionConfig, Evolver, evolve
from ._pareto import pareto_mask

DEFAULT_CONFIDENCES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)

#: What a front trades the score against: predicted mean latency, or the exact parameter count.
FrontObjective = Literal["latency", "params"]
FRONT_OBJECTIVES: tuple[FrontObjective, ...] = ("latency", "params")


class Predictor(Protocol):
    """What the search needs from a fitted predictor."""

    def predict(self, subnets: Sequence[Subnet]) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation, each of shape ``n``, in original units."""
        ...


@runtime_checkable
class EncodedPredictor(Protocol):
    """A predictor that also scores choice matrices directly (``predictors.Predictor`` does).

    The search then encodes the matrices it breeds without building a ``Subnet`` per candidate.
    """

    def encode_choices(self, codes: np.ndarray) -> torch.Tensor:
        """Features, shape ``n x d``, of choice matrices ``codes`` (``n x max_depth x n_dims``)."""
        ...

    def predict_encoded(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation, each of shape ``n``, for features ``X``."""
        ...


class NothingFitsError(ValueError):
    """No candidate meets the latency budget at the requested confidence (and the parameter cap).

    Attributes:
        field: The constraint that ruled the candidates out: ``"latency_budget_ms"``, or
            ``"max_params"`` when the cap excludes every candidate, or every one that meets the
            latency budget.
    """

    def __init__(
        self, message: str, field: Literal["latency_budget_ms", "max_params"] = "latency_budget_ms"
    ) -> None:
        super().__init__(message)
        self.field = field


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

    def to_dict(self) -> dict[str, list]:
        """JSON-ready columns: ``{"arch": [...], "score": [...], ..., "params": [...], "macs": [...]}``
        (``params`` and ``macs`` only when known)."""
        data: dict[str, list] = {"arch": list(self.archs)}
        data.update({name: getattr(self, name).tolist() for name in _COLUMNS})
        for name in ("params", "macs"):
            column = getattr(self, name)
            if column is not None:
                data[name] = column.tolist()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, list], space: SearchSpace, task: str | None = None) -> CandidateSet:
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


@dataclass(frozen=True)
class Choice:
    """Answer of :func:`budget_query`.

    Attributes:
        point: The chosen subnet and its predictions.
        p_feasible: ``P(latency <= budget)`` under the latency posterior (Gaussian).
    """

    point: FrontPoint
    p_feasible: float


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return confidence


def _p_within(budget: float, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Gaussian ``P(latency <= budget)``; a zero std means a certain latency."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = ndtr((budget - mean) / std)
    return np.where(std > 0, p, (mean <= budget).astype(float))


def _check_max_params(max_params: int | None) -> int | None:
    """``max_params`` as an int (None stays None), or a ValueError unless it is a positive integer."""
    if max_params is None:
        return None
    if isinstance(max_params, bool) or not isinstance(max_params, int | np.integer) or max_params < 1:
        raise ValueError(f"max_params must be a positive integer, got {max_params!r}")
    return int(max_params)


def budget_query(
    candidates: CandidateSet,
    latency_budget_ms: float,
    confidence: float = 0.9,
    max_params: int | None = None,
) -> Choice:
    """The candidate with the best predicted score among those with ``P(latency <= budget) >= confidence``
    and, when ``max_params`` is given, at most ``max_params`` parameters.

    Ties in score go to the lower predicted latency.

    Args:
        candidates: From :attr:`FrontResult.candidates`.
        latency_budget_ms: The budget, milliseconds (> 0).
        confidence: Required probability of meeting the budget, in (0, 1).
        max_params: Largest parameter count allowed (>= 1), or None for no cap.

    Returns:
        The chosen candidate and its probability of meeting the budget.

    Raises:
        ValueError: On a non-positive budget, a confidence outside (0, 1), a ``max_params`` that
            is not a positive integer, or a cap on candidates without parameter counts.
        NothingFitsError: If no candidate is feasible; the message says which constraint ruled the
            candidates out (its :attr:`~NothingFitsError.field`), naming the fastest candidate or
            the smallest one.
    """
    budget = float(latency_budget_ms)
    if not np.isfinite(budget) or budget <= 0:
        raise ValueError(f"latency_budget_ms must be a positive number, got {latency_budget_ms}")
    confidence = _check_confidence(confidence)
    cap = _check_max_params(max_params)
    params = None if cap is None else candidates._checked_params("max_params")
    if len(candidates) == 0:
        raise NothingFitsError("there are no candidates to choose from")
    # mean + z * std <= budget is the same test as Phi((budget - mean) / std) >= confidence, without
    # the saturation of Phi far in the tails.
    upper = candidates.latency_ms + ndtri(confidence) * candidates.latency_std
    fits_latency = upper <= budget
    fits_params = np.ones(len(candidates), bool) if params is None else params <= cap
    feasible = fits_latency & fits_params
    if not feasible.any():
        raise _nothing_fits(candidates, budget, confidence, cap, fits_latency, fits_params)
    index = np.flatnonzero(feasible)
    # Highest score first, then lowest latency.
    best = index[np.lexsort((candidates.latency_ms[index], -candidates.score[index]))[0]]
    window = slice(best, best + 1)
    p_best = _p_within(budget, candidates.latency_ms[window], candidates.latency_std[window])
    return Choice(candidates.point(int(best)), float(p_best[0]))


def _nothing_fits(
    candidates: CandidateSet,
    budget: float,
    confidence: float,
    cap: int | None,
    fits_latency: np.ndarray,
    fits_params: np.ndarray,
) -> NothingFitsError:
    """Why no candidate meets both constraints: the latency budget, the parameter cap, or each
    excludes the candidates that the other leaves."""
    latency, std = candidates.latency_ms, candidates.latency_std
    wanted = f"P(latency <= {budget:g} ms) >= {confidence:g}"
    if cap is not None and candidates.params is not None:
        params = candidates.params
        if not fits_params.any():
            smallest = int(np.argmin(params))
            return NothingFitsError(
                f"no candidate has at most {cap:,} parameters (max_params): the smallest, "
                f"{candidates.archs[smallest]}, has {int(params[smallest]):,}",
                "max_params",
            )
        if fits_latency.any():
            within = np.flatnonzero(fits_params)
            fastest = int(within[np.argmin(latency[within])])
            p = _p_within(budget, latency[fastest : fastest + 1], std[fastest : fastest + 1])[0]
            return NothingFitsError(
                f"the parameter cap rules out every subnet with {wanted}: the smallest of them has "
                f"{int(params[fits_latency].min()):,} parameters, more than max_params = {cap:,}; the "
                f"fastest candidate within the cap is predicted at {latency[fastest]:.4g} ± "
                f"{std[fastest]:.2g} ms (P = {p:.3g})",
                "max_params",
            )
    p = _p_within(budget, latency, std)
    most_likely = int(np.argmax(p))
    fastest = int(np.argmin(latency))
    return NothingFitsError(
        f"no subnet has {wanted}; the fastest candidate is predicted at {latency[fastest]:.4g} ± "
        f"{std[fastest]:.2g} ms, and the most likely to fit has P = {p[most_likely]:.3g}"
    )


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
    cap = _check_max_params(max_params)
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


def _as_prediction(
    predicted: tuple[torch.Tensor, torch.Tensor], n: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """A model's ``(mean, std)`` as float64 arrays of shape ``n``, checked."""
    mean = torch.as_tensor(predicted[0]).detach().to("cpu", torch.float64).reshape(-1).numpy()
    std = torch.as_tensor(predicted[1]).detach().to("cpu", torch.float64).reshape(-1).numpy()
    if len(mean) != n or len(std) != n:
        raise ValueError(f"{what} model returned {len(mean)} means and {len(std)} stds for {n} subnets")
    if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
        raise ValueError(f"{what} model returned NaN, infinite or negative predictions")
    return mean, std


def enumerate_codes(space: SearchSpace, limit: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Every subnet of a small space as choice matrices, shallowest first (vectorised).

    Returns:
        ``(codes n x max_depth x n_dims, depths n)`` with ``n = space.cardinality``.

    Raises:
        ValueError: If the space holds more than ``limit`` subnets.
    """
    if space.cardinality > limit:
        raise ValueError(f"space {space.name!r} has {space.cardinality} subnets, more than limit={limit}")
    sizes = [len(d) for d in space.dimensions]
    per_layer = space.choices_per_layer
    blocks, depths = [], []
    for depth in space.depths:
        index = np.arange(per_layer**depth, dtype=np.int64)
        codes = np.full((len(index), space.max_depth, len(sizes)), -1, dtype=np.int64)
        for layer in range(depth):
            # Mixed radix: the last layer varies fastest, matching SearchSpace.enumerate's order.
            setting = (index // per_layer ** (depth - 1 - layer)) % per_layer
            for k in range(len(sizes) - 1, -1, -1):
                codes[:, layer, k] = setting % sizes[k]
                setting = setting // sizes[k]
        blocks.append(codes)
        depths.append(np.full(len(index), depth))
    return np.concatenate(blocks), np.concatenate(depths)


class _Evaluator:
    """Predicts batches of choice matrices and records the predictions in evaluation order.

    Models with :class:`EncodedPredictor`'s methods are fed the matrices directly; others get
    ``Subnet`` objects (built once per batch and shared by both models). Parameter counts (for
    ``task``) are recorded alongside when the space can count them.
    """

    def __init__(
        self,
        space: SearchSpace,
        score_model: Predictor,
        latency_model: Predictor,
        z_lo: float,
        z_hi: float,
        task: str | None = None,
    ) -> None:
        self.space, self.score_model, self.latency_model = space, score_model, latency_model
        self.z_lo, self.z_hi, self.task = z_lo, z_hi, task
        self.codes: list[np.ndarray] = []  # batches of n x max_depth x n_dims
        self.depths: list[np.ndarray] = []  # batches of n
        self.stats: list[np.ndarray] = []  # batches of n x 4: score, score_std, latency, latency_std
        self.params: list[np.ndarray] = []  # batches of n (int64), when the space counts them

    def _predict(
        self, model: Predictor, codes: np.ndarray, depths: np.ndarray, subnets: list[Subnet] | None, what: str
    ) -> tuple[tuple[np.ndarray, np.ndarray], list[Subnet] | None]:
        """One model's predictions for a batch, and the batch's subnets if they had to be built."""
        if isinstance(model, EncodedPredictor):
            return _as_prediction(
                model.predict_encoded(model.encode_choices(codes)), len(codes), what
            ), subnets
        if subnets is None:
            subnets = self.space.from_choice_matrix(codes, depths)
        return _as_prediction(model.predict(subnets), len(codes), what), subnets

    def __call__(self, codes: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """Objectives ``n x 3`` (score, -latency quantile at z_lo, -latency quantile at z_hi), maximised."""
        codes = self.space.restrict_to_task(codes, self.task)
        self.space.validate_choices(codes, depths)
        if self.space.has_params:
            self.params.append(self.space.choice_params(codes, self.task))
        (score, score_std), subnets = self._predict(self.score_model, codes, depths, None, "score")
        (latency, latency_std), _ = self._predict(self.latency_model, codes, depths, subnets, "latency")
        self.codes.append(codes)
        self.depths.append(depths)
        self.stats.append(np.column_stack([score, score_std, latency, latency_std]))
        upper_lo, upper_hi = latency + self.z_lo * latency_std, latency + self.z_hi * latency_std
        return np.column_stack([score, -upper_lo, -upper_hi])

    def all_params(self) -> np.ndarray | None:
        """Parameter counts of everything evaluated, in evaluation order (None: the space has none)."""
        return np.concatenate(self.params) if self.space.has_params else None

    def candidates(self, index: np.ndarray) -> CandidateSet:
        """The evaluated subnets at positions ``index`` (only these become subnets with arch strings)."""
        stats = np.concatenate(self.stats)[index]
        codes = np.concatenate(self.codes)[index]
        subnets = self.space.from_choice_matrix(codes, np.concatenate(self.depths)[index])
        params = self.all_params()
        score, score_std, latency, latency_std = stats.T
        return CandidateSet(
            subnets,
            [self.space.format(s) for s in subnets],
            score,
            score_std,
            latency,
            latency_std,
            None if params is None else params[index],
            self.space.choice_macs(codes) if self.space.has_costs else None,
        )


def _warm_seeds(space: SearchSpace, warm_start: FrontResult) -> tuple[np.ndarray, np.ndarray]:
    """Choice matrices and depths of a previous front's points and candidates (front points first).

    Raises:
        ValueError: If ``warm_start`` is a front of another space.
    """
    if warm_start.space != space.name:
        raise ValueError(f"warm_start is a front of space {warm_start.space!r}, not {space.name!r}")
    subnets = list(dict.fromkeys([p.subnet for p in warm_start.points] + list(warm_start.candidates.subnets)))
    codes = space.choice_matrix(subnets)
    return codes, np.array([s.depth for s in subnets], dtype=np.int64)


def compute_front(
    space: SearchSpace,
    score_model: Predictor,
    latency_model: Predictor,
    *,
    task: str | None = None,
    seed: int = 0,
    max_evaluations: int = 20_000,
    time_limit_s: float | None = None,
    population_size: int = 256,
    confidences: Sequence[float] = DEFAULT_CONFIDENCES,
    exact_limit: int = 1_000_000,
    batch_size: int = 50_000,
    warm_start: FrontResult | None = None,
    torch_threads: int | None = 1,
    evolver: Evolver = evolve,
    resolution: float = 0.0,
) -> FrontResult:
    """The predicted Pareto front of ``space`` on (score max, latency min) and budget-query candidates.

    Spaces with at most ``exact_limit`` subnets are enumerated (predicted in batches of
    ``batch_size``); others are searched by NSGA-II on three objectives: score, and the latency
    quantiles at the smallest and largest of ``confidences``, which keeps both the mean front and
    the subnets that high-confidence budget queries need in the search.

    Args:
        space: The search space.
        score_model: Fitted score predictor for the task (higher is better).
        latency_model: Fitted latency predictor for the device (milliseconds).
        task: The task ``score_model`` predicts: parameter counts include its head, if it has one.
        seed: Seed of the evolutionary search.
        max_evaluations: Most distinct subnets NSGA-II may predict.
        time_limit_s: Wall-clock limit of NSGA-II (checked between generations).
        population_size: NSGA-II population size (at most ``max_evaluations``).
        confidences: Budget-query confidences; queries are exact (over everything evaluated) for any
            confidence between their minimum and maximum.
        exact_limit: Largest cardinality that is enumerated.
        batch_size: Subnets per predictor call during enumeration.
        warm_start: A previous front of the same space (typically of the same task and device, on
            slightly older predictors): its points and candidates are re-predicted by the given
            models and seed NSGA-II's first population, so a short search (a small
            ``max_evaluations`` or ``time_limit_s``) ends near the front a full search would find.
            Ignored when the space is enumerated.
        torch_threads: torch's intra-op threads while the search runs (restored afterwards; the
            setting is process-wide), or None to leave it. One by default: a search predicts
            batches of a few hundred subnets, where OpenMP's threads mostly wait on each other;
            on 2 shared cores a ufo-track2 search made 7,644 evaluations/s with one thread and
            715 with two (medians, benchmarks/results/fronts.md).
        evolver: The evolutionary search, with :func:`evolve`'s signature (benchmarks pass other
            implementations, e.g. pymoo's NSGA-II, to compare them on the same objective).
        resolution: The front lists as distinct only points whose predicted latencies differ by
            more than this many latency stds (:func:`resolve_front`; the service passes its
            ``front_resolution`` setting). 0 (default): the plain Pareto set.

    Returns:
        The front (ordered by predicted latency) and the candidates, with parameter counts and
        MACs where the space has them.

    Raises:
        ValueError: On an empty or out-of-range confidence, a ``warm_start`` of another space, a
            ``task`` unknown to a space with per-task heads, or predictions of the wrong shape or
            with non-finite values.
    """
    confidences = tuple(sorted(_check_confidence(c) for c in confidences))
    if not confidences:
        raise ValueError("confidences must name at least one confidence")
    resolve_front(np.zeros(0), np.zeros(0), resolution)  # fail fast on a bad resolution
    z_lo, z_hi = float(ndtri(confidences[0])), float(ndtri(confidences[-1]))
    evaluator = _Evaluator(space, score_model, latency_model, z_lo, z_hi, task)
    start = time.perf_counter()
    method: Literal["exact", "nsga2"]
    with _torch_threads(torch_threads):
        if space.cardinality <= exact_limit:
            codes, depths = enumerate_codes(space, exact_limit)
            if task is not None and task in getattr(space, "fixed_ffn_paths", {}):
                # Many subnets map to one the task may take: predict each of those once.
                codes, first = np.unique(space.restrict_to_task(codes, task), axis=0, return_index=True)
                depths = depths[first]
            for lo in range(0, len(codes), batch_size):
                evaluator(codes[lo : lo + batch_size], depths[lo : lo + batch_size])
            method, generations = "exact", 0
        else:
            # A small evaluation budget shrinks the population rather than being refused.
            config = EvolutionConfig(
                population_size=min(population_size, max_evaluations),
                max_evaluations=max_evaluations,
                time_limit_s=time_limit_s,
            )
            seeds = None if warm_start is None else _warm_seeds(space, warm_start)
            generations = evolver(space, evaluator, config=config, seed=seed, initial=seeds).generations
            method = "nsga2"
    return _result(space, evaluator, method, generations, start, confidences, resolution)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: unchanged), then restore the setting."""
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"torch_threads must be >= 1, got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _result(
    space: SearchSpace,
    evaluator: _Evaluator,
    method: Literal["exact", "nsga2"],
    generations: int,
    start: float,
    confidences: tuple[float, ...],
    resolution: float = 0.0,
) -> FrontResult:
    """The mean front and the budget-query candidates of everything ``evaluator`` predicted.

    The candidates are the non-dominated set on (score, -latency quantiles at ``min(z_lo, 0)`` and
    ``max(z_hi, 0)``, and -parameters where the space counts them), plus the mean front: budget
    queries under any parameter cap, and mean fronts under any cap, are then exact over
    everything evaluated.

    The front's points are the mean front at ``resolution`` (:func:`resolve_front`); the
    candidates keep all of it. ``start`` is the search's ``time.perf_counter()`` at its start; the
    elapsed time includes this step.
    """
    score, _, latency, latency_std = np.concatenate(evaluator.stats).T
    params = evaluator.all_params()

    mean_front = np.flatnonzero(pareto_mask(np.column_stack([score, -latency])))
    mean_front = mean_front[np.argsort(latency[mean_front], kind="stable")]
    objectives = [
        score,
        *(-(latency + z * latency_std) for z in (min(evaluator.z_lo, 0.0), max(evaluator.z_hi, 0.0))),
    ]
    if params is not None:
        objectives.append(-params.astype(np.float64))
    keep = np.union1d(np.flatnonzero(pareto_mask(np.column_stack(objectives))), mean_front)
    keep = keep[np.argsort(latency[keep], kind="stable")]
    shown = mean_front[resolve_front(latency[mean_front], latency_std[mean_front], resolution)]
    points, candidates = evaluator.candidates(shown).points(), evaluator.candidates(keep)
    return FrontResult(
        space=space.name,
        points=points,
        candidates=candidates,
        method=method,
        evaluations=len(score),
        generations=generations,
        elapsed_s=time.perf_counter() - start,
        confidences=confidences,
        task=evaluator.task,
        resolution=resolution,
    )
