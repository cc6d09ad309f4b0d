"""Active sampling: which subnets to measure next.

Every strategy has one signature::

    create_strategy(name).select(space, predictors, measured, n, candidates=None, seed=None)

and returns ``n`` distinct subnets from ``candidates`` (default: a uniform pool of
``pool_size`` subnets of ``space``) that are not in ``measured``.
"""

from __future__ import annotations

import copy
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms.input import InputTransform
from botorch.optim import optimize_acqf_discrete
from botorch.sampling import SobolQMCNormalSampler

from supernet import SearchSpace, Subnet

from ._base import Predictor, encode_subnets
from ._gp import GPNASPredictor
from ._transfer import TransferPredictor

PredictorArg = Predictor | Sequence[Predictor] | None
_STRATEGIES: dict[str, type[SamplingStrategy]] = {}


def _register(name: str, *aliases: str):
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
    ``integrated-variance`` / ``alc``, ``qlognehvi``).

    Raises:
        ValueError: If ``name`` is unknown.
    """
    if name not in _STRATEGIES:
        raise ValueError(f"unknown sampling strategy {name!r}; known: {', '.join(list_strategies())}")
    return _STRATEGIES[name](**options)


class SamplingStrategy(ABC):
    """Chooses the next subnets to measure.

    Args:
        pool_size: Size of the uniform candidate pool drawn when ``select`` gets no candidates.
    """

    name: ClassVar[str] = ""
    #: Whether a cold start can use a sources-only transfer model (``TransferPredictor.fit_sources``).
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
            predictors: Fitted predictor(s) of the campaign; ``random`` ignores them,
                ``max-variance`` and ``integrated-variance`` use the first, ``qlognehvi`` needs
                ``(score, latency)``.
                ``None`` (cold start) makes the model-based strategies spread the picks out.
            measured: Subnets already measured; never picked again.
            n: How many to pick.
            candidates: Pool to pick from; default ``pool_size`` uniform samples of ``space``.
            seed: Seeds the pool, random picks and Monte-Carlo samples.

        Raises:
            ValueError: If fewer than ``n`` unmeasured candidates exist.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if candidates is None:
            size = min(space.cardinality, max(self.pool_size, n + len(measured)))
            candidates = space.sample(size, seed=seed)
        done = set(measured)
        pool = list(dict.fromkeys(c for c in candidates if c not in done))
        for sub in pool:
            space.validate(sub)
        if len(pool) < n:
            raise ValueError(f"only {len(pool)} unmeasured candidates for n={n}")
        if n == 0:
            return []
        picks = self._select(space, predictors, list(measured), n, pool, np.random.default_rng(seed))
        return [pool[i] for i in picks]

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

    def _select(self, space, predictors, measured, n, pool, rng) -> list[int]:
        return rng.permutation(len(pool))[:n].tolist()


def _farthest_points(X: torch.Tensor, anchors: torch.Tensor, n: int, rng: np.random.Generator) -> list[int]:
    """Greedy max-min distance picks (the max-variance rule under an isotropic prior kernel)."""
    if len(anchors):
        dist = torch.cdist(X, anchors).min(1).values
    else:
        dist = torch.full((len(X),), float("inf"), dtype=X.dtype)
        dist[int(rng.integers(len(X)))] = float("inf") + 1  # random first pick
    picks: list[int] = []
    for _ in range(n):
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
    Needs a fitted GP-NAS or transfer predictor. A target with no values yet (cold start) uses,
    if given one, a transfer predictor fitted with :meth:`~predictors.TransferPredictor.fit_sources`:
    its prior covariance relates architectures the known chips or tasks see alike. Without one
    the picks are points far apart in the one-hot code.

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

    def _select(self, space, predictors, measured, n, pool, rng) -> list[int]:
        predictor = _first(predictors)
        if isinstance(predictor, TransferPredictor) and predictor.n_train == 0 and predictor.sources:
            # Values already taken condition the prior; the covariance does not depend on them.
            m = len(measured)
            joint = predictor.prior_covariance(predictor.encode([*measured, *pool]))
            cov, noise = joint[m:, m:], self.prior_noise
            if m:
                K_mm = joint[:m, :m] + noise * torch.eye(m, dtype=joint.dtype)
                cov = cov - joint[m:, :m] @ torch.linalg.solve(K_mm, joint[:m, m:])
        elif isinstance(predictor, GPNASPredictor | TransferPredictor) and predictor.n_train > 0:
            cov = predictor.posterior_covariance(predictor.encode(pool))
            noise = max(predictor.noise, 1e-9)
        else:
            X = space.encode(pool)
            anchors = space.encode(measured) if measured else X[:0]
            return _farthest_points(X, anchors, n, rng)
        picks: list[int] = []
        for _ in range(n):
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


class _AppendSourceEmbedding(InputTransform, torch.nn.Module):
    """Input transform that appends a transfer predictor's source embedding at evaluation time.

    A transfer predictor's target GP sees ``[encoding | embedding]``; with this transform its
    botorch model takes the plain encoding, like a single-task model, so both objectives can sit
    in one :class:`ModelListGP` (which keeps botorch's cached-root fast path for qLogNEHVI).
    """

    def __init__(self, predictor: TransferPredictor) -> None:
        super().__init__()
        self.predictor = predictor
        self.transform_on_train = False
        self.transform_on_eval = True
        self.transform_on_fantasize = True

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        flat = X.reshape(-1, X.shape[-1])
        with torch.no_grad():
            embedding = self.predictor.source_embedding(flat)
        return torch.cat([X, embedding.reshape(*X.shape[:-1], -1)], dim=-1)


def _botorch_model(predictor: Predictor) -> SingleTaskGP:
    """A copy of a fitted predictor's GP that takes ``onehot+ordinal`` encodings as inputs."""
    if isinstance(predictor, TransferPredictor) and predictor.n_train:
        assert predictor.target is not None and predictor.target.model is not None
        model = copy.deepcopy(predictor.target.model)
        if predictor.sources:
            model.input_transform = _AppendSourceEmbedding(predictor)
        return model
    if isinstance(predictor, GPNASPredictor) and predictor.model is not None:
        return copy.deepcopy(predictor.model)
    raise ValueError("qlognehvi needs fitted gpnas or gpnas-transfer predictors")


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

    def _select(self, space, predictors, measured, n, pool, rng) -> list[int]:
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen, _ = optimize_acqf_discrete(
                acquisition, q=n, choices=X_pool, max_batch_size=256, unique=True
            )
        # Map the chosen encodings back to pool rows (encodings are unique per subnet).
        index = {tuple(row.tolist()): i for i, row in enumerate(X_pool)}
        return [index[tuple(row.tolist())] for row in chosen]
