"""What a predictor can do beyond :class:`~predictors.Predictor`, as protocols.

Callers (the sampling strategies, the service's refit loop and campaigns, the CLI) ask for the
capability they need, as botorch's acquisition functions ask for ``Model.posterior``, and never
for a concrete class: a new predictor that implements :class:`SupportsCovariance` gets the
variance strategies without any caller changing. Capabilities every predictor can answer live on
:class:`~predictors.Predictor` itself instead (``uses_related_targets`` and ``fit_multi``).

The protocols are runtime-checkable, so ``isinstance(predictor, SupportsCovariance)`` tells
whether a predictor has the methods; whether it is fitted is still ``predictor.n_train > 0``.
They declare methods and properties only: Python 3.11's ``isinstance`` evaluates each member with
``hasattr``, and a method, unlike a fitted attribute, exists before the fit.

Every covariance is of the latent function on the predictor's standardised transformed scale
(e.g. standardised log latency), the scale on which a GP's covariance does not depend on the
measured values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, runtime_checkable

import torch
from botorch.models import SingleTaskGP

from supernet import Subnet


@runtime_checkable
class SupportsCovariance(Protocol):
    """A fitted GP's joint posterior over a set of subnets: what the variance strategies need."""

    def posterior_covariance(self, X: torch.Tensor) -> torch.Tensor:
        """Joint posterior covariance of the latent function, without observation noise.

        Args:
            X: ``m x d`` features of the subnets, from the predictor's ``encode``.

        Returns:
            ``m x m`` covariance on the standardised transformed scale.

        Raises:
            ValueError: If the predictor is not fitted.
        """
        ...

    def noise_variance(self) -> float:
        """Fitted observation-noise variance of a new measurement, on the scale of
        :meth:`posterior_covariance` (the homoskedastic part; per-point ``y_std`` is not included).

        Raises:
            ValueError: If the predictor is not fitted.
        """
        ...


@runtime_checkable
class SupportsPriorCovariance(Protocol):
    """A covariance of the target before it has any value, from related targets.

    A transfer model fitted on the other devices or tasks only (``fit_sources``) has one: the
    first measurements of a new chip can then be designed before any of them exists.
    """

    @property
    def has_prior_covariance(self) -> bool:
        """Whether :meth:`prior_covariance` can be called (a transfer model: once it has related
        targets fitted)."""
        ...

    def prior_covariance(self, X: torch.Tensor) -> torch.Tensor:
        """Covariance of the target's latent function before any value of the target.

        Args:
            X: ``m x d`` features of the subnets, from the predictor's ``encode``.

        Returns:
            ``m x m`` covariance on the target's standardised transformed scale.

        Raises:
            ValueError: If :attr:`has_prior_covariance` is false.
        """
        ...


@runtime_checkable
class SupportsBotorchModel(Protocol):
    """A fitted predictor that hands out its GP as a botorch model (for botorch acquisitions)."""

    def botorch_model(self) -> SingleTaskGP:
        """A copy of the fitted GP, safe to change (e.g. to put in a ``ModelListGP``).

        Its inputs are the ``n x d`` ``onehot+ordinal`` encodings of
        :func:`~predictors.encode_subnets`, the same for every predictor with this capability, so
        models of two predictors can be evaluated on one batch; ``posterior(X)`` is on the
        predictor's standardised transformed scale, with ``X`` of shape ``... x q x d``.

        Raises:
            ValueError: If the predictor is not fitted.
        """
        ...


@runtime_checkable
class SupportsUpdate(Protocol):
    """A fitted predictor that takes new measurements without refitting its hyperparameters.

    :meth:`update` gets the whole current training set (the fitted points, new ones, minus any
    retracted) and recomputes only the posterior (the Cholesky factor and the solves cached for
    prediction) under the hyperparameters of the last full fit: O(n^3) linear algebra once instead
    of an L-BFGS run of many such steps. Full refits can then be batched and periodic, e.g. when
    :attr:`n_train` has grown by half since :attr:`n_hyperparameter_fit`. The result serialises
    with ``to_bytes`` like a fitted predictor and can be updated again.
    """

    @property
    def n_hyperparameter_fit(self) -> int:
        """Training points of the last full fit, whose marginal likelihood set the hyperparameters
        (after outlier removal; 0 before any fit). Compare with ``n_train``, the points the
        posterior is conditioned on now."""
        ...

    def update(
        self,
        subnets: Sequence[Subnet],
        y: torch.Tensor | Sequence[float],
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Condition on ``subnets`` and their values ``y`` (shape ``n``), keeping the hyperparameters.

        Args:
            subnets: All measured subnets now, as :meth:`~predictors.Predictor.fit` takes them.
            y: Their values, shape ``n``, original units.
            y_std: Optional standard errors (shape ``n``), as for ``fit``.

        Raises:
            ValueError: If the predictor is not fitted, or the inputs are invalid.
        """
        ...

    def update_multi(
        self,
        subnets: Sequence[Subnet],
        Y: torch.Tensor,
        target_index: int,
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """:meth:`update` with the arguments of :meth:`~predictors.Predictor.fit_multi`.

        Predictors with ``uses_related_targets`` re-condition on the related columns too; the
        others update on the target column's measured rows alone.

        Args:
            subnets: ``n`` subnets, the rows of ``Y``.
            Y: ``n x T`` values in original units, NaN where a subnet was not measured.
            target_index: The column to predict.
            y_std: Optional standard errors of the target column (shape ``n``; ignored where the
                target is unmeasured).

        Raises:
            ValueError: If the predictor is not fitted, or the inputs do not match its fit.
        """
        ...


__all__ = ["SupportsBotorchModel", "SupportsCovariance", "SupportsPriorCovariance", "SupportsUpdate"]
