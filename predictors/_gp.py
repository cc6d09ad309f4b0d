"""GP-NAS with a learned kernel: ``y = linear(x) + f(x) + noise`` on a transformed output scale."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any, Self

import gpytorch
import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from gpytorch.constraints import GreaterThan
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.means import ConstantMean
from gpytorch.mlls import ExactMarginalLogLikelihood

from supernet import SearchSpace, Subnet

from ._base import (
    Predictor,
    check_y_std,
    default_transform,
    register_predictor,
    target_column,
    training_values,
)
from ._cost import CostModel, CostPriorMean, decode_onehot, resolve_cost_prior
from ._kernels import build_kernel, new_likelihood
from ._limits import check_time
from ._transforms import OutputTransform

# Query rows per block when predicting: bounds the cross-covariance to block x n_train doubles.
_BLOCK = 8192


@register_predictor("gpnas")
class GPNASPredictor(Predictor):
    """GP-NAS: linear model on the one-hot code plus a GP with a learned kernel.

    Hyperparameters (kernel weights, lengthscales, noise) maximise the exact marginal likelihood
    (botorch's L-BFGS fit) on at most ``max_fit`` training points; the posterior then conditions on
    all points: exactly up to ``max_exact`` points, beyond that with the deterministic training
    conditional (DTC) on ``n_inducing`` inducing points drawn from the training set, so
    conditioning costs O(n m^2) instead of O(n^3) and a prediction O(m^2) instead of O(n^2).

    Args:
        space: Search space.
        metric: ``score`` (rank-Gauss output transform) or ``latency_ms`` (log transform).
        transform: Overrides the metric's transform: ``identity``, ``log`` or ``rankgauss``.
        kernel: One of :data:`predictors._kernels.KERNELS`.
        max_fit: Most points used for the hyperparameter fit.
        max_exact: Most points for the exact posterior.
        n_inducing: Inducing points (drawn from the training set) beyond ``max_exact``.
        observation_noise: If true (default) the std covers a new measurement rather than the
            latent mean: it adds the fitted homoskedastic noise and the training points' typical
            known noise (see :meth:`predict_latent`).
        maxiter: L-BFGS iterations for the hyperparameter fit.
        outlier_mad: If set, points whose leave-one-out residual is more than this many robust
            standard deviations (1.4826 MAD) from the median residual are dropped and the GP is
            refitted once. Real latency tables hold such points (e.g. NAS-Bench-201 cells whose
            output is disconnected run in ~0 ms on some runtimes); with ten measurements one of
            them would otherwise set the noise level for all.
        loo_calibrate: If true, predictive stds are multiplied by the root-mean-square of the
            standardised leave-one-out residuals of the training points (when above 1). ML-II on a
            handful of points tends to under-estimate the noise; this restores coverage.
        cost_prior: Prior mean from the space's analytic costs (see :mod:`predictors._cost`): a
            non-negative linear latency model on ``[1, space.costs(x)]`` fitted to the
            measurements, whose log is the GP's prior mean, so the GP models ``log(y)`` minus it.
            ``None`` (default): on for ``metric="latency_ms"`` with the log transform when the
            space has costs; off for scores.
        seed: Seeds subset and inducing-point choices.
    """

    features = "onehot+ordinal"

    def __init__(
        self,
        space: SearchSpace,
        metric: str = "score",
        transform: str | None = None,
        kernel: str = "hamming",
        max_fit: int = 500,
        max_exact: int = 1000,
        n_inducing: int = 500,
        observation_noise: bool = True,
        maxiter: int = 200,
        outlier_mad: float | None = None,
        loo_calibrate: bool = False,
        cost_prior: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            space,
            metric=metric,
            transform=transform,
            kernel=kernel,
            max_fit=max_fit,
            max_exact=max_exact,
            n_inducing=n_inducing,
            observation_noise=observation_noise,
            maxiter=maxiter,
            outlier_mad=outlier_mad,
            loo_calibrate=loo_calibrate,
            cost_prior=cost_prior,
            seed=seed,
        )
        self.outlier_mad = outlier_mad
        self.loo_calibrate = loo_calibrate
        self.std_scale = 1.0
        self.metric = metric
        self.output = OutputTransform(default_transform(metric, transform))
        self.kernel_name = kernel
        build_kernel(kernel, space)  # fail fast on an unknown kernel name
        self.max_fit, self.max_exact, self.n_inducing = max_fit, max_exact, n_inducing
        self.observation_noise = observation_noise
        self.maxiter, self.seed = maxiter, seed
        self.use_cost_prior = resolve_cost_prior(cost_prior, metric, self.output.kind, space)
        # The fitted cost line (None without the cost prior, and in blobs saved before it existed).
        self.cost_model: CostModel | None = None
        # Known per-point noise variances of the training points (standardised scale), or None.
        self.noise_extra: torch.Tensor | None = None
        # Their median: the known noise a new measurement is expected to carry (0 without y_std).
        self.typical_noise = 0.0
        # K^-1 1 and 1^T K^-1 1 of the exact posterior (the constant level's precision), see
        # _mean_variance; None and 0 with inducing points.
        self.ones_solve: torch.Tensor | None = None
        self.ones_precision = 0.0
        self.model: SingleTaskGP | None = None
        # n_train right after the last hyperparameter fit (SupportsUpdate); update() leaves it.
        self.n_hyperparameter_fit = 0
        # One-hot codes (k x d_onehot) of the training points left out as outliers: update()
        # keeps them out and judges only subnets it has not seen, see update_encoded.
        self.outlier_codes: torch.Tensor | None = None

    # ------------------------------------------------------------------ fitting
    def _build_covar(self) -> gpytorch.kernels.Kernel:
        """The covariance module; subclasses with other inputs (e.g. transfer features) override it."""
        return build_kernel(self.kernel_name, self.space)

    def _new_model(
        self, X: torch.Tensor, z: torch.Tensor, noise_extra: torch.Tensor | None = None
    ) -> SingleTaskGP:
        """A GP on ``(X, z)``; with ``noise_extra`` (shape ``n``) a likelihood with that fixed
        per-point noise plus the learned homoskedastic one."""
        if noise_extra is None:
            likelihood = new_likelihood()
        else:
            # gpytorch rounds fixed noise below 1e-6 up (with a warning); do it quietly here.
            likelihood = FixedNoiseGaussianLikelihood(
                noise_extra.clamp_min(1e-6), learn_additional_noise=True, noise_constraint=GreaterThan(1e-4)
            )
        if self.cost_model is None:
            mean = ConstantMean()
        else:
            mean = CostPriorMean(self.space, self.cost_model, self.output.scale)
        return SingleTaskGP(
            X,
            z.unsqueeze(-1),
            likelihood=likelihood,
            covar_module=self._build_covar(),
            mean_module=mean,
            outcome_transform=None,
        )

    def fit_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        X = X.to(torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        z, noise_extra = self._training_targets(X, y, y_std, self.use_cost_prior, refit_output=True)
        return self.fit_transformed(X, z, noise_extra)

    def _training_targets(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        y_std: torch.Tensor | None,
        cost_prior: bool,
        refit_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The GP's targets for training set ``(X, y)``: fits the cost line (if ``cost_prior``) and,
        if ``refit_output``, the output transform, else applies the fitted one.

        Args:
            X: ``n x d`` features.
            y: ``n`` values, original units.
            y_std: Optional standard errors (``n``, original units).
            cost_prior: Fit the cost line (sets :attr:`cost_model`; None otherwise).
            refit_output: Fit :attr:`output` on ``y``; if false, map ``y`` with it as fitted.

        Returns:
            Targets ``z`` (``n``, standardised scale) and the known noise variances (``n``) or None.
        """
        self.cost_model = None
        if cost_prior:
            if not (y > 0).all():
                raise ValueError("the log transform (metric latency_ms) needs positive targets")
            costs = self.space.choice_costs(decode_onehot(self.space, X))
            self.cost_model = CostModel.fit(costs, y.numpy(), None if y_std is None else y_std.numpy())
        z = self.output.fit_transform(y) if refit_output else self.output.transform(y)
        if self.cost_model is not None and self.cost_model.out_of_fold is not None:
            # The GP sees each point's residual from the out-of-fold line, with the full line as
            # its mean: z - log(oof) = z' - log(full) for z' below.
            full = self.cost_model.predict(costs)
            shift = np.log(self.cost_model.out_of_fold / full) / self.output.scale
            z = z - torch.as_tensor(shift, dtype=z.dtype)
        noise_extra = None if y_std is None else self.output.standardised_std(y, y_std).pow(2)
        return z, noise_extra

    def fit_transformed(
        self, X: torch.Tensor, z: torch.Tensor, noise_extra: torch.Tensor | None = None
    ) -> Self:
        """Fit on targets already on the standardised transformed scale (``self.output`` fitted).

        Args:
            X: ``n x d`` inputs.
            z: ``n`` targets.
            noise_extra: Optional known noise variance of each point (``n``, standardised scale),
                added to the learned homoskedastic noise.
        """
        rng = np.random.default_rng(self.seed)
        fit_idx = torch.as_tensor(np.sort(rng.permutation(len(z))[: self.max_fit]))
        extra_fit = None if noise_extra is None else noise_extra[fit_idx]
        model = self._new_model(X[fit_idx], z[fit_idx], extra_fit)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # One attempt: botorch would otherwise refit up to 5 times when L-BFGS stops on maxiter.
            # check_time after every L-BFGS step: the fit's wall-time limit and the process's stop.
            fit_gpytorch_mll(
                mll,
                optimizer_kwargs={"options": {"maxiter": self.maxiter}, "callback": lambda *_: check_time()},
                max_attempts=1,
                warning_handler=lambda _: True,
            )
        if noise_extra is not None:
            # Keep a plain homoskedastic model (what predictions and serialisation use); the
            # per-point part is applied when conditioning.
            fitted, model = model, self._new_model(X[fit_idx], z[fit_idx])
            model.covar_module.load_state_dict(fitted.covar_module.state_dict())
            model.mean_module.load_state_dict(fitted.mean_module.state_dict())
            model.likelihood.noise = fitted.likelihood.second_noise.detach()
        model.eval()
        self._condition(model, X, z, noise_extra)
        # The outlier refit below overwrites these with its inliers' count and its outliers.
        self.n_hyperparameter_fit = self.n_train
        self.outlier_codes = None
        self.std_scale = self._loo_scale() if self.loo_calibrate and self.inducing is None else 1.0
        if self.outlier_mad is not None and self.inducing is None and len(z) >= 8:
            keep = self._inliers(z)
            if not bool(keep.all()):
                self.outlier_mad, outlier_mad = None, self.outlier_mad
                try:
                    self.fit_transformed(X[keep], z[keep], None if noise_extra is None else noise_extra[keep])
                finally:
                    self.outlier_mad = outlier_mad
                self.outlier_codes = self._codes(X[~keep])
        return self

    # ------------------------------------------------------------------ updating (SupportsUpdate)
    def update(
        self,
        subnets: Sequence[Subnet],
        y: torch.Tensor | Sequence[float],
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Condition on the current training set keeping the fitted hyperparameters.

        See :meth:`update_encoded` for what is kept and what is recomputed.

        Args:
            subnets: All measured subnets now (the fitted ones, new ones, minus retracted ones).
            y: Their values, shape ``n``, original units.
            y_std: Optional standard errors (shape ``n``), see :meth:`Predictor.fit`.

        Raises:
            ValueError: If not fitted, or the inputs are invalid (as for :meth:`Predictor.fit`).
        """
        y = training_values(subnets, y)
        return self.update_encoded(self.encode(subnets), y, check_y_std(y_std, y.numel()))

    def update_multi(
        self,
        subnets: Sequence[Subnet],
        Y: torch.Tensor,
        target_index: int,
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """:meth:`update` on the measured rows of column ``target_index`` of ``Y`` alone, as
        :meth:`Predictor.fit_multi` fits them (``Y``: ``n x T``, NaN where unmeasured)."""
        return self.update(*target_column(subnets, Y, target_index, y_std))

    def update_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        """:meth:`update` on features from :meth:`encode`.

        What :meth:`fit_encoded` would do on ``(X, y)`` with the marginal-likelihood fit left out:
        the kernel, the noise and the mean's constant stay as fitted, and the posterior is
        recomputed by :meth:`_condition` (exact up to ``max_exact`` points, inducing points
        beyond, drawn from the new set as a fit would). The data-dependent pieces that are not
        hyperparameters are redone as a fit does:

        * ``log`` / ``identity`` outputs keep their standardisation (``loc``, ``scale``): the
          kernel's and the noise's variances are in its units, so the same GP prior is conditioned
          on more data. ``rankgauss`` refits its map on all values: the fitted map clamps values
          beyond its old knots (a new best score would look like the old best), while the refitted
          map's standardised values are normal quantiles whatever the data, so the variances keep
          their meaning.
        * The cost line (latency with the cost prior) is refitted, in closed form: the GP's
          targets are residuals from each point's out-of-fold line, which only a fit on this set
          gives. A model fitted without the cost prior keeps none.
        * Outliers (``outlier_mad``): subnets left out as outliers stay out until the next fit,
          those conditioned on stay in, and only subnets not seen before are judged, by the fit's
          leave-one-out rule under the kept hyperparameters (exact posterior only). Re-judging
          everything would not repeat the fit's decisions: those were made under hyperparameters
          fitted with the outliers in, and under the inliers' tighter ones two similar outliers
          can hide each other (two near-0 ms NAS-Bench-201 cells do). The leave-one-out std
          calibration (``loo_calibrate``) is recomputed.

        Args:
            X: ``n x d`` features of all training points now.
            y: ``n`` values, original units.
            y_std: Optional standard errors (``n``, original units).

        Raises:
            ValueError: If not fitted, or ``y`` is not finite (or not positive for ``log``).
        """
        self._check_fitted()
        assert self.model is not None
        X = X.to(torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if len(X) != len(y):
            raise ValueError(f"got {len(X)} feature rows but {len(y)} target values")
        # Checked before anything changes: a rejected update leaves the predictor as it was.
        if not torch.isfinite(y).all():
            raise ValueError("targets must be finite numbers")
        if self.output.kind == "log" and not bool((y > 0).all()):
            raise ValueError("the log transform (metric latency_ms) needs positive targets")
        codes, previous = self._codes(X), self._codes(self.X)
        keep = ~_rows_in(codes, self.outlier_codes)
        if int(keep.sum()) < 2:
            raise ValueError("fewer than 2 points remain without the fit's outliers; refit with fit()")
        fitted = self.model
        z, noise_extra = self._training_targets(
            X, y, y_std, cost_prior=self.cost_model is not None, refit_output=self.output.kind == "rankgauss"
        )
        model = self._new_model(X, z)
        # The mean's buffers hold the (refitted) cost line; every other entry is a hyperparameter.
        state = dict(fitted.state_dict())
        state.update({f"mean_module.{name}": b for name, b in model.mean_module.named_buffers()})
        model.load_state_dict(state)
        self._condition(model, X[keep], z[keep], None if noise_extra is None else noise_extra[keep])
        if self.outlier_mad is not None and self.inducing is None and int(keep.sum()) >= 8:
            new = keep & ~_rows_in(codes, previous)
            flagged = torch.zeros_like(keep)
            if bool(new.any()):
                flagged[keep] = ~self._inliers(z[keep])
            if bool((new & flagged).any()):
                keep &= ~(new & flagged)
                self._condition(model, X[keep], z[keep], None if noise_extra is None else noise_extra[keep])
        self.outlier_codes = codes[~keep] if bool((~keep).any()) else None
        self.std_scale = self._loo_scale() if self.loo_calibrate and self.inducing is None else 1.0
        return self

    def _codes(self, X: torch.Tensor) -> torch.Tensor:
        """The one-hot code of inputs ``X`` (``n x d``): the first ``space.encoding_dim("onehot")``
        columns, which identify a subnet (a transfer target's source embedding follows them)."""
        return X[:, : self.space.encoding_dim("onehot")]

    def loo_latent_mean(self) -> torch.Tensor:
        """Leave-one-out posterior means at the training points (standardised scale), shape ``n``.

        Exact GP identity ``mu_-i = z_i - alpha_i / [K^-1]_ii``; with inducing points, the
        in-sample posterior means.
        """
        self._check_fitted()
        if self.inducing is not None:
            return self.predict_latent(self.X)[0]
        return self.z - self.alpha / torch.cholesky_inverse(self.L).diagonal()

    def loo_posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact leave-one-out predictive mean and std of each training point's own value,
        standardised scale, shape ``n`` each (exact posterior only).

        The variance is ``1 / [K^-1]_ii`` (the point's own noise included) plus the cost line's
        part of :meth:`_mean_variance`: each target is a residual from the line fitted without
        the point's fold, so its error is part of what the leave-one-out residual shows.
        """
        self._check_fitted()
        if self.inducing is not None:
            raise ValueError("leave-one-out needs the exact posterior (at most max_exact points)")
        K_inv_diag = self.var_matrix.diagonal()
        var = K_inv_diag.reciprocal() + self._line_variance(self.X)
        return self.z - self.alpha / K_inv_diag, var.sqrt()

    def _loo_scale(self) -> float:
        """RMS of the exact standardised leave-one-out residuals, at least 1."""
        mean, std = self.loo_posterior()
        return max(1.0, float(((self.z - mean) / std).pow(2).mean().sqrt()))

    def _inliers(self, z: torch.Tensor) -> torch.Tensor:
        """Mask of points whose exact leave-one-out residual is not a robust outlier."""
        assert self.outlier_mad is not None
        K_inv = torch.cholesky_inverse(self.L)
        loo = self.alpha / K_inv.diagonal()
        centre = loo.median()
        mad = 1.4826 * (loo - centre).abs().median()
        return (loo - centre).abs() <= self.outlier_mad * mad.clamp_min(1e-9)

    def _condition(
        self, model: SingleTaskGP, X: torch.Tensor, z: torch.Tensor, noise_extra: torch.Tensor | None = None
    ) -> None:
        """Condition the fitted hyperparameters on all of ``(X, z)`` and cache the solves.

        ``noise_extra`` (shape ``n``) is each point's known noise variance on top of the learned
        homoskedastic ``noise``; a new point's observation noise adds their median
        (:attr:`typical_noise`), see :meth:`predict_latent`.
        """
        # gpytorch ships no types, so mypy resolves its methods through torch's Module.__getattr__
        # (Tensor | Module) instead of gpytorch.models.ExactGP.
        model.set_train_data(X, z, strict=False)  # type: ignore[operator]
        model.eval()
        self.model, self.X, self.z = model, X, z
        self.n_train = len(z)
        self.noise_extra = noise_extra
        self.typical_noise = (
            0.0 if noise_extra is None or len(noise_extra) == 0 else float(noise_extra.median())
        )
        kernel = model.covar_module
        noise = float(model.likelihood.noise.detach())
        self.noise = noise
        point_noise = noise + (torch.zeros_like(z) if noise_extra is None else noise_extra)
        with torch.no_grad(), gpytorch.settings.lazily_evaluate_kernels(False):
            r = z - model.mean_module(X)
            if self.n_train <= self.max_exact:
                self.inducing = None
                K = kernel(X, X).to_dense() + torch.diag(point_noise)
                L = _cholesky(K)
                self.L = L
                self.alpha = torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)
                # Variance of a query is prior - k^T K^-1 k: one matmul per block with K^-1 cached
                # runs several times faster than a triangular solve of the same size.
                self.var_matrix = torch.cholesky_inverse(L)
                # K^-1 1 and 1^T K^-1 1: the generalised-least-squares precision of the mean's
                # constant, for the level's variance in _mean_variance.
                self.ones_solve = self.var_matrix.sum(1)
                self.ones_precision = float(self.ones_solve.sum())
            else:
                # DTC: Sigma = (K_mm + K_mn L^-1 K_nm)^-1, mean = K_*m Sigma K_mn L^-1 r, L = noise.
                rng = np.random.default_rng(self.seed + 1)
                idx = torch.as_tensor(np.sort(rng.permutation(self.n_train)[: self.n_inducing]))
                Z = X[idx]
                Kmm = kernel(Z, Z).to_dense()
                Kmn = torch.cat(
                    [kernel(Z, X[i : i + _BLOCK]).to_dense() for i in range(0, self.n_train, _BLOCK)], 1
                )
                Lmm = _cholesky(Kmm)
                A = Kmm + (Kmn / point_noise) @ Kmn.T
                La = _cholesky(A)
                self.inducing, self.Lmm, self.La = Z, Lmm, La
                # Beyond max_exact points the constant's variance (~ noise / n) is negligible.
                self.ones_solve, self.ones_precision = None, 0.0
                self.alpha = torch.cholesky_solve((Kmn @ (r / point_noise)).unsqueeze(-1), La).squeeze(-1)
                # DTC variance: prior - k^T (K_mm^-1 - A^-1) k, with the middle matrix cached.
                self.var_matrix = torch.cholesky_inverse(Lmm) - torch.cholesky_inverse(La)

    # ------------------------------------------------------------------ prediction
    def predict_latent(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std on the standardised transformed scale, shape ``n`` each.

        The variance of the latent mean is the GP's posterior variance plus the uncertainty of
        its prior mean (:meth:`_mean_variance`: the cost line's coefficients and the constant
        level, both fitted as point estimates). With ``observation_noise`` the std is of a new
        measurement: it adds the learned homoskedastic noise and :attr:`typical_noise`, the median
        known noise variance of the training points. A new measurement is taken as the past ones
        were, so it is as noisy as they typically are: when ``y_std`` carries the noise (spreads
        of hundreds of ms, drifting batches), the learned noise falls to its floor and, without
        this term, a new point's std would shrink to the kernel's few percent although each
        measurement scatters by far more. The median (not the mean) keeps one wild point from
        widening every prediction; a whole noisy or flagged batch moves it.
        """
        self._check_fitted()
        assert self.model is not None
        X = X.to(torch.float64)
        kernel = self.model.covar_module
        means, variances = [], []
        with torch.no_grad(), gpytorch.settings.lazily_evaluate_kernels(False):
            for i in range(0, len(X), _BLOCK):
                Xq = X[i : i + _BLOCK]
                prior = kernel(Xq, diag=True)
                Ks = kernel(Xq, self.X if self.inducing is None else self.inducing).to_dense()
                means.append(Ks @ self.alpha)
                variances.append(prior - ((Ks @ self.var_matrix) * Ks).sum(1) + self._mean_variance(Xq, Ks))
            mean = torch.cat(means) + self.model.mean_module(X)
        var = torch.cat(variances).clamp_min(1e-12)
        if self.observation_noise:
            var = var + self.noise + self.typical_noise
        return mean, var.sqrt() * self.std_scale

    def _mean_variance(self, X: torch.Tensor, Ks: torch.Tensor | None = None) -> torch.Tensor:
        """Variance of the prior mean at ``X`` (``n x d``) on the standardised scale, shape ``n``.

        Two parts, each fitted as a point estimate but uncertain:

        * the cost line's coefficients (latency with the cost prior): the jackknife variance of
          ``log`` of the line over its cross-validation refits (:meth:`CostModel.log_variance`),
          divided by the output scale squared;
        * the constant level: the universal-kriging term ``(1 - k^T K^-1 1)^2 / (1^T K^-1 1)``,
          the variance of the constant's generalised-least-squares estimate carried to ``X``
          (``Ks``: the ``n x n_train`` cross-covariance; exact posterior only, as beyond
          ``max_exact`` points it is negligible).
        """
        var = self._line_variance(X)
        if Ks is not None and self.ones_solve is not None and self.ones_precision > 0:
            var = var + (1.0 - Ks @ self.ones_solve).pow(2) / self.ones_precision
        return var

    def _line_variance(self, X: torch.Tensor) -> torch.Tensor:
        """The cost line's part of :meth:`_mean_variance` at ``X`` (``n x d``), shape ``n``.

        Unlike the GP's posterior variance it is estimated from the data's disagreement with
        the line, so conditioning on more points need not shrink it.
        """
        if self.cost_model is None or self.cost_model.fold_weights is None:
            return torch.zeros(len(X), dtype=torch.float64)
        costs = self.space.choice_costs(decode_onehot(self.space, X))
        return torch.as_tensor(self.cost_model.log_variance(costs)) / self.output.scale**2

    def posterior_covariance(self, X: torch.Tensor) -> torch.Tensor:
        """Joint posterior covariance of the latent function at ``X`` (``m x d``), shape ``m x m``.

        On the standardised transformed scale, without observation noise; used by the
        variance / mutual-information sampling strategy.
        """
        self._check_fitted()
        assert self.model is not None
        X = X.to(torch.float64)
        kernel = self.model.covar_module
        with torch.no_grad(), gpytorch.settings.lazily_evaluate_kernels(False):
            prior = kernel(X, X).to_dense()
            if self.inducing is None:
                V = torch.linalg.solve_triangular(self.L, kernel(X, self.X).to_dense().T, upper=False)
                posterior: torch.Tensor = prior - V.T @ V
                return posterior
            Kmc = kernel(self.inducing, X).to_dense()
            Vm = torch.linalg.solve_triangular(self.Lmm, Kmc, upper=False)
            Va = torch.linalg.solve_triangular(self.La, Kmc, upper=False)
            posterior = prior - Vm.T @ Vm + Va.T @ Va
            return posterior

    def noise_variance(self) -> float:
        """Fitted homoskedastic noise variance (standardised scale), as :attr:`noise`."""
        self._check_fitted()
        return self.noise

    def botorch_model(self) -> SingleTaskGP:
        """A copy of the fitted botorch GP; it takes the ``onehot+ordinal`` encoding as inputs."""
        self._check_fitted()
        assert self.model is not None
        return copy.deepcopy(self.model)

    def predict_encoded(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.predict_latent(X)
        return self.output.untransform(mean, std)

    def hyperparameters(self) -> dict[str, float | list[float]]:
        """Fitted hyperparameters by name (for reports and debugging)."""
        assert self.model is not None
        out: dict[str, float | list[float]] = {}
        # gpytorch.Module's method, seen through torch's Module.__getattr__: gpytorch ships no types.
        for name, parameter, constraint in self.model.named_parameters_and_constraints():  # type: ignore[operator]
            value = (
                (constraint.transform(parameter) if constraint is not None else parameter)
                .detach()
                .reshape(-1)
            )
            out[name.replace("raw_", "")] = value.tolist() if value.numel() > 1 else float(value)
        return out

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        self._check_fitted()
        assert self.model is not None
        return {
            "output": self.output.state(),
            "X": self.X,
            "z": self.z,
            "model": dict(self.model.state_dict()),
            "std_scale": self.std_scale,
            "cost_model": None if self.cost_model is None else self.cost_model.state(),
            "noise_extra": self.noise_extra,
            "n_hyperparameter_fit": self.n_hyperparameter_fit,
            "outlier_codes": self.outlier_codes,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.output = OutputTransform.from_state(state["output"])
        # Blobs saved before the cost prior and per-point noise existed have neither key.
        cost_state = state.get("cost_model")
        self.cost_model = None if cost_state is None else CostModel.from_state(cost_state)
        model = self._new_model(state["X"], state["z"])
        model.load_state_dict(state["model"])
        self._condition(model, state["X"], state["z"], state.get("noise_extra"))
        self.std_scale = state["std_scale"]
        # Blobs saved before SupportsUpdate were never updated: fitted on all their points.
        self.n_hyperparameter_fit = state.get("n_hyperparameter_fit", self.n_train)
        self.outlier_codes = state.get("outlier_codes")


def _rows_in(A: torch.Tensor, B: torch.Tensor | None) -> torch.Tensor:
    """Mask (shape ``n``) of the rows of ``A`` (``n x d``) that are rows of ``B`` (``m x d`` or None)."""
    if B is None or len(B) == 0:
        return torch.zeros(len(A), dtype=torch.bool)
    known = {row.tobytes() for row in B.detach().contiguous().numpy()}
    return torch.tensor([row.tobytes() in known for row in A.detach().contiguous().numpy()], dtype=torch.bool)


def _cholesky(K: torch.Tensor) -> torch.Tensor:
    """Cholesky factor, adding jitter only if the matrix is numerically indefinite."""
    jitter = 0.0
    for _ in range(6):
        L, info = torch.linalg.cholesky_ex(K + jitter * torch.eye(len(K), dtype=K.dtype))
        if int(info) == 0:
            result: torch.Tensor = L
            return result
        jitter = max(jitter * 10, 1e-8 * float(K.diagonal().mean()))
    raise ValueError("kernel matrix is not positive definite even with jitter")


__all__ = ["GPNASPredictor"]
