"""Multi-task GP-NAS: layer weights shared by all tasks (or devices), one GP head per task.

Two stages, both by marginal likelihood:

1. **Shared layer weights.** Every column with enough values (the target and its related
   tasks) is modelled as a Bayesian linear function of the one-hot code,
   ``z_t = X diag(v) b_t + noise_t`` with ``b_t ~ N(0, a_t I)``, where the per-(layer, dimension)
   weights ``v`` are common to all columns and each column has its own scale ``a_t`` and noise.
   ``v`` says how much each layer's choices matter; one task's 320 values estimate it poorly,
   eight tasks' 2,560 estimate it well (Woodbury identities keep each step ``O(T d^3)``).
2. **Per-task head.** The target column gets a GP-NAS model whose kernel is
   ``s * GroupLinear(v frozen) + s_h * Hamming``: the shared layer weights, a learned scale,
   and an interaction term of its own, with the usual GP posterior (mean, calibrated std).

Fitted with :meth:`fit` (one column) stage 1 sees the target alone and the model is single-task
GP-NAS with learned layer weights. :meth:`fit_multi` uses every column of ``Y``; a related
column helps even where the target is not measured (the few-shot case: the other tasks measured
on the whole pool, the target on 50 of its subnets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import gpytorch
import numpy as np
import torch
from gpytorch.kernels import ScaleKernel

from supernet import SearchSpace, Subnet

from ._base import as_matrix, as_vector, check_y_std, register_predictor
from ._calibration import CalibratedGPNASPredictor
from ._kernels import EmbeddingLinearKernel, GroupHammingKernel, layer_kernel, onehot_groups
from ._optim import minimise_lbfgs
from ._transforms import OutputTransform


class _ColumnStats:
    """One column's data in the form its marginal likelihood is cheapest in: the ``d x d`` Gram
    matrix when there are more rows than code columns, the ``n x d`` rows otherwise (Woodbury and
    Sylvester turn the ``d x d`` system into an ``n x n`` one: a wide space's code, thousands of
    columns, costs ``n^2 d`` per evaluation instead of ``d^3``)."""

    def __init__(self, Xt: torch.Tensor, zt: torch.Tensor) -> None:
        self.n, d = Xt.shape
        self.dual = self.n < d
        self.ztz = float(zt @ zt)
        if self.dual:
            self.Xt, self.zt = Xt, zt
        else:
            self.XtX, self.Xtz = Xt.T @ Xt, Xt.T @ zt
            self.eye = torch.eye(d, dtype=Xt.dtype)

    def nll(self, root: torch.Tensor, ratio: torch.Tensor, log_noise: torch.Tensor) -> torch.Tensor:
        """Negative log marginal likelihood (up to a constant) of ``z = X diag(root^2) b + e``,
        ``b ~ N(0, a I)``, ``e ~ N(0, noise I)``, ``ratio = a / noise``."""
        if self.dual:
            scaled = self.Xt * root[None, :]
            K = torch.eye(self.n, dtype=scaled.dtype) + ratio * scaled @ scaled.T
            L = torch.linalg.cholesky(K)
            quad = self.zt @ torch.cholesky_solve(self.zt.unsqueeze(-1), L).squeeze(-1)
        else:
            M = self.eye + ratio * root[:, None] * self.XtX * root[None, :]
            L = torch.linalg.cholesky(M)
            w = torch.cholesky_solve((root * self.Xtz).unsqueeze(-1), L).squeeze(-1)
            quad = self.ztz - ratio * (root * self.Xtz) @ w
        logdet = self.n * log_noise + 2 * torch.log(torch.diagonal(L)).sum()
        return 0.5 * (quad / torch.exp(log_noise) + logdet)


def fit_shared_layer_weights(
    X: torch.Tensor,
    Z: torch.Tensor,
    groups: torch.Tensor,
    n_groups: int,
    max_rows: int = 500,
    maxiter: int = 200,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group prior variances ``v`` (mean 1) shared by the columns of ``Z``, by marginal likelihood.

    Args:
        X: ``n x d`` one-hot codes.
        Z: ``n x T`` standardised targets, NaN where unmeasured.
        groups: Shape ``d``: the group of each column of ``X``.
        n_groups: Number of groups.
        max_rows: Most rows per column used (a random subset beyond).
        maxiter: L-BFGS iterations.
        seed: Seeds the row subsets.

    Returns:
        ``v`` (shape ``n_groups``, normalised to mean 1) and each column's scale ``a_t`` and noise
        variance (shape ``T`` each; NaN for a column with fewer than 3 values).
    """
    X = X.to(torch.float64)
    rng = np.random.default_rng(seed)
    stats = []
    used = []
    for t in range(Z.shape[1]):
        rows = torch.nonzero(~torch.isnan(Z[:, t])).squeeze(-1)
        if len(rows) > max_rows:
            rows = rows[torch.as_tensor(np.sort(rng.permutation(len(rows))[:max_rows]))]
        if len(rows) < 3:
            continue
        Xt = X[rows] - X[rows].mean(0)  # the intercept profiled out
        zt = Z[rows, t] - Z[rows, t].mean()
        stats.append(_ColumnStats(Xt, zt))
        used.append(t)
    scales = torch.full((Z.shape[1],), float("nan"), dtype=torch.float64)
    noises = scales.clone()
    if not stats:
        return torch.ones(n_groups, dtype=torch.float64), scales, noises
    T = len(stats)
    g = groups.long()
    u = torch.zeros(n_groups, dtype=torch.float64, requires_grad=True)
    log_a = torch.full((T,), float(np.log(1.0 / X.shape[1])), dtype=torch.float64, requires_grad=True)
    log_noise = torch.full((T,), float(np.log(0.2)), dtype=torch.float64, requires_grad=True)

    def nll() -> torch.Tensor:
        v = torch.exp(u)
        v = v / v.mean()
        root = v[g].sqrt()
        total = 0.01 * (u**2).sum()  # centres u: v's overall scale is a_t's
        for t, column in enumerate(stats):
            total = total + column.nll(root, torch.exp(log_a[t] - log_noise[t]), log_noise[t])
        return total

    minimise_lbfgs([u, log_a, log_noise], nll, maxiter)
    with torch.no_grad():
        v = torch.exp(u)
        v = v / v.mean()
        scales[used] = torch.exp(log_a)
        noises[used] = torch.exp(log_noise)
    if not bool(torch.isfinite(v).all()):  # pragma: no cover - same
        return torch.ones(n_groups, dtype=torch.float64), scales, noises
    return v.detach(), scales, noises


