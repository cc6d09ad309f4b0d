"""Active sampling: which subnets to measure next.

Every strategy has one signature::

    create_strategy(name).select(space, predictors, measured, n, candidates=None, seed=None)

and returns ``n`` distinct subnets from ``candidates`` (default: a pool of ``pool_size`` subnets
of ``space``, uniform except for ``cost-stratified``, whose pool spans the cost range) that are
not in ``measured``.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.models import ModelListGP, SingleTaskGP
from botorch.optim import optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler

from supernet import SearchSpace, Subnet
from supernet.errors import UserError

from ._base import Predictor, encode_subnets
from ._capabilities import SupportsBotorchModel, SupportsCovariance, SupportsPriorCovariance
from ._limits import check_time

PredictorArg = Predictor | Sequence[Predictor] | None
_STRATEGIES: dict[str, type[SamplingStrategy]] = {}


def _register(name: str, *aliases: str) -> Callable[[type[SamplingStrategy]], type[SamplingStrategy]]:
    def decorate(cls: type[SamplingStrategy]) -> type[SamplingStrategy]:
        cls.name = name
        for key in (name, *aliases):
            _STRATEGIES[key] = cls
        return cls

    return decorate


def list_strategies() -> list[str]:
    """Names accepted by :func:`create_strategy`."""
    return sorted(_STRATEGIES)


def create_strategy(name: str, **options: Any) -> SamplingStrategy:
    """The sampling strategy called ``name`` (``random``, ``max-variance`` / ``mutual-information``,
    ``integrated-variance`` / ``alc``, ``qlognehvi``, ``cost-stratified``).

    Raises:
        ValueError: If ``name`` is unknown.
    """
    if name not in _STRATEGIES:
        raise ValueError(f"unknown sampling strategy {name!r}; known: {', '.join(list_strategies())}")
    return _STRATEGIES[name](**options)


class SamplingStrategy(ABC):
    """Chooses the next subnets to measure.

    Args:
        pool_size: Size of the candidate pool drawn when ``select`` gets no candidates.
    """

    name: ClassVar[str] = ""
    #: Whether a cold start can use a prior from related targets (a predictor with
    #: :class:`~predictors.SupportsPriorCovariance`, e.g. ``TransferPredictor.fit_sources``).
    uses_transfer_prior: ClassVar[bool] = False

    def __init__(self, pool_size: int = 2000) -> None:
        self.pool_size = pool_size

    def select(
        self,
        space: SearchSpace,
        predictors: PredictorArg,
        measured: Sequence[Subnet],
        n: int,
        candidates: Sequence[Subnet] | None = None,
        seed: int | None = None,
    ) -> list[Subnet]:
        """Pick ``n`` distinct subnets to measure next.

        Args:
            space: The search space.
            predictors: Fitted predictor(s) of the campaign; ``random`` and
                ``cost-stratified`` ignore them,
                ``max-variance`` and ``integrated-variance`` use the first, ``qlognehvi`` needs
                ``(score, latency)``.
                ``None`` (cold start) makes the model-based strategies spread the picks out.
            measured: Subnets already measured; never picked again.
            n: How many to pick.
            candidates: Pool to pick from; default ``pool_size`` subnets of ``space`` from
                :meth:`default_pool` (uniform samples unless the strategy says otherwise).
            seed: Seeds the pool, random picks and Monte-Carlo samples.

        Raises:
            UserError: If fewer than ``n`` unmeasured candidates exist (``n`` is often a user's).
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if candidates is None:
            size = min(space.cardinality, max(self.pool_size, n + len(measured)))
            candidates = self.default_pool(space, size, seed)
        done = set(measured)
        pool = list(dict.fromkeys(c for c in candidates if c not in done))
        for sub in pool:
            space.validate(sub)
        if len(pool) < n:
            raise UserError(f"only {len(pool)} unmeasured candidates for n={n}")
        if n == 0:
            return []
        picks = self._select(space, predictors, list(measured), n, pool, np.random.default_rng(seed))
        return [pool[i] for i in picks]

    def default_pool(self, space: SearchSpace, size: int, seed: int | None) -> list[Subnet]:
        """Candidates when ``select`` gets none: ``size`` uniform samples of ``space``."""
        return space.sample(size, seed=seed)

    @abstractmethod
    def _select(
        self,
        space: SearchSpace,
        predictors: PredictorArg,
        measured: list[Subnet],
        n: int,
        pool: list[Subnet],
        rng: np.random.Generator,
    ) -> list[int]:
        """Indices of ``n`` distinct members of ``pool``."""


@_register("random")
class RandomStrategy(SamplingStrategy):
    """Uniformly random unmeasured candidates."""

    def _select(
        self,
        space: SearchSpace,
        predictors: PredictorArg,
        measured: list[Subnet],
        n: int,
        pool: list[Subnet],
        rng: np.random.Generator,
    ) -> list[int]:
        result: list[int] = rng.permutation(len(pool))[:n].tolist()
        return result


def _farthest_points(X: torch.Tensor, anchors: torch.Tensor, n: int, rng: np.random.Generator) -> list[int]:
    """Greedy max-min distance picks (the max-variance rule under an isotropic prior kernel)."""
    if len(anchors):
        dist = torch.cdist(X, anchors).min(1).values
    else:
        # Nothing to keep away from yet: all points tie, so a seeded random one goes first. It
        # alone gets inf; the rest the largest finite value (inf + 1 would still equal inf, and
        # argmax would take row 0 whatever the seed).
        dist = torch.full((len(X),), torch.finfo(X.dtype).max, dtype=X.dtype)
        dist[int(rng.integers(len(X)))] = float("inf")
    picks: list[int] = []
    for _ in range(n):
        check_time()
        i = int(torch.argmax(dist))
        picks.append(i)
        dist = torch.minimum(dist, torch.cdist(X, X[i : i + 1]).squeeze(1))
        dist[picks] = -1.0
    return picks


def _first(predictors: PredictorArg) -> Predictor | None:
    if predictors is None or isinstance(predictors, Predictor):
        return predictors
    return predictors[0] if len(predictors) else None


class _GreedyVarianceStrategy(SamplingStrategy):
    """Greedy GP design: pick the best candidate by :meth:`_gain`, condition, repeat.

    The posterior covariance of a GP does not depend on the values measured, so a whole batch
    can be chosen before any of it is measured, and a batch does not pile up in one region.
    Needs a fitted predictor with :class:`~predictors.SupportsCovariance` (GP-NAS, transfer). A
    target with no values yet (cold start) uses, if given one, an unfitted predictor with
    :class:`~predictors.SupportsPriorCovariance`, e.g. a transfer predictor fitted with
    :meth:`~predictors.TransferPredictor.fit_sources`: its prior covariance relates architectures
    the known chips or tasks see alike. Without one the picks are points far apart in the
    one-hot code.

    Args:
        pool_size: Candidate pool size when none is given.
        prior_noise: Observation-noise variance assumed at a cold start, on the target's
            standardised scale (its prior variance there is a few units: the embedding's linear
            part, the residual and the unit bias). Small: a latency measurement repeats to a few
            percent, while architectures differ by tens of percent. (On the few-shot latency
            benchmark's devices outside HELP's six, 0.01 and 0.1 tie.)
    """

    uses_transfer_prior = True

    def __init__(self, pool_size: int = 2000, prior_noise: float = 0.01) -> None:
        super().__init__(pool_size)
        self.prior_noise = prior_noise

    @staticmethod
    @abstractmethod
    def _gain(cov: torch.Tensor, noise: float) -> torch.Tensor:
        """Value of measuring each candidate next, shape ``m``, from the ``m x m`` covariance."""

    def _select(
        self,
        space: SearchSpace,
        predictors: PredictorArg,
        measured: list[Subnet],
        n: int,
        pool: list[Subnet],
        rng: np.random.Generator,
    ) -> list[int]:
        predictor = _first(predictors)
        if (
            isinstance(predictor, SupportsPriorCovariance)
            and predictor.n_train == 0
            and predictor.has_prior_covariance
        ):
            # Values already taken condition the prior; the covariance does not depend on them.
            m = len(measured)
            joint = predictor.prior_covariance(predictor.encode([*measured, *pool]))
            cov, noise = joint[m:, m:], self.prior_noise
            if m:
                K_mm = joint[:m, :m] + noise * torch.eye(m, dtype=joint.dtype)
                cov = cov - joint[m:, :m] @ torch.linalg.solve(K_mm, joint[:m, m:])
        elif isinstance(predictor, SupportsCovariance) and predictor.n_train > 0:
            cov = predictor.posterior_covariance(predictor.encode(pool))
            noise = max(predictor.noise_variance(), 1e-9)
        else:
            X = space.encode(pool)
            anchors = space.encode(measured) if measured else X[:0]
            return _farthest_points(X, anchors, n, rng)
        picks: list[int] = []
        for _ in range(n):
            check_time()
            gain = self._gain(cov, noise)
            gain[picks] = -float("inf")
            i = int(torch.argmax(gain))
            picks.append(i)
            column = cov[:, i].clone()
            cov = cov - torch.outer(column, column) / (column[i] + noise)
        return picks


@_register("max-variance", "mutual-information")
class MaxVarianceStrategy(_GreedyVarianceStrategy):
    """GP-NAS mutual-information sampling: greedily maximise ``I(y_S; f)``.

    For a GP, ``I(y_S; f) = 1/2 log det(I + Sigma_S / noise)``; its greedy maximiser takes the
    candidate with the largest posterior variance. It favours the edges of the space (at a cold
    start with a transfer prior, a D-optimal design in the source embedding).
    """

    @staticmethod
    def _gain(cov: torch.Tensor, noise: float) -> torch.Tensor:
        return cov.diagonal().clone()


@_register("integrated-variance", "alc")
class IntegratedVarianceStrategy(_GreedyVarianceStrategy):
    """Active learning Cohn (ALC): greedily minimise the posterior variance summed over the pool.

    Measuring candidate ``i`` lowers the total variance by ``||Sigma[:, i]||^2 / (Sigma_ii +
    noise)``: it prefers candidates that are uncertain *and* like many others, so the picks
    represent the bulk of the pool rather than its edges. That suits predicting (ranking) the
    whole pool, e.g. the first measurements of a new chip.
    """

    @staticmethod
    def _gain(cov: torch.Tensor, noise: float) -> torch.Tensor:
        return cov.pow(2).sum(0) / (cov.diagonal() + noise)


class _AdditiveCost:
    """A per-layer additive model of a space's analytic cost, fitted from a few probe subnets.

    ``cost(sub) ~= base[depth] + sum over active layers l and dimensions k of delta[l, k, choice]``,
    with ``base`` the cost of the all-first-choice subnet of each depth and ``delta`` the change
    from switching one choice of the deepest such subnet. Exact where every choice adds its own
    term (UFO: heads and FFN width of a layer add separately); elsewhere only a guide for drawing
    the pool, whose costs are then computed exactly. Costs are kept divided by the model's range,
    so tilts are on the same scale for every space.

    Args:
        space: A space whose :meth:`~supernet.SearchSpace.macs` is implemented.

    Raises:
        NotImplementedError: If the space has no analytic cost.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        n_dims, depth = len(space.dimensions), space.max_depth
        sizes = np.array([len(dim) for dim in space.dimensions])

        def first_choices(d: int) -> list[list[int]]:
            return [[0] * n_dims for _ in range(d)]

        def subnet(layers: list[list[int]]) -> Subnet:
            return Subnet(space.name, len(layers), tuple(tuple(layer) for layer in layers))

        probes, slots = [], []
        for layer in range(depth):
            for k, size in enumerate(sizes):
                for choice in range(1, size):
                    layers = first_choices(depth)
                    layers[layer][k] = choice
                    probes.append(subnet(layers))
                    slots.append((layer, k, choice))
        base = space.macs([subnet(first_choices(d)) for d in space.depths])
        costs = space.macs(probes) if probes else np.empty(0)
        delta = np.zeros((depth, n_dims, int(sizes.max())))
        for (layer, k, choice), cost in zip(slots, costs, strict=True):
            delta[layer, k, choice] = cost - base[-1]
        # Padding for dimensions with fewer values: never drawn, never an extreme.
        self.valid = np.arange(delta.shape[2])[None, None, :] < sizes[None, :, None]
        lo_layers = np.where(self.valid, delta, np.inf).min(2).sum(1)
        hi_layers = np.where(self.valid, delta, -np.inf).max(2).sum(1)
        lows = base + np.array([lo_layers[:d].sum() for d in space.depths])
        highs = base + np.array([hi_layers[:d].sum() for d in space.depths])
        self.offset = float(lows.min())
        self.scale = float(highs.max() - lows.min()) or 1.0
        self.base = (base - self.offset) / self.scale
        self.delta = delta / self.scale
        self.depths = np.array(space.depths)

    def _tilted(self, tilts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per tilt ``t``: choice probabilities (``T x L x K x V``), depth probabilities and the
        mean cost under ``p(sub) ~ exp(t * cost(sub))`` (uniform over the space at ``t = 0``)."""
        logits = np.where(self.valid, tilts[:, None, None, None] * self.delta, -np.inf)
        top = logits.max(3, keepdims=True)
        weights = np.exp(logits - top)
        log_z = np.log(weights.sum(3)) + top[..., 0]  # T x L x K
        probs = weights / weights.sum(3, keepdims=True)
        layer_mean = (probs * np.where(self.valid, self.delta, 0.0)).sum(3).sum(2)  # T x L
        # Cumulative sums over the first d layers, for every allowed depth d.
        cum_log_z = np.concatenate([np.zeros((len(tilts), 1)), np.cumsum(log_z.sum(2), 1)], 1)[:, self.depths]
        cum_mean = np.concatenate([np.zeros((len(tilts), 1)), np.cumsum(layer_mean, 1)], 1)[:, self.depths]
        depth_logits = tilts[:, None] * self.base[None, :] + cum_log_z
        depth_probs = np.exp(depth_logits - depth_logits.max(1, keepdims=True))
        depth_probs /= depth_probs.sum(1, keepdims=True)
        mean = (depth_probs * (self.base[None, :] + cum_mean)).sum(1)
        return probs, depth_probs, mean

    def tilts_for(self, targets: np.ndarray) -> np.ndarray:
        """Tilts whose mean model cost is each of ``targets`` (on the 0..1 scale).

        The mean cost of an exponential tilt grows with the tilt (its derivative is the cost's
        variance), so bisection finds each one.
        """
        bound = 1e3 * self.delta.shape[0] * self.delta.shape[1]
        lo, hi = np.full(len(targets), -bound), np.full(len(targets), bound)
        for _ in range(100):
            mid = (lo + hi) / 2
            below = self._tilted(mid)[2] < targets
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        result: np.ndarray = (lo + hi) / 2
        return result

    def draw(self, tilt: float, n: int, rng: np.random.Generator) -> list[Subnet]:
        """``n`` subnets (with repeats) from the tilted distribution."""
        probs, depth_probs, _ = self._tilted(np.array([tilt]))
        depths = self.depths[rng.choice(len(self.depths), size=n, p=depth_probs[0])]
        cdf = np.cumsum(probs[0], 2)  # L x K x V
        u = rng.random((n, *cdf.shape[:2], 1))
        choices = np.minimum((u > cdf[None]).sum(3), self.valid.sum(2) - 1)
        return self.space.from_choice_matrix(choices, depths)


def _stratified_picks(costs: np.ndarray, done: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``n`` of ``costs`` that, with the costs ``done`` already measured, fill the cost
    range evenly: one per stratum of ``n + len(done)`` equal-width strata, emptiest first."""
    every = np.concatenate([costs, done])
    lo, hi = float(every.min()), float(every.max())
    k = n + len(done)
    width = (hi - lo) / k
    if width <= 0:  # every candidate costs the same: nothing to stratify
        result: list[int] = rng.permutation(len(costs))[:n].tolist()
        return result

    def stratum_of(values: np.ndarray) -> np.ndarray:
        return np.minimum(((values - lo) / width).astype(np.int64), k - 1)

    stratum = stratum_of(costs)
    filled = np.bincount(stratum_of(done), minlength=k)
    left = np.bincount(stratum, minlength=k)
    centres = lo + (np.arange(k) + 0.5) * width
    gap = np.full(k, np.inf)  # distance of each stratum's centre to the nearest chosen cost
    dist = np.full(len(costs), np.inf)  # the same for each candidate
    for c in done:
        gap, dist = np.minimum(gap, np.abs(centres - c)), np.minimum(dist, np.abs(costs - c))
    free = np.ones(len(costs), dtype=bool)
    picks: list[int] = []
    for _ in range(n):
        check_time()
        # Emptiest stratum first; among equally empty ones the one farthest from every chosen
        # cost, so a batch cut short still spans the range (cheapest, costliest, middle, ...).
        order = np.lexsort((np.arange(k), -gap, filled))
        b = int(next(s for s in order if left[s]))
        members = np.flatnonzero(free & (stratum == b))
        if filled[b] == 0 and k > 1 and b in (0, k - 1):
            # The end strata hold the range's ends: take the end itself.
            i = int(members[np.argmin(costs[members]) if b == 0 else np.argmax(costs[members])])
        elif filled[b] == 0:
            i = int(rng.choice(members))
        else:  # a second pick in a stratum (the others are empty of candidates): spread within it
            i = int(members[np.argmax(dist[members])])
        picks.append(i)
        free[i] = False
        filled[b] += 1
        left[b] -= 1
        gap, dist = np.minimum(gap, np.abs(centres - costs[i])), np.minimum(dist, np.abs(costs - costs[i]))
    return picks


@_register("cost-stratified")
class CostStratifiedStrategy(SamplingStrategy):
    """A new chip's first measurements, spread evenly over the analytic cost range.

    Latency follows the analytic cost (``space.macs``) closely, but uniformly drawn subnets all
    cost about the same (ufo-track2: its subnets run from 11.5 to 17.6 GMACs, 30 uniform ones span
    about 45% of that), so a latency model fitted on them cannot see the slope. This strategy
    ignores ``predictors``.

    The cost range ``[lo, hi]`` (of the candidates and the measured subnets together) is cut into
    ``n + len(measured)`` equal-width strata, equal in cost rather than in pool quantiles, because
    the aim is even coverage of the cost axis and not of whatever pool was drawn. Picks go to the
    emptiest strata first (ties: the stratum farthest from every chosen cost), one random
    candidate (seeded) per stratum; the first and last strata, when empty, give their cheapest and
    costliest candidate, so with nothing measured and ``n >= 2`` the range's ends are picked
    first. Where candidates run out in some strata, further picks go to the least filled strata,
    away from the costs already chosen.

    Without ``candidates`` the pool covers the whole cost range instead of being uniform: the
    space's cheapest and costliest subnets (``space.cost_extremes()``) plus, for each of
    ``n_tilts`` cost levels spread over the range, subnets drawn from ``p(sub) ~ exp(t * cost)``
    with the tilt ``t`` whose mean cost is that level (the cost there is a per-layer additive
    model from probe subnets, :class:`_AdditiveCost`; the picks use the exact costs). Spaces of
    at most ``exhaustive_limit`` subnets are costed whole instead.

    A space without an analytic cost (``macs`` raises NotImplementedError) falls back to the
    model-free cold start of the other strategies: a uniform pool and points far apart in the
    one-hot code (greedy max-min distance, away from the measured subnets).

    Args:
        pool_size: Size of the pool drawn when ``select`` gets no candidates.
        n_tilts: Number of cost levels the default pool is drawn at.
        exhaustive_limit: Spaces with at most this many subnets use all of them as the pool.
    """

    def __init__(self, pool_size: int = 2000, n_tilts: int = 32, exhaustive_limit: int = 20_000) -> None:
        super().__init__(pool_size)
        if n_tilts < 1:
            raise ValueError(f"n_tilts must be >= 1, got {n_tilts}")
        self.n_tilts = n_tilts
        self.exhaustive_limit = exhaustive_limit

    def default_pool(self, space: SearchSpace, size: int, seed: int | None) -> list[Subnet]:
        try:
            model = _AdditiveCost(space)
        except NotImplementedError:  # no analytic cost: the uniform pool of the cold-start fallback
            return super().default_pool(space, size, seed)
        if space.cardinality <= max(size, self.exhaustive_limit):
            return list(space.enumerate())
        rng = np.random.default_rng(seed)
        pool: dict[Subnet, None] = dict.fromkeys(space.cost_extremes())
        targets = (np.arange(self.n_tilts) + 0.5) / self.n_tilts
        per_tilt = -(-size // self.n_tilts)
        for tilt in model.tilts_for(targets):
            pool.update(dict.fromkeys(model.draw(float(tilt), per_tilt, rng)))
        # Strong tilts repeat subnets; top up uniformly so that the pool still holds ``size``.
        for sub in space.sample(size, seed=seed):
            if len(pool) >= size:
                break
            pool.setdefault(sub)
        return list(pool)[:size]  # the extremes come first

    def _select(
        self,
        space: SearchSpace,
        predictors: PredictorArg,
        measured: list[Subnet],
        n: int,
        pool: list[Subnet],
        rng: np.random.Generator,
    ) -> list[int]:
        try:
            costs = space.macs(pool)
        except NotImplementedError:
            X = space.encode(pool)
            anchors = space.encode(measured) if measured else X[:0]
            return _farthest_points(X, anchors, n, rng)
        done = np.asarray(space.macs(measured) if measured else np.empty(0), dtype=np.float64)
        return _stratified_picks(np.asarray(costs, dtype=np.float64), done, n, rng)


def _botorch_model(predictor: Predictor) -> SingleTaskGP:
    """A copy of a fitted predictor's GP that takes ``onehot+ordinal`` encodings as inputs."""
    if not isinstance(predictor, SupportsBotorchModel) or predictor.n_train == 0:
        raise ValueError("qlognehvi needs fitted gpnas or gpnas-transfer predictors")
    return predictor.botorch_model()


@_register("qlognehvi")
class QLogNEHVIStrategy(SamplingStrategy):
    """botorch's qLogNoisyExpectedHypervolumeImprovement over (score, -latency).

    Needs two fitted GP predictors, ``(score, latency)``; both objectives are taken on the
    predictors' standardised transformed scales (monotone, so the Pareto set is the same).
    The candidates are scored jointly with sequential greedy batch selection
    (``optimize_acqf_discrete``); the reference point lies 10% of the observed range below the
    worst measured value of each objective.

    Args:
        pool_size: Candidate pool size when none is given.
        mc_samples: Quasi-Monte-Carlo samples of the acquisition.
    """

    def __init__(self, pool_size: int = 2000, mc_samples: int = 64) -> None:
        super().__init__(pool_size)
        self.mc_samples = mc_samples

    def _select(
        self,
        space: SearchSpace,
        predictors: PredictorArg,
        measured: list[Subnet],
        n: int,
        pool: list[Subnet],
        rng: np.random.Generator,
    ) -> list[int]:
        if isinstance(predictors, Predictor) or predictors is None or len(predictors) != 2:
            raise ValueError("qlognehvi needs two fitted predictors: (score, latency)")
        models = [_botorch_model(predictor) for predictor in predictors]
        if not measured:
            raise ValueError("qlognehvi needs the measured subnets as its baseline")
        X_pool = encode_subnets(space, pool, "onehot+ordinal")
        X_base = encode_subnets(space, measured, "onehot+ordinal")
        model = ModelListGP(*models)
        objective = WeightedMCMultiOutputObjective(torch.tensor([1.0, -1.0], dtype=torch.float64))
        with torch.no_grad():
            means = torch.stack([m.posterior(X_base).mean.squeeze(-1) for m in models], -1) * torch.tensor(
                [1.0, -1.0], dtype=torch.float64
            )
        span = (means.max(0).values - means.min(0).values).clamp_min(1e-6)
        ref_point = (means.min(0).values - 0.1 * span).tolist()
        seed = int(rng.integers(2**31))
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([self.mc_samples]), seed=seed)
        acquisition = qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=ref_point,
            X_baseline=X_base,
            sampler=sampler,
            objective=objective,
            prune_baseline=True,
        )
        # Sequential greedy, one pick per call (optimize_acqf_discrete's own q > 1 loop), so that the
        # time limit is checked between picks: each scores the whole pool.
        picks: list[int] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(min(n, len(pool))):
                check_time()
                remaining = torch.ones(len(pool), dtype=torch.bool)
                remaining[picks] = False
                rows = torch.nonzero(remaining).squeeze(-1)
                chosen, _ = optimize_acqf_discrete(acquisition, q=1, choices=X_pool[rows], max_batch_size=256)
                best = int(rows[int(torch.nonzero((X_pool[rows] == chosen).all(-1))[0])])
                picks.append(best)
                acquisition.set_X_pending(X_pool[picks])
        return picks
