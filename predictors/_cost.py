"""Cost-aware latency prior: a non-negative linear model of latency on a space's analytic costs.

Latency is close to ``intercept + w . costs(x)`` with ``w >= 0`` (see
:meth:`supernet.SearchSpace.costs`), a trend that a GP on the architecture code alone cannot
extrapolate from a few measured subnets to the cheapest or costliest ones. :class:`CostModel`
fits that line on the measured latencies (non-negative least squares on relative error, ridge
penalty chosen by cross-validation), and :class:`CostPriorMean` turns it into the GP's prior mean
on the standardised log scale, so the GP models only ``log(y) - log(prior)``.

The mean reads the subnets back from their one-hot code, so a predictor's inputs, its botorch
model and every caller of ``encode`` / ``predict_encoded`` stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gpytorch
import numpy as np
import torch
from scipy.optimize import nnls

from supernet import SearchSpace

# Misfit of the cost line relative to latency that a measurement's own relative error is
# compared with when weighting rows: a point whose relative std is 5% counts half as much.
_TYPICAL_MISFIT = 0.05
# Ridge penalties (on column-scaled weights, relative-error rows) tried by cross-validation.
_RIDGE_GRID = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
_MAX_FOLDS = 10
# Predicted latency never goes below this share of the median measured one (keeps log finite).
_FLOOR = 1e-3


def resolve_cost_prior(option: bool | None, metric: str, transform: str, space: SearchSpace) -> bool:
    """Whether a predictor uses the cost prior: ``None`` means on for latency when available.

    Raises:
        ValueError: If ``option`` is true but the space has no costs or the transform is not log.
    """
    available = space.has_costs and transform == "log"
    if option is None:
        return metric == "latency_ms" and available
    if option and not space.has_costs:
        raise ValueError(f"cost_prior=True but space {space.name!r} has no analytic costs")
    if option and transform != "log":
        raise ValueError(f"cost_prior=True needs the log output transform, not {transform!r}")
    return bool(option)


def decode_onehot(space: SearchSpace, X: torch.Tensor) -> np.ndarray:
    """Choice matrix (``n x max_depth x n_dims``, -1 = absent) from encodings ``X`` (``n x d``).

    Reads the first ``space.encoding_dim("onehot")`` columns, the layout of
    :meth:`supernet.SearchSpace.encode`: per layer position, per dimension, one column per value
    and (variable-depth spaces) an ``absent`` column.
    """
    absent = 1 if space.variable_depth else 0
    sizes = [len(dim) + absent for dim in space.dimensions]
    onehot = X[:, : space.encoding_dim("onehot")].detach().cpu().numpy()
    blocks = onehot.reshape(len(X), space.max_depth, sum(sizes))
    starts = np.cumsum([0, *sizes[:-1]])
    codes = np.stack(
        [blocks[:, :, s : s + size].argmax(-1) for s, size in zip(starts, sizes, strict=True)], -1
    )
    limits = np.array([len(dim) for dim in space.dimensions])
    absent_layer = (codes >= limits).any(-1, keepdims=True)
    return np.where(absent_layer, -1, codes)


@dataclass
class CostModel:
    """``latency = max(weights . [1, costs], floor)`` in milliseconds, with ``weights >= 0``.

    Attributes:
        weights: Shape ``1 + m``: intercept (ms) and one weight per cost column (ms per unit).
        floor: Smallest predicted latency (ms).
        out_of_fold: After :meth:`fit`, each training point's latency (ms, shape ``n``) predicted by
            the line fitted without its cross-validation fold; not serialised.
        fold_weights: Shape ``g x (1 + m)``: the line refitted without each of its ``g``
            cross-validation folds (what :meth:`log_variance` reads), or None (a line saved
            before they were kept).
    """

    weights: np.ndarray
    floor: float
    out_of_fold: np.ndarray | None = None
    fold_weights: np.ndarray | None = None

    @classmethod
    def fit(cls, costs: np.ndarray, y: np.ndarray, y_std: np.ndarray | None = None) -> CostModel:
        """Fit on cost rows ``costs`` (``n x m``) and latencies ``y`` (``n``, ms).

        Minimises the squared *relative* error (latency errors are multiplicative) subject to
        non-negative weights, with a ridge penalty on the cost weights (not the intercept)
        chosen by k-fold cross-validation, so ten points and a dozen columns do not overfit.
        ``y_std`` (``n``, ms) down-weights uncertain measurements.

        Raises:
            ValueError: If shapes disagree or a latency is not positive.
        """
        costs, y = np.asarray(costs, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if costs.ndim != 2 or len(costs) != len(y):
            raise ValueError(f"costs must be {len(y)} x m, got shape {costs.shape}")
        if not (y > 0).all():
            raise ValueError("the cost prior needs positive latencies")
        A = np.hstack([np.ones((len(y), 1)), costs])
        scale = A.max(0)
        used = scale > 0  # columns that are zero on every measured subnet stay at weight 0
        rel = np.zeros(len(y)) if y_std is None else np.asarray(y_std, dtype=np.float64) / y
        row_weight = 1.0 / np.sqrt(1.0 + (rel / _TYPICAL_MISFIT) ** 2)
        rows = A[:, used] / scale[used] / y[:, None] * row_weight[:, None]
        target = row_weight
        penalty = _choose_ridge(rows, target)
        w_used = _ridge_nnls(rows, target, penalty)
        weights = np.zeros(A.shape[1])
        weights[used] = w_used / scale[used]
        floor = _FLOOR * float(np.median(y))
        # Each point as predicted by the line fitted without its fold: the GP's training
        # residuals must be as large as those at unmeasured subnets, or it reads the in-sample
        # fit of a dozen weights on ten points as certainty (k = 10 nasbench201: 46% of truths
        # within +-2 std with in-sample residuals).
        out_of_fold = np.empty(len(y))
        folds = _folds(len(y))
        fold_weights = np.zeros((len(folds), A.shape[1]))
        for k, held in enumerate(folds):
            keep = np.setdiff1d(np.arange(len(y)), held)
            w = _ridge_nnls(rows[keep], target[keep], penalty)
            out_of_fold[held] = (A[held][:, used] / scale[used]) @ w
            fold_weights[k, used] = w / scale[used]
        return cls(weights, floor, np.maximum(out_of_fold, floor), fold_weights)

    def predict(self, costs: np.ndarray) -> np.ndarray:
        """Latency (ms) for cost rows ``costs`` (``n x m``), shape ``n``."""
        result: np.ndarray = np.maximum(self.weights[0] + np.asarray(costs) @ self.weights[1:], self.floor)
        return result

    def log_variance(self, costs: np.ndarray) -> np.ndarray:
        """Variance of ``log(latency)`` at cost rows ``costs`` (``n x m``) due to the line's fitted
        coefficients, shape ``n``; zeros for a line without :attr:`fold_weights`.

        The delete-a-group jackknife over the cross-validation refits: with ``g`` folds,
        ``(g - 1) / g * sum_k (log f_k(x) - mean_k log f_k(x))^2``. Non-negative least squares
        with a ridge penalty has no closed-form coefficient covariance (the bound weights have
        none), while the jackknife needs only the refits :meth:`fit` makes anyway. Where the
        measurements are noisy or few, the folds' lines disagree and the variance grows;
        between the measured costs it is small, beyond them it grows with the extrapolation.
        """
        costs = np.asarray(costs, dtype=np.float64)
        if self.fold_weights is None or len(self.fold_weights) < 2:
            return np.zeros(len(costs))
        g = len(self.fold_weights)
        lines = self.fold_weights[:, 0][:, None] + self.fold_weights[:, 1:] @ costs.T  # g x n
        logs = np.log(np.maximum(lines, self.floor))
        result: np.ndarray = (g - 1) / g * ((logs - logs.mean(0)) ** 2).sum(0)
        return result

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"weights": torch.as_tensor(self.weights), "floor": self.floor}
        if self.fold_weights is not None:
            state["fold_weights"] = torch.as_tensor(self.fold_weights)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CostModel:
        # Lines saved before fold_weights existed have none: their coefficients count as exact.
        folds = state.get("fold_weights")
        return cls(
            state["weights"].numpy().astype(np.float64),
            float(state["floor"]),
            fold_weights=None if folds is None else folds.numpy().astype(np.float64),
        )


def _ridge_nnls(rows: np.ndarray, target: np.ndarray, penalty: float) -> np.ndarray:
    """NNLS of ``rows @ w ~ target`` plus ``penalty * |w[1:]|^2`` (column 0, the intercept, free)."""
    if penalty > 0:
        extra = np.sqrt(penalty) * np.eye(rows.shape[1])[1:]
        rows, target = np.vstack([rows, extra]), np.concatenate([target, np.zeros(len(extra))])
    return nnls(rows, target, maxiter=50 * rows.shape[1])[0]


def _folds(n: int) -> list[np.ndarray]:
    """At most :data:`_MAX_FOLDS` seeded folds of ``range(n)`` (leave-one-out below that)."""
    return np.array_split(np.random.default_rng(0).permutation(n), min(n, _MAX_FOLDS))


def _choose_ridge(rows: np.ndarray, target: np.ndarray) -> float:
    """The ridge penalty of :data:`_RIDGE_GRID` with the least k-fold squared relative error."""
    n = len(rows)
    if n < 4:
        return _RIDGE_GRID[-1]
    folds = _folds(n)
    errors = []
    for penalty in _RIDGE_GRID:
        total = 0.0
        for held in folds:
            keep = np.setdiff1d(np.arange(n), held)
            w = _ridge_nnls(rows[keep], target[keep], penalty)
            total += float(((rows[held] @ w - target[held]) ** 2).sum())
        errors.append(total)
    return _RIDGE_GRID[int(np.argmin(errors))]


class CostPriorMean(gpytorch.means.Mean):
    """GP prior mean ``c + log(CostModel(x)) / scale`` on the standardised log-latency scale.

    ``c`` is a learned constant (as in ``ConstantMean``); ``scale`` is the output transform's
    standardisation scale. Inputs are encodings whose first columns are the one-hot code.

    Args:
        space: Search space whose costs the model reads.
        model: The fitted cost line.
        scale: Standardisation scale of the log transform.
    """

    def __init__(self, space: SearchSpace, model: CostModel, scale: float) -> None:
        super().__init__()
        self.space = space
        self.register_parameter("raw_constant", torch.nn.Parameter(torch.zeros((), dtype=torch.float64)))
        self.register_buffer("weights", torch.as_tensor(model.weights, dtype=torch.float64))
        self.register_buffer("floor", torch.tensor(model.floor, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64))

    @property
    def constant(self) -> torch.Tensor:
        result: torch.Tensor = self.raw_constant
        return result

    @property
    def cost_model(self) -> CostModel:
        return CostModel(self.weights.detach().numpy().astype(np.float64), float(self.floor))

    def log_prior(self, X: torch.Tensor) -> torch.Tensor:
        """``log(CostModel(x)) / scale`` for encodings ``X`` (``... x d``), shape ``...``."""
        flat = X.reshape(-1, X.shape[-1])
        costs = self.space.choice_costs(decode_onehot(self.space, flat))
        latency = self.cost_model.predict(costs)
        out = torch.as_tensor(np.log(latency), dtype=X.dtype) / self.scale.to(X.dtype)
        result: torch.Tensor = out.reshape(X.shape[:-1])
        return result

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.log_prior(X) + self.raw_constant.to(X.dtype)
        return result


__all__ = ["CostModel", "CostPriorMean", "decode_onehot", "resolve_cost_prior"]
