"""Transfer across chips and tasks: a new target borrows from related, better-measured outputs.

Two stages, both Gaussian processes with hyperparameters by marginal likelihood:

1. **Sources.** Every related column (another device's latency, another task's score) gets a GP on
   the architecture encoding. The columns share one set of kernel hyperparameters, fitted once on
   their consensus (the row-wise mean of the standardised columns), then each column is conditioned
   on its own measurements. The posterior means give every architecture, measured or not, an
   ``S``-dimensional embedding ``F(x)``: how the known chips or tasks see it.
2. **Target.** A GP on the few target measurements with kernel
   ``v * F(x).F(x') / S + s * k_src(x, x') + 1``: a Bayesian linear map from the source embedding
   (the target is "some mix of the known chips") plus a residual with the sources' architecture
   kernel, whose internal hyperparameters are reused (frozen), plus a unit bias that integrates the
   target's level out; only ``v``, ``s``, the mean and the noise are learned, which ten points can
   support.

This is an intrinsic-coregionalisation-style multi-output GP in which the target's coregionalisation
weights are integrated out under a Gaussian prior instead of being point-estimated.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Self

import gpytorch
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import InputTransform
from gpytorch.kernels import AdditiveKernel, ConstantKernel, LinearKernel, ScaleKernel
from gpytorch.priors import GammaPrior

from supernet import SearchSpace, Subnet
from supernet.errors import UserError

from ._base import (
    Predictor,
    as_matrix,
    as_vector,
    check_y_std,
    default_transform,
    register_predictor,
    training_values,
)
from ._cost import resolve_cost_prior
from ._gp import GPNASPredictor
from ._transforms import OutputTransform

# How the target's std is scaled by its leave-one-out residuals (see _TargetGP._loo_scale).
CALIBRATIONS = ("rms", "conformal", "conformal-upper")
_Z90 = 1.6448536269514722  # two-sided 90%
_Z80 = 1.2815515655446004  # one-sided 90%
# Source values are clipped at this many robust standard deviations from their median.
_SOURCE_CLIP = 8.0


class _TargetGP(GPNASPredictor):
    """GP-NAS on ``[encoding | source embedding]`` inputs (the transfer model's second stage)."""

    def __init__(self, space: SearchSpace, n_sources: int, calibration: str, **options: Any) -> None:
        super().__init__(space, **options)
        self.options.update(n_sources=n_sources, calibration=calibration)
        self.n_sources, self.calibration = n_sources, calibration
        self.frozen: gpytorch.kernels.Kernel | None = None

    def _build_covar(self) -> gpytorch.kernels.Kernel:
        d_enc = self.space.encoding_dim("onehot") + self.space.encoding_dim("ordinal")
        source_cols = tuple(range(d_enc, d_enc + self.n_sources))
        linear = LinearKernel(active_dims=source_cols, variance_prior=GammaPrior(2.0, 2.0))
        linear.variance = 1.0 / self.n_sources
        residual = self.frozen if self.frozen is not None else super()._build_covar()
        residual = copy.deepcopy(residual)
        for parameter in residual.parameters():
            parameter.requires_grad_(False)
        scaled = ScaleKernel(residual)
        scaled.outputscale = 0.1
        # The level of a new chip is as unknown as its shape: a fixed unit-variance bias term
        # integrates the intercept out instead of trusting the ML-II constant, which ten points
        # pin down poorly (at k = 10 it lifted the share within +-2 std from 88% to 94% on the
        # benchmark's non-HELP nasbench201 devices, ranking unchanged).
        bias = ConstantKernel()
        bias.constant = torch.tensor(1.0, dtype=torch.float64)
        bias.raw_constant.requires_grad_(False)
        return AdditiveKernel(linear, scaled, bias)

    def _loo_scale(self) -> float:
        """The std's scale from the exact leave-one-out residuals of the few target points.

        ``rms``: their root-mean-square standardised size, at least 1. ``conformal``: the
        split-conformal quantile of their absolute standardised sizes at 90% (the
        ``ceil((n + 1) 0.9)``-th smallest of ``n``) over 1.645, so the 90% interval covers the
        training points' left-out values as often as it promises, up or down.
        ``conformal-upper``: the larger of that and the same quantile of the signed sizes over
        1.2816, so the one-sided 90% bound that a budget query checks holds as well.
        """
        if self.calibration == "rms":
            return super()._loo_scale()
        mean, std = self.loo_posterior()
        signed = (self.z - mean) / std
        scale = _conformal_quantile(signed.abs()) / _Z90
        if self.calibration == "conformal-upper":
            scale = max(scale, _conformal_quantile(signed) / _Z80)
        return scale


def _conformal_quantile(values: torch.Tensor, level: float = 0.9) -> float:
    """The ``ceil((n + 1) level)``-th smallest of ``n`` values (the largest when that exceeds n)."""
    ordered = values.sort().values
    rank = min(len(ordered), math.ceil((len(ordered) + 1) * level))
    return float(ordered[rank - 1])


class _AppendSourceEmbedding(InputTransform, torch.nn.Module):
    """Input transform that appends a transfer predictor's source embedding at evaluation time.

    A transfer predictor's target GP sees ``[encoding | embedding]``; with this transform its
    botorch model takes the plain encoding, like a single-task model, so both objectives can sit
    in one :class:`~botorch.models.ModelListGP` (which keeps botorch's cached-root fast path for
    qLogNEHVI).
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


class NoRelatedTargetsError(UserError):
    """A sources-only transfer model was asked for, but no related target has enough values."""


@register_predictor("gpnas-transfer")
class TransferPredictor(Predictor):
    """Multi-output GP-NAS: predicts one target column from few values plus related columns.

    Use :meth:`fit_multi` with a matrix of all columns; plain :meth:`fit` (no related columns)
    is single-task GP-NAS.

    Args:
        space: Search space.
        metric: ``latency_ms`` or ``score``: picks each column's output transform.
        transform: Overrides the metric's transform.
        kernel: Architecture kernel of the source GPs (see :data:`predictors._kernels.KERNELS`).
        source_fit: Most consensus rows used to fit the shared source hyperparameters.
        min_source_values: Related columns with fewer values are ignored.
        outlier_mad: Robust outlier rule for the few target values (see :class:`GPNASPredictor`).
        loo_embedding: Train the target on leave-one-out source means at measured rows (see
            :meth:`_training_embedding`); if false, on the posterior means.
        robust_sources: Clip each related column at 8 robust standard deviations from its
            median before standardising it (see :meth:`_standardise_source`), so a chip with a
            few extreme rows does not squeeze its other values.
        calibration: How the target's std is scaled by the few target points' leave-one-out
            residuals (:data:`CALIBRATIONS`, see :meth:`_TargetGP._loo_scale`).
        cost_prior: The target stage's cost prior (see :class:`GPNASPredictor`). ``None``
            (default): on for latency when the space has analytic costs and no related column
            is available, off when there are sources: the source embedding already carries the
            cost trend, and a prior mean fitted on the few target points adds an error the
            embedding cannot remove (random k = 10 picks on the benchmark's non-HELP devices:
            mean Spearman fbnet 0.958 -> 0.844, nasbench201 0.969 -> 0.933 with it on).
        seed: Seeds subsets.
    """

    features = "onehot+ordinal"
    uses_related_targets = True

    def __init__(
        self,
        space: SearchSpace,
        metric: str = "score",
        transform: str | None = None,
        kernel: str = "hamming",
        source_fit: int = 300,
        min_source_values: int = 5,
        outlier_mad: float | None = 6.0,
        loo_embedding: bool = True,
        robust_sources: bool = True,
        calibration: str = "conformal-upper",
        cost_prior: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            space,
            metric=metric,
            transform=transform,
            kernel=kernel,
            source_fit=source_fit,
            min_source_values=min_source_values,
            outlier_mad=outlier_mad,
            loo_embedding=loo_embedding,
            robust_sources=robust_sources,
            calibration=calibration,
            cost_prior=cost_prior,
            seed=seed,
        )
        self.outlier_mad = outlier_mad
        self.loo_embedding = loo_embedding
        self.transform_kind = default_transform(metric, transform)
        resolve_cost_prior(cost_prior, metric, self.transform_kind, space)  # fail fast if invalid
        self.cost_prior = cost_prior
        self.robust_sources = robust_sources
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
        self.calibration = calibration
        self.kernel_name, self.source_fit = kernel, source_fit
        self.min_source_values, self.seed = min_source_values, seed
        self.source_columns: list[int] | None = None
        self.sources: list[GPNASPredictor] = []
        self._shared_kernel: gpytorch.kernels.Kernel | None = None
        self.target: GPNASPredictor | None = None
        # n_train right after the target's last hyperparameter fit (SupportsUpdate).
        self.n_hyperparameter_fit = 0

    def _gp(self, **options: Any) -> GPNASPredictor:
        return GPNASPredictor(
            self.space,
            transform="identity",
            kernel=self.kernel_name,
            cost_prior=False,
            seed=self.seed,
            **options,
        )

    # ------------------------------------------------------------------ fitting
    def fit_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        return self.fit_multi_encoded(X, y.reshape(-1, 1), 0, y_std)

    def fit_multi(
        self,
        subnets: Sequence[Subnet],
        Y: torch.Tensor,
        target_index: int,
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Fit on all columns of ``Y``; predictions are for column ``target_index``.

        Args:
            subnets: ``n`` subnets, the rows of ``Y``.
            Y: ``n x T`` values in original units, NaN where a subnet was not measured.
            target_index: The column to predict; the others are related outputs.
            y_std: Optional standard errors of the target column (shape ``n``, original units;
                entries of rows without a target value are ignored), see :meth:`Predictor.fit`.
        """
        Y = as_matrix(Y, len(subnets))
        if y_std is not None:
            # NaN standard errors are allowed where the target is unmeasured.
            y_std = torch.nan_to_num(as_vector(y_std), nan=0.0)
        return self.fit_multi_encoded(self.encode(subnets), Y, target_index, check_y_std(y_std, len(Y)))

    def fit_multi_encoded(
        self, X: torch.Tensor, Y: torch.Tensor, target_index: int, y_std: torch.Tensor | None = None
    ) -> Self:
        """:meth:`fit_multi` on features from :meth:`encode` (``y_std``: shape ``n`` or None)."""
        if not 0 <= target_index < Y.shape[1]:
            raise ValueError(f"target_index {target_index} out of range for {Y.shape[1]} columns")
        target_rows = ~torch.isnan(Y[:, target_index])
        if int(target_rows.sum()) < 2:
            raise ValueError(
                f"target column {target_index} needs at least 2 values, got {int(target_rows.sum())}"
            )
        self._fit_sources(X, Y, exclude=target_index)
        target_std = None if y_std is None else y_std[target_rows]
        return self._fit_target(X[target_rows], Y[target_rows, target_index], target_std)

    def fit_sources(self, subnets: Sequence[Subnet], Y: torch.Tensor) -> Self:
        """Fit the related columns only, for a target not measured yet.

        Raises:
            NoRelatedTargetsError: No column of ``Y`` has ``min_source_values`` values yet (a
                cold start has nothing to borrow from: spread the first picks out instead).

        The result cannot predict the target, but :meth:`prior_covariance` gives the target's
        covariance before its first value, which is what choosing its first measurements needs
        (the variance sampling strategies use it). Fit the target later with
        :meth:`refit_target`.

        Args:
            subnets: ``n`` subnets, the rows of ``Y``.
            Y: ``n x S`` values of the related columns in original units, NaN where unmeasured.
        """
        Y = as_matrix(Y, len(subnets), "S")
        self._fit_sources(self.encode(subnets), Y, exclude=None)
        if not self.sources:
            raise NoRelatedTargetsError(f"no related column has {self.min_source_values} or more values")
        self.target = None
        self.n_train = self.n_hyperparameter_fit = 0
        return self

    def _fit_sources(self, X: torch.Tensor, Y: torch.Tensor, exclude: int | None) -> None:
        """Fit one GP per related column of ``Y`` (all but ``exclude``) with shared hyperparameters."""
        observed = ~torch.isnan(Y)
        self.source_columns = [
            j
            for j in range(Y.shape[1])
            if j != exclude and int(observed[:, j].sum()) >= self.min_source_values
        ]
        self.sources = []
        self._shared_kernel = None
        if not self.source_columns:
            return
        standardised = torch.full((len(Y), len(self.source_columns)), float("nan"), dtype=torch.float64)
        for c, j in enumerate(self.source_columns):
            rows = observed[:, j]
            standardised[rows, c] = self._standardise_source(Y[rows, j])
        has_any = ~torch.isnan(standardised).all(1)
        consensus = torch.nanmean(standardised[has_any], dim=1)
        shared = self._gp(max_fit=self.source_fit).fit_encoded(X[has_any], consensus)
        assert shared.model is not None
        for c, j in enumerate(self.source_columns):
            rows = observed[:, j]
            source = self._gp()
            z = source.output.fit_transform(standardised[rows, c])
            model = source._new_model(X[rows], z)
            model.load_state_dict(shared.model.state_dict())
            source._condition(model, X[rows], z)
            self.sources.append(source)
        self._shared_kernel = shared.model.covar_module

    def _standardise_source(self, values: torch.Tensor) -> torch.Tensor:
        """A related column's values (shape ``n``) on the scale its source GP is fitted on.

        With ``robust_sources``: values further than ``_SOURCE_CLIP`` robust standard deviations
        (1.4826 MAD) from the median of the transformed values are clipped there, then the column
        is standardised as usual. A chip whose runtime skips dead graphs (raspi4 times 1.8% of
        NAS-Bench-201 cells at 0.01 ms, 2,500x below its median) would otherwise shrink every
        other value of its column towards zero and pull the consensus with it; a column without
        such rows is left as it was. The clip is far out on purpose: long tails are information
        (samsung_a50's slowest cells); at 4 robust standard deviations the designed first picks
        of four held-out chips ranked worse (Kendall 0.840 -> 0.815), at 8 they rank as without
        clipping (0.839) while raspi4's emptiest cells, up to 12 away, are still clipped.
        """
        z = OutputTransform(self.transform_kind).fit_transform(values)
        if not self.robust_sources or self.transform_kind == "rankgauss" or len(z) < 2:
            return z
        centre = z.median()
        spread = _SOURCE_CLIP * 1.4826 * (z - centre).abs().median().clamp_min(1e-3)
        clipped = torch.minimum(torch.maximum(z, centre - spread), centre + spread)
        return (clipped - clipped.mean()) / clipped.std().clamp_min(1e-12)

    def refit_target(
        self,
        subnets: Sequence[Subnet],
        y: torch.Tensor | Sequence[float],
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Refit only the target stage on new target values, keeping the fitted source GPs.

        Cheap when a chip's measurements arrive one batch at a time: the related columns have
        not changed, so their GPs are reused.

        Args:
            subnets: The subnets measured on the target.
            y: Their values (shape ``n``, original units).
            y_std: Optional standard errors of ``y`` (shape ``n``), see :meth:`Predictor.fit`.
        """
        if self.source_columns is None:
            raise ValueError("refit_target needs a model fitted with fit_multi or fit_sources first")
        y = as_vector(y)
        if len(subnets) != y.numel() or y.numel() < 2:
            raise ValueError(f"need >= 2 subnets with one value each, got {len(subnets)} and {y.numel()}")
        return self._fit_target(self.encode(subnets), y, check_y_std(y_std, y.numel()))

    def _target_options(self) -> dict[str, Any]:
        # Few target points: drop gross outliers and recalibrate the std by leave-one-out.
        return {
            "metric": self.options["metric"],
            "transform": self.transform_kind,
            "kernel": self.kernel_name,
            "outlier_mad": self.outlier_mad,
            "loo_calibrate": True,
            "cost_prior": self.cost_prior if self.cost_prior is not None or not self.sources else False,
            "seed": self.seed,
        }

    def _new_target(self) -> GPNASPredictor:
        options = self._target_options()
        if not self.sources:
            return GPNASPredictor(self.space, **options)
        target = _TargetGP(self.space, len(self.sources), self.calibration, **options)
        target.frozen = self._shared_kernel
        return target

    def _fit_target(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        target = self._new_target()
        if self.sources:
            target.fit_encoded(torch.cat([X, self._training_embedding(X)], dim=1), y, y_std)
        else:
            target.fit_encoded(X, y, y_std)
        self.target = target
        self.n_train = self.n_hyperparameter_fit = len(y)
        return self

    # ------------------------------------------------------------------ updating (SupportsUpdate)
    def update(
        self,
        subnets: Sequence[Subnet],
        y: torch.Tensor | Sequence[float],
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Condition the target stage on new target values, keeping every hyperparameter.

        :meth:`refit_target` without the refit: the source GPs stay as they are (unlike
        :meth:`fit`, which drops them), and the target GP is conditioned on ``(subnets, y)``
        under its fitted hyperparameters (see :meth:`GPNASPredictor.update_encoded`).

        Args:
            subnets: All subnets measured on the target now.
            y: Their values (shape ``n``, original units).
            y_std: Optional standard errors of ``y`` (shape ``n``), see :meth:`Predictor.fit`.

        Raises:
            ValueError: If the target is not fitted, or the inputs are invalid.
        """
        y = training_values(subnets, y)
        return self._update_target(self.encode(subnets), y, check_y_std(y_std, y.numel()))

    def update_multi(
        self,
        subnets: Sequence[Subnet],
        Y: torch.Tensor,
        target_index: int,
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Condition sources and target on the current matrix, keeping every hyperparameter.

        Each related column fitted as a source is conditioned on its current values under the
        shared source hyperparameters (restandardised, as :meth:`fit_multi` does: the shared
        kernel was fitted on unit-variance columns), then the target GP on the target column with
        the new source embedding. Columns that were not sources at the fit (too few values then)
        stay out until the next :meth:`fit_multi`.

        Args:
            subnets: ``n`` subnets, the rows of ``Y``.
            Y: ``n x T`` values in original units, NaN where unmeasured; its columns must be those
                of the fit (the same ``target_index`` and related columns).
            target_index: The column to predict.
            y_std: Optional standard errors of the target column (shape ``n``; ignored where the
                target is unmeasured), see :meth:`Predictor.fit`.

        Raises:
            ValueError: If the target is not fitted, ``Y`` does not match the fit, a source column
                has no values left, or the target column has fewer than 2.
        """
        Y = as_matrix(Y, len(subnets))
        if y_std is not None:
            # NaN standard errors are allowed where the target is unmeasured.
            y_std = torch.nan_to_num(as_vector(y_std), nan=0.0)
        return self.update_multi_encoded(self.encode(subnets), Y, target_index, check_y_std(y_std, len(Y)))

    def update_multi_encoded(
        self, X: torch.Tensor, Y: torch.Tensor, target_index: int, y_std: torch.Tensor | None = None
    ) -> Self:
        """:meth:`update_multi` on features from :meth:`encode` (``y_std``: shape ``n`` or None)."""
        self._check_fitted()
        assert self.source_columns is not None
        if not 0 <= target_index < Y.shape[1]:
            raise ValueError(f"target_index {target_index} out of range for {Y.shape[1]} columns")
        if target_index in self.source_columns or any(j >= Y.shape[1] for j in self.source_columns):
            raise ValueError(
                f"Y ({Y.shape[1]} columns, target {target_index}) does not match the fit (related "
                f"columns {self.source_columns}); refit with fit_multi"
            )
        target_rows = ~torch.isnan(Y[:, target_index])
        if int(target_rows.sum()) < 2:
            raise ValueError(
                f"target column {target_index} needs at least 2 values, got {int(target_rows.sum())}"
            )
        observed = ~torch.isnan(Y)
        empty = [j for j in self.source_columns if not bool(observed[:, j].any())]
        if empty:
            raise ValueError(f"related columns {empty} have no values left; refit with fit_multi")
        for source, j in zip(self.sources, self.source_columns, strict=True):
            rows = observed[:, j]
            # The fit's per-column standardisation, redone (it is not stored); the source GP's
            # own identity transform then stays as fitted.
            column = self._standardise_source(Y[rows, j])
            # Usually only the target was measured: a column with the same data keeps its posterior.
            same = torch.equal(source.X, X[rows]) and torch.equal(source.z, source.output.transform(column))
            if not same:
                source.update_encoded(X[rows], column)
        target_std = None if y_std is None else y_std[target_rows]
        return self._update_target(X[target_rows], Y[target_rows, target_index], target_std)

    def _update_target(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None) -> Self:
        """Condition the fitted target GP on ``(X, y)`` (``n x d``, ``n``) with the current sources."""
        self._check_fitted()
        assert self.target is not None
        if self.sources:
            X = torch.cat([X, self._training_embedding(X)], dim=1)
        self.target.update_encoded(X, y, y_std)
        self.n_train = len(y)
        return self

    # ------------------------------------------------------------------ prediction
    def source_embedding(self, X: torch.Tensor) -> torch.Tensor:
        """Posterior means of the source GPs, ``n x S`` on their standardised scales."""
        if not self.sources:
            return X.new_zeros(len(X), 0)
        return torch.stack([source.predict_latent(X)[0] for source in self.sources], dim=1)

    def _training_embedding(self, X: torch.Tensor) -> torch.Tensor:
        """Source embedding for the target's training rows, ``n x S`` (see ``loo_embedding``).

        Where a row was measured on a source, that source's leave-one-out mean is used instead of
        its posterior mean: at a measured row the posterior mean nearly equals the measurement,
        while a query gets a genuine prediction. Training on the leave-one-out values gives the
        target GP features as noisy as those it will see at prediction time, so it neither
        over-trusts them nor reports too small a std.
        """
        if not self.loo_embedding:
            return self.source_embedding(X)
        columns = []
        for source in self.sources:
            values = source.predict_latent(X)[0]
            loo = source.loo_latent_mean()
            index = {tuple(row.tolist()): i for i, row in enumerate(source.X)}
            for r, row in enumerate(X):
                i = index.get(tuple(row.tolist()))
                if i is not None:
                    values[r] = loo[i]
            columns.append(values)
        return torch.stack(columns, dim=1)

    def _inputs(self, X: torch.Tensor) -> torch.Tensor:
        return torch.cat([X, self.source_embedding(X)], dim=1) if self.sources else X

    def predict_encoded(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_fitted()
        assert self.target is not None
        return self.target.predict_encoded(self._inputs(X.to(torch.float64)))

    def predict_latent(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target mean and std on the target's standardised transformed scale, shape ``n`` each."""
        self._check_fitted()
        assert self.target is not None
        return self.target.predict_latent(self._inputs(X.to(torch.float64)))

    def posterior_covariance(self, X: torch.Tensor) -> torch.Tensor:
        """Joint latent posterior covariance of the target at ``X`` (``m x d``), shape ``m x m``."""
        self._check_fitted()
        assert self.target is not None
        return self.target.posterior_covariance(self._inputs(X.to(torch.float64)))

    def prior_covariance(self, X: torch.Tensor) -> torch.Tensor:
        """Covariance of the target at ``X`` (``m x d``) before any target value, shape ``m x m``.

        The target kernel at its initial hyperparameters: the source embedding's linear kernel
        (weight ``1 / S``), a tenth of the sources' architecture kernel and the unit bias, on the
        standardised scale. Architectures that the known chips or tasks see alike covary, so a
        design that maximises this prior's information spreads the first measurements over the
        directions in which chips differ.
        """
        if not self.sources:
            raise ValueError("prior_covariance needs related columns (fit_sources or fit_multi)")
        X = X.to(torch.float64)
        kernel = self._new_target()._build_covar().to(torch.float64)
        with torch.no_grad(), gpytorch.settings.lazily_evaluate_kernels(False):
            result: torch.Tensor = kernel(self._inputs(X)).to_dense()
            return result

    @property
    def has_prior_covariance(self) -> bool:
        """Whether related columns are fitted, so that :meth:`prior_covariance` can be called."""
        return bool(self.sources)

    @property
    def noise(self) -> float:
        """Fitted observation-noise variance of the target (standardised scale)."""
        assert self.target is not None
        return self.target.noise

    def noise_variance(self) -> float:
        """Fitted observation-noise variance of the target (standardised scale), as :attr:`noise`."""
        self._check_fitted()
        return self.noise

    def botorch_model(self) -> SingleTaskGP:
        """A copy of the target's botorch GP that takes the plain ``onehot+ordinal`` encoding.

        With related columns its input transform appends the source embedding, which the
        target GP was trained on, at evaluation time.
        """
        self._check_fitted()
        assert self.target is not None
        model = self.target.botorch_model()
        if self.sources:
            model.input_transform = _AppendSourceEmbedding(self)
        return model

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        self._check_fitted()
        assert self.target is not None
        return {
            "source_columns": self.source_columns,
            "sources": [source._state() for source in self.sources],
            "target": self.target._state(),
            "n_train": self.n_train,
            "n_hyperparameter_fit": self.n_hyperparameter_fit,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.source_columns = state["source_columns"]
        self.sources = []
        for source_state in state["sources"]:
            source = self._gp()
            source._load_state(source_state)
            self.sources.append(source)
        target = self._new_target()
        target._load_state(state["target"])
        if self.sources:
            # The target's residual is the sources' frozen kernel: recover it for refit_target.
            assert target.model is not None
            self._shared_kernel = target.model.covar_module.kernels[1].base_kernel
        self.target = target
        self.n_train = state["n_train"]
        # Blobs saved before SupportsUpdate were never updated: fitted on all their points.
        self.n_hyperparameter_fit = state.get("n_hyperparameter_fit", self.n_train)


def transfer_prior(
    space: SearchSpace, metric: str, subnets: Sequence[Subnet], Y: torch.Tensor, seed: int = 0
) -> TransferPredictor | None:
    """A target's cold-start prior: a :class:`TransferPredictor` fitted on the related targets'
    values only (:meth:`TransferPredictor.fit_sources`), or ``None`` when none has enough values
    yet (then there is nothing to borrow from, and a design spreads its picks out instead).

    Args:
        space: The search space.
        metric: The target's metric, which the related targets share.
        subnets: ``n`` subnets, the rows of ``Y``.
        Y: ``n x S`` values of the related targets, NaN where unmeasured.
        seed: Seed of the model's subset choices.
    """
    try:
        return TransferPredictor(space, metric=metric, seed=seed).fit_sources(subnets, Y)
    except NoRelatedTargetsError:
        return None