def posterior_coefficients(
    X: torch.Tensor, z: torch.Tensor, column_weights: torch.Tensor, scale: float, noise: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Posterior mean of ``b`` in ``z = (X - x_mean) b + c + noise``, ``b ~ N(0, scale diag(w))``.

    Returns:
        ``b`` (shape ``d``), ``x_mean`` (``d``) and ``c`` (the mean of ``z``).
    """
    x_mean, c = X.mean(0), float(z.mean())
    Xc = X - x_mean
    n, d = Xc.shape
    if n < d:
        # The same mean from the n x n system (Woodbury): a wide code stays cheap.
        weighted = Xc * column_weights[None, :]
        A = weighted @ Xc.T + (noise / scale) * torch.eye(n, dtype=X.dtype)
        return weighted.T @ torch.linalg.solve(A, z - c), x_mean, c
    root = column_weights.sqrt()
    A = root[:, None] * (Xc.T @ Xc) * root[None, :] + (noise / scale) * torch.eye(d, dtype=X.dtype)
    b = root * torch.linalg.solve(A, root * (Xc.T @ (z - c)))
    return b, x_mean, c


@register_predictor("gpnas-multitask")
class MultiTaskGPNASPredictor(CalibratedGPNASPredictor):
    """GP-NAS whose per-layer weights are learned from all tasks (see the module docstring).

    Args:
        space: Search space.
        metric: ``score`` or ``latency_ms`` (the target's and every related column's transform).
        transform: Overrides the metric's transform.
        head: ``additive`` (shared layer weights plus a Hamming interaction term, default) or
            ``linear`` (the shared layer weights alone).
        min_related_values: Related columns with fewer values are ignored.
        embedding: If true and some related columns are measured on at least
            ``min_embedding_rows`` subnets without a target value, the head also gets a linear
            kernel on those columns' posterior means (fitted on those rows only, so at the
            target's own rows they are out-of-sample, as at a query): the target as "some mix of
            the related tasks". In the isotopic case (every column measured on the same subnets)
            there are no such rows and the head uses the shared weights only.
        calibrate: Rescale the std after every fit and update by the exact leave-one-out
            posterior (:func:`predictors._calibration.loo_std_scale`) so that ±1.645 std covers
            about 90% of new values (without it: 84% of held-out UFO values with 50 labels).
        **options: As for :class:`GPNASPredictor` (``kernel`` is fixed by ``head``).
    """

    uses_related_targets = True
    #: Fewest rows without a target value on which a related column must be measured to enter
    #: the embedding.
    min_embedding_rows = 20

    def __init__(
        self,
        space: SearchSpace,
        metric: str = "score",
        transform: str | None = None,
        head: str = "additive",
        min_related_values: int = 5,
        embedding: bool = True,
        calibrate: bool = True,
        **options: Any,
    ) -> None:
        if head not in ("additive", "linear"):
            raise ValueError(f"head must be additive or linear, got {head!r}")
        options.pop("kernel", None)
        super().__init__(space, metric=metric, transform=transform, kernel="layer-linear", **options)
        self.options.update(
            head=head, min_related_values=min_related_values, embedding=embedding, calibrate=calibrate
        )
        self.head = head
        self.min_related_values = min_related_values
        self.calibrate = calibrate
        self.use_embedding = embedding
        self.shared_weights: torch.Tensor | None = None
        # (B, x_mean, offset) of the related columns' linear posterior means, or None.
        self.embedding: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.n_related = 0
        # The related columns' mean scale after fit_sources (the cold-start prior), else None.
        self.prior_scale: float | None = None

    # ------------------------------------------------------------------ kernel
    def _build_covar(self) -> gpytorch.kernels.Kernel:
        per_layer = layer_kernel(self.space)
        if self.shared_weights is not None:
            # The shared weights are fixed; the head learns only their overall scale.
            raw = per_layer.raw_weight_constraint.inverse_transform(self.shared_weights.clamp_min(1e-8))
            per_layer.raw_weight.data = raw.to(per_layer.raw_weight)
            per_layer.raw_weight.requires_grad_(False)
        linear = ScaleKernel(per_layer)
        linear.outputscale = 0.05
        onehot = tuple(range(self.space.encoding_dim("onehot")))
        kernel: gpytorch.kernels.Kernel = linear
        if self.head == "additive":
            groups, n_dims = onehot_groups(self.space, "dimension")
            kernel = kernel + ScaleKernel(GroupHammingKernel(groups, n_dims, active_dims=onehot))
        if self.embedding is not None:
            kernel = kernel + EmbeddingLinearKernel(*self.embedding, active_dims=onehot)
        return kernel

    def _embedding(
        self,
        onehot: torch.Tensor,
        Z: torch.Tensor,
        target_rows: torch.Tensor,
        scales: torch.Tensor,
        noises: torch.Tensor,
        groups: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The related columns' linear posterior means on rows without a target value, or None."""
        assert self.shared_weights is not None
        weights = self.shared_weights[groups.long()]
        B, offsets = [], []
        x_mean = onehot[~target_rows].mean(0) if bool((~target_rows).any()) else onehot.mean(0)
        for c in range(1, Z.shape[1]):
            rows = ~torch.isnan(Z[:, c]) & ~target_rows
            if int(rows.sum()) < max(self.min_embedding_rows, self.min_related_values):
                continue
            if not (torch.isfinite(scales[c]) and torch.isfinite(noises[c])):
                continue
            b, mean_c, level = posterior_coefficients(
                onehot[rows], Z[rows, c], weights, float(scales[c]), float(noises[c])
            )
            B.append(b)
            offsets.append(level - float((mean_c - x_mean) @ b))
        if not B:
            return None
        return torch.stack(B, 1), x_mean, torch.tensor(offsets, dtype=torch.float64)

    # ------------------------------------------------------------------ fitting
    def fit_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        return self.fit_multi_encoded(X, y.reshape(-1, 1), 0, y_std)

    def fit_multi(
        self,
        subnets: Sequence[Subnet],
        Y: torch.Tensor,
        target_index: int,
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Learn the layer weights from every column of ``Y``, then fit column ``target_index``.

        Args:
            subnets: ``n`` subnets, the rows of ``Y``.
            Y: ``n x T`` values in original units, NaN where a subnet was not measured.
            target_index: The column to predict; the others are related outputs.
            y_std: Optional standard errors of the target column (shape ``n``; NaN allowed where
                the target is unmeasured), see :meth:`Predictor.fit`.
        """
        Y = as_matrix(Y, len(subnets))
        if y_std is not None:
            y_std = check_y_std(torch.nan_to_num(as_vector(y_std), nan=0.0), len(Y))
        return self.fit_multi_encoded(self.encode(subnets), Y, target_index, y_std)

    def fit_multi_encoded(
        self, X: torch.Tensor, Y: torch.Tensor, target_index: int, y_std: torch.Tensor | None = None
    ) -> Self:
        """:meth:`fit_multi` on features from :meth:`encode`."""
        X = X.to(torch.float64)
        Y = as_matrix(Y, len(X))
        if not 0 <= target_index < Y.shape[1]:
            raise ValueError(f"target_index {target_index} out of range for {Y.shape[1]} columns")
        rows = ~torch.isnan(Y[:, target_index])
        if int(rows.sum()) < 2:
            raise ValueError(f"target column {target_index} needs at least 2 values, got {int(rows.sum())}")
        columns = [target_index] + [
            j
            for j in range(Y.shape[1])
            if j != target_index and int((~torch.isnan(Y[:, j])).sum()) >= self.min_related_values
        ]
        Z = torch.full((len(Y), len(columns)), float("nan"), dtype=torch.float64)
        for c, j in enumerate(columns):
            measured = ~torch.isnan(Y[:, j])
            Z[measured, c] = OutputTransform(self.output.kind).fit_transform(Y[measured, j])
        groups, n_groups = onehot_groups(self.space, "group")
        onehot = X[:, : self.space.encoding_dim("onehot")]
        self.shared_weights, scales, noises = fit_shared_layer_weights(
            onehot, Z, groups, n_groups, max_rows=self.max_fit, seed=self.seed
        )
        self.n_related = len(columns) - 1
        # The cold-start prior of a further target: the related columns' mean scale (the
        # target's own when it has no related column).
        related = scales[1:][torch.isfinite(scales[1:])]
        self.prior_scale = float(related.mean()) if len(related) else float(scales[0])
        self.embedding = None
        if self.use_embedding:
            self.embedding = self._embedding(onehot, Z, rows, scales, noises, groups)
        target_std = None if y_std is None else y_std[rows]
        if self.embedding is None:
            super().fit_encoded(X[rows], Y[rows, target_index], target_std)
        else:
            # With the embedding the cost prior is off, as in TransferPredictor: the related
            # columns already carry the cost trend.
            configured, self.use_cost_prior = self.use_cost_prior, False
            try:
                super().fit_encoded(X[rows], Y[rows, target_index], target_std)
            finally:
                self.use_cost_prior = configured
            if self.inducing is None:
                # Keep the embedding only if it raises the marginal likelihood of the target's
                # values: on a task the related ones do not predict (cplfw on UFO) it fits noise.
                with_embedding = (self.log_evidence(), self._state())
                self.embedding = None
                super().fit_encoded(X[rows], Y[rows, target_index], target_std)
                if with_embedding[0] > self.log_evidence():
                    self._load_state(with_embedding[1])
        return self

    # ------------------------------------------------------------------ cold start (SupportsPriorCovariance)
    def fit_sources(self, subnets: Sequence[Subnet], Y: torch.Tensor) -> Self:
        """Learn the shared layer weights and the embedding from related columns only.

        The result cannot predict a target yet, but :meth:`prior_covariance` gives the target's
        covariance before its first value, so the variance strategies (``integrated-variance``)
        can design its first measurements. Fit the target afterwards with :meth:`fit_multi`.

        Args:
            subnets: ``n`` subnets, the rows of ``Y``.
            Y: ``n x S`` related columns in original units, NaN where unmeasured.

        Raises:
            ValueError: If no column has ``min_related_values`` values.
        """
        Y = as_matrix(Y, len(subnets), "S")
        columns = [
            j for j in range(Y.shape[1]) if int((~torch.isnan(Y[:, j])).sum()) >= self.min_related_values
        ]
        if not columns:
            raise ValueError(f"no related column has {self.min_related_values} or more values")
        # Column 0 stands for the (unmeasured) target: all NaN, so it shapes nothing.
        Z = torch.full((len(Y), len(columns) + 1), float("nan"), dtype=torch.float64)
        for c, j in enumerate(columns, start=1):
            measured = ~torch.isnan(Y[:, j])
            Z[measured, c] = OutputTransform(self.output.kind).fit_transform(Y[measured, j])
        groups, n_groups = onehot_groups(self.space, "group")
        onehot = self.encode(subnets)[:, : self.space.encoding_dim("onehot")]
        self.shared_weights, scales, noises = fit_shared_layer_weights(
            onehot, Z, groups, n_groups, max_rows=self.max_fit, seed=self.seed
        )
        self.prior_scale = float(torch.nanmean(scales))
        target_rows = torch.zeros(len(Y), dtype=torch.bool)
        self.embedding = (
            self._embedding(onehot, Z, target_rows, scales, noises, groups) if self.use_embedding else None
        )
        self.n_related = len(columns)
        self.model = None
        self.n_train = self.n_hyperparameter_fit = 0
        return self

    @property
    def has_prior_covariance(self) -> bool:
        """Whether :meth:`prior_covariance` can be called (after :meth:`fit_sources` or a fit)."""
        return self.shared_weights is not None and self.prior_scale is not None

    def prior_covariance(self, X: torch.Tensor) -> torch.Tensor:
        """The target's covariance at ``X`` (``m x d``) before any of its values, ``m x m``.

        The head's kernel at its prior: the shared layer weights at the related columns' mean
        scale, plus the embedding's linear kernel at unit weight, on the standardised scale.
        """
        if not self.has_prior_covariance:
            raise ValueError("prior_covariance needs fit_sources first")
        assert self.shared_weights is not None
        assert self.prior_scale is not None
        groups, _ = onehot_groups(self.space, "group")
        onehot = X.to(torch.float64)[:, : self.space.encoding_dim("onehot")]
        centred = onehot - onehot.mean(0)
        weighted = centred * self.shared_weights[groups.long()]
        K = self.prior_scale * weighted @ centred.T
        if self.embedding is not None:
            with torch.no_grad():
                F = EmbeddingLinearKernel(*self.embedding).embed(onehot)
            K = K + F @ F.T / F.shape[1]
        return K

    def log_evidence(self) -> float:
        """Log marginal likelihood of the training targets under the fitted GP (exact posterior)."""
        self._check_fitted()
        assert self.model is not None
        with torch.no_grad():
            r = self.z - self.model.mean_module(self.X)
        return float(
            -0.5 * (r @ self.alpha)
            - torch.log(torch.diagonal(self.L)).sum()
            - 0.5 * len(r) * np.log(2 * np.pi)
        )

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        state = super()._state()
        state["shared_weights"] = self.shared_weights
        state["embedding"] = None if self.embedding is None else list(self.embedding)
        state["n_related"] = self.n_related
        state["prior_scale"] = self.prior_scale
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        self.shared_weights = state["shared_weights"]
        self.embedding = None if state["embedding"] is None else tuple(state["embedding"])
        self.n_related = state["n_related"]
        self.prior_scale = state["prior_scale"]
        super()._load_state(state)


__all__ = ["MultiTaskGPNASPredictor", "fit_shared_layer_weights"]
