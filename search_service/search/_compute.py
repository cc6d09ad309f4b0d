"""Computing a predicted Pareto front per (space, task, device) from two fitted predictors.

A front is computed from a score model for the task (higher is better) and a latency model for
the device (milliseconds). Both only need ``predict(subnets) -> (mean, std)``. Small spaces are
enumerated; larger ones are searched with NSGA-II on the posterior. Predictors that also have
``encode_choices`` and ``predict_encoded`` (every ``predictors.Predictor``) are fed NSGA-II's
choice matrices directly: no ``Subnet`` is built until the front is known. A previous front can
warm-start the search, so that after a small predictor update a short search suffices.

Budget queries (:mod:`._budget`) pick the best score with ``mean + z * std <= budget``. For any
fixed ``z`` the answer is a point of the front on (score, ``mean + z * std``), and every such
point for ``z`` in ``[z_lo, z_hi]`` is non-dominated on the three objectives (score,
``mean + z_lo * std``, ``mean + z_hi * std``), because ``mean + z * std`` is a convex combination
of the other two. The stored candidates are that three-objective front of everything evaluated,
so queries at any confidence in the configured range return the same subnet as a query over the
whole evaluated set.

Queries may also cap the parameter count (``max_params``): the candidates are then the
non-dominated set on four objectives (score, the two latency quantiles, parameters), which holds
the answer for every cap too, and the quantile range always includes the mean (``z = 0``), so
the (score, mean latency) front of the subnets under a cap is among them as well.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from scipy.special import ndtri

from supernet import SearchSpace, Subnet

from ._bounds import bounded_score
from ._budget import check_confidence
from ._nsga2 import EvolutionConfig, Evolver, evolve
from ._pareto import pareto_mask
from ._result import DEFAULT_CONFIDENCES, CandidateSet, FrontResult, resolve_front


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


def as_prediction(
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
    ``Subnet`` objects (built once per batch and shared by both models). Scores are kept within
    the space's :attr:`~supernet.SearchSpace.score_bounds` (:func:`~._bounds.bounded_score`).
    Parameter counts (for ``task``) are recorded alongside when the space can count them.
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
            return as_prediction(
                model.predict_encoded(model.encode_choices(codes)), len(codes), what
            ), subnets
        if subnets is None:
            subnets = self.space.from_choice_matrix(codes, depths)
        return as_prediction(model.predict(subnets), len(codes), what), subnets

    def __call__(self, codes: np.ndarray, depths: np.ndarray) -> np.ndarray:
        """Objectives ``n x 3`` (score, -latency quantile at z_lo, -latency quantile at z_hi), maximised."""
        codes = self.space.restrict_to_task(codes, self.task)
        self.space.validate_choices(codes, depths)
        if self.space.has_params:
            self.params.append(self.space.choice_params(codes, self.task))
        (score, score_std), subnets = self._predict(self.score_model, codes, depths, None, "score")
        score, score_std = bounded_score(score, score_std, self.space.score_bounds)
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
    confidences = tuple(sorted(check_confidence(c) for c in confidences))
    if not confidences:
        raise ValueError("confidences must name at least one confidence")
    resolve_front(np.zeros(0), np.zeros(0), resolution)  # fail fast on a bad resolution
    z_lo, z_hi = float(ndtri(confidences[0])), float(ndtri(confidences[-1]))
    evaluator = _Evaluator(space, score_model, latency_model, z_lo, z_hi, task)
    start = time.perf_counter()
    method: Literal["exact", "nsga2"]
    with limited_torch_threads(torch_threads):
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
def limited_torch_threads(n: int | None) -> Iterator[None]:
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
