"""Stacked ensembles: base predictors' out-of-fold predictions combined by a GP on top."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import torch

from supernet import SearchSpace, Subnet

from ._base import (
    Predictor,
    as_matrix,
    create_predictor,
    default_transform,
    encode_subnets,
    predictor_class,
    target_column,
    training_values,
)
from ._optim import minimise_lbfgs
from ._transforms import OutputTransform

#: Base models of ``stack``: a least-squares, a ranking-loss, a GP and a tree model.
DEFAULT_BASES = ("ridge", "ridge-rank", "gpnas-layer", "gbt")
#: Base models of ``stack-multitask``: the multi-task GP in place of ridge.
MULTITASK_BASES = ("gpnas-multitask-linear", "ridge-rank", "gpnas-layer", "gbt")


def _gp_kernel(raw: torch.Tensor, A: torch.Tensor, B_: torch.Tensor, rbf: bool) -> torch.Tensor:
    """Constant + linear (+ RBF) kernel on base predictions; ``raw`` = log of linear variance,
    RBF variance, RBF lengthscale, noise."""
    K = 1.0 + torch.exp(raw[0]) * (A @ B_.T) / A.shape[1]
    if rbf:
        K = K + torch.exp(raw[1]) * torch.exp(-0.5 * torch.cdist(A, B_).pow(2) / torch.exp(raw[2]) ** 2)
    return K


def _fit_gp(P: torch.Tensor, z: torch.Tensor, rbf: bool, maxiter: int = 100) -> dict[str, Any]:
    """Exact GP on base predictions ``P`` (``n x B``) by marginal likelihood."""
    raw = torch.tensor([np.log(0.5), np.log(0.1), np.log(1.0), np.log(0.1)], dtype=torch.float64)
    raw.requires_grad_(True)
    eye = torch.eye(len(P), dtype=torch.float64)

    def nll() -> torch.Tensor:
        K = _gp_kernel(raw, P, P, rbf) + (torch.exp(raw[3]) + 1e-6) * eye
        L = torch.linalg.cholesky(K)
        alpha = torch.cholesky_solve(z.unsqueeze(-1), L)
        # Weak log-normal priors keep the hyperparameters away from degenerate corners.
        return (
            0.5 * (z.unsqueeze(-1) * alpha).sum() + torch.log(torch.diagonal(L)).sum() + 0.05 * (raw**2).sum()
        )

    minimise_lbfgs([raw], nll, maxiter)
    return {"raw": raw.detach(), "P": P, "z": z, "rbf": rbf}


def _predict_gp(gp: dict[str, Any], Pq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    raw, P, z, rbf = gp["raw"], gp["P"], gp["z"], gp["rbf"]
    noise = torch.exp(raw[3]) + 1e-6
    L = torch.linalg.cholesky(_gp_kernel(raw, P, P, rbf) + noise * torch.eye(len(P), dtype=P.dtype))
    Ks = _gp_kernel(raw, Pq, P, rbf)
    mean = Ks @ torch.cholesky_solve(z.unsqueeze(-1), L).squeeze(-1)
    V = torch.linalg.solve_triangular(L, Ks.T, upper=False)
    prior = 1.0 + torch.exp(raw[0]) * (Pq**2).sum(1) / Pq.shape[1] + (torch.exp(raw[1]) if rbf else 0.0)
    var = (prior - V.pow(2).sum(0)).clamp_min(1e-12) + noise
    return mean, var.sqrt()


class StackedEnsemblePredictor(Predictor):
    """Stacked ensemble: base predictors' out-of-fold predictions feed a GP (the final estimator).

    Each base model is fitted on ``folds - 1`` inner folds and predicts the held-out one; a GP
    on those out-of-fold predictions (standardised scale; kernel constant + linear + RBF, by
    marginal likelihood) learns how to weigh and combine them and keeps a calibrated std. At
    prediction the bases are refitted on all training data, so their predictions are a little
    better than the out-of-fold ones the GP saw, and the std errs on the wide side.

    Args:
        space: Search space.
        metric: ``score`` or ``latency_ms``.
        transform: Overrides the metric's transform.
        bases: Registered predictor names whose features are ``onehot``, ``ordinal`` or
            ``onehot+ordinal`` (no custom encoding).
        folds: Inner folds for the out-of-fold predictions.
        final: The GP's kernel on the base predictions: ``linear`` (constant + linear: a
            Bayesian weighted average) or ``linear+rbf`` (adds a smooth non-linear blend).
        seed: Seeds the folds and the bases.
    """

    features = "onehot+ordinal"

    def __init__(
        self,
        space: SearchSpace,
        metric: str = "score",
        transform: str | None = None,
        bases: tuple[str, ...] = DEFAULT_BASES,
        folds: int = 4,
        final: str = "linear",
        seed: int = 0,
    ) -> None:
        if final not in ("linear", "linear+rbf"):
            raise ValueError(f"final must be linear or linear+rbf, got {final!r}")
        super().__init__(
            space, metric=metric, transform=transform, bases=list(bases), folds=folds, final=final, seed=seed
        )
        self.final = final
        self.output = OutputTransform(default_transform(metric, transform))
        self.bases_names, self.folds, self.seed = tuple(bases), folds, seed
        probe = space.sample(2, seed=0)
        for name in self.bases_names:
            base = self._base(name)
            plain = encode_subnets(space, probe, base.features)
            mine = base.encode(probe)
            if mine.shape != plain.shape or not torch.equal(mine.to(plain), plain):
                raise ValueError(f"stack base {name!r} has its own encoding; use a plain-feature model")
        self.bases: list[Predictor] = []

    def _base(self, name: str) -> Predictor:
        options: dict[str, Any] = {"metric": self.options["metric"], "transform": self.output.kind}
        parameters = inspect.signature(predictor_class(name)).parameters
        if "seed" in parameters:
            options["seed"] = self.seed
        if "cv_std" in parameters:
            options["cv_std"] = False  # only the base's mean is used
        return create_predictor(name, self.space, **options)

    def _columns(self, base: Predictor, X: torch.Tensor) -> torch.Tensor:
        d = self.space.encoding_dim("onehot")
        if base.features == "onehot":
            return X[:, :d]
        if base.features == "ordinal":
            return X[:, d:]
        return X

    def _predictions(self, X: torch.Tensor) -> torch.Tensor:
        """Base predictions on the standardised scale, ``n x B``."""
        cols = [self.output.transform(base.predict_encoded(self._columns(base, X))[0]) for base in self.bases]
        return torch.stack(cols, 1)

    def fit_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        # No per-point noise model: y_std is ignored (see Predictor.fit).
        return self._fit(X, torch.as_tensor(y, dtype=torch.float64).reshape(-1), None, None, 0)

    def _fit(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        subnets: Sequence[Subnet] | None,
        Y: torch.Tensor | None,
        target_index: int,
    ) -> Self:
        """Fit on the target rows ``X, y``; bases that use related targets get ``subnets``/``Y``
        (all rows, the target column NaN off the target rows) restricted to the same folds."""
        X = X.to(torch.float64)
        z = self.output.fit_transform(y)
        n = len(z)
        target_rows = None if Y is None else torch.nonzero(~torch.isnan(Y[:, target_index])).squeeze(-1)

        def fit_base(name: str, rows: torch.Tensor) -> Predictor:
            base = self._base(name)
            if base.uses_related_targets and Y is not None and subnets is not None:
                assert target_rows is not None
                # The target column keeps only this fold's rows; related columns keep every row.
                Ym = Y.clone()
                hide = torch.ones(len(Y), dtype=torch.bool)
                hide[target_rows[rows]] = False
                Ym[hide, target_index] = float("nan")
                return base.fit_multi(subnets, Ym, target_index)
            return base.fit_encoded(self._columns(base, X[rows]), y[rows])

        folds = max(2, min(self.folds, n // 5))
        order = np.random.default_rng(self.seed).permutation(n)
        oof = torch.zeros(n, len(self.bases_names), dtype=torch.float64)
        for k in range(folds):
            test = torch.as_tensor(np.sort(order[k::folds]))
            train = torch.as_tensor(np.sort(np.setdiff1d(order, order[k::folds])))
            for b, name in enumerate(self.bases_names):
                base = fit_base(name, train)
                oof[test, b] = self.output.transform(base.predict_encoded(self._columns(base, X[test]))[0])
        self.bases = [fit_base(name, torch.arange(n)) for name in self.bases_names]
        self.gp = _fit_gp(oof, z, rbf=self.final == "linear+rbf")
        self.n_train = n
        return self

    def predict_encoded(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        with torch.no_grad():
            mean, std = _predict_gp(self.gp, self._predictions(X.to(torch.float64)))
        return self.output.untransform(mean, std)

    def _state(self) -> dict[str, Any]:
        self._check_fitted()
        blobs = [torch.frombuffer(bytearray(base.to_bytes()), dtype=torch.uint8) for base in self.bases]
        gp = {k: v for k, v in self.gp.items() if k != "rbf"}
        return {"output": self.output.state(), "bases": blobs, "gp": gp, "n": self.n_train}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.output = OutputTransform.from_state(state["output"])
        self.bases = [Predictor.from_bytes(bytes(blob.numpy()), self.space) for blob in state["bases"]]
        self.gp = {**state["gp"], "rbf": self.final == "linear+rbf"}
        self.n_train = state["n"]


class MultiTaskStackPredictor(StackedEnsemblePredictor):
    """:class:`StackedEnsemblePredictor` whose bases include multi-task models: :meth:`fit_multi`
    gives those bases every column (the target column only on each inner fold's rows), the others
    fit the target column alone.

    Args:
        As for :class:`StackedEnsemblePredictor`; the default bases start with
        ``gpnas-multitask-linear``.
    """

    uses_related_targets = True

    def __init__(
        self,
        space: SearchSpace,
        metric: str = "score",
        transform: str | None = None,
        bases: tuple[str, ...] = MULTITASK_BASES,
        folds: int = 4,
        final: str = "linear",
        seed: int = 0,
    ) -> None:
        super().__init__(
            space, metric=metric, transform=transform, bases=bases, folds=folds, final=final, seed=seed
        )

    def fit_multi(
        self,
        subnets: Sequence[Subnet],
        Y: torch.Tensor,
        target_index: int,
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Fit column ``target_index`` of ``Y`` (``n x T``, NaN = unmeasured); see the class doc."""
        Y = as_matrix(Y, len(subnets))
        measured, y, _ = target_column(subnets, Y, target_index)
        training_values(measured, y)
        return self._fit(self.encode(measured), y, list(subnets), Y, target_index)
