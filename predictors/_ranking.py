"""A linear model on the one-hot code trained with a pairwise ranking loss (soft Kendall tau).

Kendall tau counts concordant pairs; least squares fits values. ``ridge-rank`` maximises a smooth
surrogate of tau instead: the weighted logistic (RankNet) loss over all training pairs,
``sum_{i,j: y_i > y_j} |z_i - z_j| * log(1 + exp(-(s_i - s_j) / T))`` plus an L2 penalty chosen by
inner cross-validation on Kendall tau. Its scores have no scale, so a line fitted to the
out-of-fold scores maps them to the standardised (rank-Gauss) scale, and the std is the
out-of-fold residual std there: a constant, calibrated by construction.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import torch

from supernet import SearchSpace

from ._base import Predictor, default_transform
from ._optim import minimise_lbfgs
from ._transforms import OutputTransform

_PENALTIES = (1e-3, 1e-2, 1e-1)


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    value = kendalltau(a, b)[0]
    return 0.0 if not np.isfinite(value) else float(value)


def fit_pairwise(
    X: torch.Tensor, z: torch.Tensor, penalty: float, temperature: float = 0.1, maxiter: int = 100
) -> torch.Tensor:
    """Weights ``w`` (shape ``d``) of the scores ``X @ w`` minimising the weighted RankNet loss."""
    X = X.to(torch.float64)
    Xc = X - X.mean(0)
    diff = z[:, None] - z[None, :]
    weight = diff.clamp_min(0.0)  # each ordered pair once, weighted by how far apart it is
    weight = weight / weight.sum()
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        s = Xc @ w
        margin = (s[:, None] - s[None, :]) / temperature
        return (weight * torch.nn.functional.softplus(-margin)).sum() + penalty * (w**2).sum()

    minimise_lbfgs([w], loss, maxiter)
    return w.detach()


class PairwiseRankPredictor(Predictor):
    """Linear one-hot model fitted with a pairwise (soft Kendall) ranking loss.

    Args:
        space: Search space.
        metric: ``score`` or ``latency_ms``; picks the output transform.
        transform: Overrides the metric's transform.
        penalties: L2 penalty grid, chosen by inner 3-fold CV on Kendall tau.
        folds: Inner folds for the penalty and the score-to-scale line.
        seed: Seeds the folds.
    """

    features = "onehot"

    def __init__(
        self,
        space: SearchSpace,
        metric: str = "score",
        transform: str | None = None,
        penalties: tuple[float, ...] = _PENALTIES,
        folds: int = 3,
        seed: int = 0,
    ) -> None:
        super().__init__(
            space, metric=metric, transform=transform, penalties=list(penalties), folds=folds, seed=seed
        )
        self.output = OutputTransform(default_transform(metric, transform))
        self.penalties, self.folds, self.seed = tuple(penalties), folds, seed

    def fit_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        # No per-point noise model: y_std is ignored (see Predictor.fit).
        z = self.output.fit_transform(y)
        X = X.to(torch.float64)
        n = len(z)
        folds = max(2, min(self.folds, n // 4)) if n >= 8 else 0
        order = np.random.default_rng(self.seed).permutation(n)
        oof = {p: torch.zeros(n, dtype=torch.float64) for p in self.penalties}
        for k in range(folds):
            test = torch.as_tensor(np.sort(order[k::folds]))
            train = torch.as_tensor(np.sort(np.setdiff1d(order, order[k::folds])))
            for p in self.penalties:
                w = fit_pairwise(X[train], z[train], p)
                # Centre on the training rows: scores on one scale across folds.
                oof[p][test] = (X[test] - X[train].mean(0)) @ w
        if folds:
            # Per-fold scores have per-fold scales; tau within the whole set is still a fair test.
            self.penalty = max(self.penalties, key=lambda p: _kendall(oof[p].numpy(), z.numpy()))
            s = oof[self.penalty]
        else:
            self.penalty = self.penalties[len(self.penalties) // 2]
        self.x_mean = X.mean(0)
        self.w = fit_pairwise(X, z, self.penalty)
        if not folds:
            s = (X - self.x_mean) @ self.w
        # Line from scores to the standardised scale, and the residual std about it.
        A = torch.stack([s, torch.ones_like(s)], 1)
        coef = torch.linalg.lstsq(A, z.unsqueeze(-1)).solution.squeeze(-1)
        self.slope, self.intercept = float(coef[0]), float(coef[1])
        resid = z - A @ coef
        self.resid_std = max(float(resid.std()), 1e-3) if n > 2 else 1.0
        self.n_train = n
        return self

    def predict_encoded(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        s = (X.to(torch.float64) - self.x_mean) @ self.w
        mean = self.slope * s + self.intercept
        return self.output.untransform(mean, torch.full_like(mean, self.resid_std))

    def _state(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "output": self.output.state(),
            "x_mean": self.x_mean,
            "w": self.w,
            "slope": self.slope,
            "intercept": self.intercept,
            "resid_std": self.resid_std,
            "penalty": self.penalty,
            "n": self.n_train,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.output = OutputTransform.from_state(state["output"])
        self.x_mean, self.w = state["x_mean"], state["w"]
        self.slope, self.intercept = state["slope"], state["intercept"]
        self.resid_std, self.penalty, self.n_train = state["resid_std"], state["penalty"], state["n"]


__all__ = ["PairwiseRankPredictor", "fit_pairwise"]
