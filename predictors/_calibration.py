"""Post-hoc calibration of predictive stds: by inner cross-validation (:func:`cv_std_scale`) or
by a fitted GP's exact leave-one-out posterior (:func:`loo_std_scale`), and GP-NAS with its std
rescaled after every fit (:class:`CalibratedGPNASPredictor`, the base of the default score model
``gpnas-multitask``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

import numpy as np
import torch

from supernet import SearchSpace

from ._base import Predictor
from ._gp import GPNASPredictor

#: z of the central 90% interval of a normal distribution.
Z90 = 1.6448536269514722


def cv_std_scale(
    refit: Callable[[torch.Tensor, torch.Tensor], Predictor],
    X: torch.Tensor,
    y: torch.Tensor,
    folds: int = 5,
    seed: int = 0,
    bounds: tuple[float, float] = (0.5, 3.0),
) -> float:
    """The factor by which to multiply a model's std so that ±1.645 std covers 90% of new values.

    The model is refitted on ``folds - 1`` folds of the training data and scored on the held-out
    fold; the factor is the 90% quantile of ``|y - mean| / std`` over all held-out points divided
    by 1.645 (1 = already calibrated), clipped to ``bounds``.

    Args:
        refit: ``refit(X_fit, y_fit)`` returns a fitted, uncalibrated predictor.
        X: ``n x d`` features (the predictor's encoding).
        y: ``n`` values, original units.
        folds: Inner folds (fewer if ``n`` is small; 1.0 below 10 points).
        seed: Seeds the folds.
        bounds: Clip range of the factor.
    """
    n = len(y)
    if n < 10:
        return 1.0
    folds = min(folds, n // 3)
    order = np.random.default_rng(seed + 7).permutation(n)
    ratios = []
    for k in range(folds):
        test = torch.as_tensor(np.sort(order[k::folds]))
        train = torch.as_tensor(np.sort(np.setdiff1d(order, order[k::folds])))
        mean, std = refit(X[train], y[train]).predict_encoded(X[test])
        ratios.append(((mean - y[test]).abs() / std.clamp_min(1e-12)).numpy())
    q = float(np.quantile(np.concatenate(ratios), 0.9)) / Z90
    return float(np.clip(q, *bounds))


def loo_std_scale(gp: GPNASPredictor, y: torch.Tensor, bounds: tuple[float, float] = (0.5, 3.0)) -> float:
    """:func:`cv_std_scale` without refits: the exact leave-one-out posterior of a fitted GP.

    Each training point's leave-one-out mean and std (:meth:`GPNASPredictor.loo_posterior`:
    ``z_i - alpha_i / [K^-1]_ii`` and ``[K^-1]_ii^-1/2``, noise and the cost line's uncertainty
    included) are mapped to original units as :meth:`predict` maps a query's; the factor is the
    90% quantile of ``|y - mean| / std`` over 1.645, clipped to ``bounds``. Unlike GP-NAS's
    ``loo_calibrate`` (the root-mean-square of standardised residuals on the transformed scale,
    at least 1) it aims at the 90% interval in the units a caller sees, and may also narrow the
    std. 1.0 with inducing points or fewer than 10 points.

    Args:
        gp: A fitted GP-NAS predictor (its ``std_scale`` is ignored).
        y: Its training values (original units), in training order.
        bounds: Clip range of the factor.
    """
    if gp.inducing is not None or len(y) < 10:
        return 1.0
    with torch.no_grad():
        mean, std = gp.output.untransform(*gp.loo_posterior())
    ratio = ((mean - y).abs() / std.clamp_min(1e-12)).numpy()
    return float(np.clip(float(np.quantile(ratio, 0.9)) / Z90, *bounds))


class CalibratedGPNASPredictor(GPNASPredictor):
    """GP-NAS whose std is rescaled after every fit so that ±1.645 std covers about 90% of new
    values.

    Args:
        space: Search space.
        calibration: ``loo`` (default): :func:`loo_std_scale`, free, recomputed after every
            update too; ``cv``: :func:`cv_std_scale` with 3 inner folds that refit the
            hyperparameters (3 more fits; kept through updates). Use ``cv`` where the
            hyperparameters overfit, so that even leave-one-out residuals look better than new
            points do: ``gpnas-ordinal``'s plain std covered 84% of held-out UFO values and 81%
            after ``loo``.
        **options: As for :class:`GPNASPredictor`.
    """

    #: Subclasses may switch the rescaling off (an option of theirs).
    calibrate = True

    def __init__(self, space: SearchSpace, calibration: str = "loo", **options: Any) -> None:
        if calibration not in ("loo", "cv"):
            raise ValueError(f"calibration must be loo or cv, got {calibration!r}")
        super().__init__(space, **options)
        if calibration != "loo":
            self.options["calibration"] = calibration
        self.calibration = calibration

    def _training_values(self) -> torch.Tensor:
        # The GP's own targets in original units (with the cost prior, z also holds each point's
        # out-of-fold shift; the leave-one-out means are on the same scale).
        return self.output.untransform(self.z, torch.zeros_like(self.z))[0]

    def _recalibrate(self, refit: bool) -> None:
        if not self.calibrate:
            return
        if self.calibration == "loo":
            self.std_scale = loo_std_scale(self, self._training_values())
        elif refit:
            options = {k: v for k, v in self.options.items() if k != "calibration"}

            def plain(X_fit: torch.Tensor, y_fit: torch.Tensor) -> Predictor:
                return GPNASPredictor(self.space, **options).fit_encoded(X_fit, y_fit)

            self.std_scale = cv_std_scale(plain, self.X, self._training_values(), folds=3, seed=self.seed)

    def fit_transformed(
        self, X: torch.Tensor, z: torch.Tensor, noise_extra: torch.Tensor | None = None
    ) -> Self:
        super().fit_transformed(X, z, noise_extra)
        if self.outlier_codes is None:  # an outlier refit has recalibrated on its inliers
            self._recalibrate(refit=True)
        return self

    def update_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        scale = self.std_scale
        super().update_encoded(X, y, y_std)
        self.std_scale = scale
        self._recalibrate(refit=False)
        return self
