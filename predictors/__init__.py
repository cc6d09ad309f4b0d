"""GP-NAS predictors (gpytorch / botorch), baselines, transfer across chips and tasks, active sampling.

Usage::

    model = create_predictor("gpnas", space, metric="latency_ms").fit(subnets, y)  # y in ms
    mean, std = model.predict(other_subnets)           # both shape n, milliseconds
    X = model.encode(pool)                              # encode once ...
    mean, std = model.predict_encoded(X)                # ... score many times (search loops)
    restored = Predictor.from_bytes(model.to_bytes())   # any registered class

    model = create_predictor("gpnas", space, metric="latency_ms").fit(subnets, y, y_std=y_std)
    # y_std: per-measurement standard errors (ms), optional; latency models use the space's
    # analytic costs as their prior mean by default (cost_prior=None; see predictors._cost).

    deployments = DeploymentLatencyModel.fit(space, subnets, y, y_std=y_std)  # the chip's cost line
    mean, std = deployments.predict(deps, model, input="shared")  # n supernet.Deployment, ms
    mean, std = deployments.predict(deps, (path_mean, path_std))  # paths predicted once, n x T

    transfer = TransferPredictor(space, metric="latency_ms").fit_multi(subnets, Y, target_index)
    # Y: n x T, NaN where unmeasured; predictions are for column target_index.

    picks = create_strategy("max-variance").select(space, model, measured, n=8, candidates=pool, seed=0)
    picks = create_strategy("qlognehvi").select(space, (score_model, latency_model), measured, n=8)

    if isinstance(model, SupportsCovariance) and model.n_train:  # ask for a capability, not a class
        cov = model.posterior_covariance(model.encode(pool))  # len(pool) x len(pool)
    model.fit_multi(subnets, Y, target_index)  # any predictor: those with uses_related_targets
    # learn from Y's other columns too, the others fit column target_index alone

    if isinstance(model, SupportsUpdate) and model.n_train and len(y) < 1.5 * model.n_hyperparameter_fit:
        model.update(subnets, y)  # all points now: one Cholesky under the fitted hyperparameters
    else:
        model.fit(subnets, y)     # a full (marginal-likelihood) refit, now and then

Capabilities (:mod:`predictors._capabilities`): :class:`SupportsCovariance` (posterior covariance
and noise variance: the variance strategies), :class:`SupportsPriorCovariance` (a target's
covariance before its first value: their cold start), :class:`SupportsBotorchModel` (a botorch
GP: ``qlognehvi``), :class:`SupportsUpdate` (condition on new measurements keeping the fitted
hyperparameters: cheap updates between periodic full refits).

Names: predictors ``gpnas-multitask`` (the score default of the service and of ``gpnas
predict``: per-layer weights shared by all tasks or devices, a GP head per target; chosen by the
CV table of benchmarks/results/accuracy_models.md), ``gpnas-transfer`` (the latency default: the
other devices as related outputs, chosen on held-out chips, benchmarks/results/new_chip.md),
``gpnas`` (default kernel ``hamming``; the single-target fallback), and the baselines
``gpnas-closed-form``, ``ridge`` and ``gbt``. The experiments that lost register on
``import predictors.experimental`` (:mod:`predictors.experimental` names them); strategies
``random``, ``max-variance`` (alias ``mutual-information``), ``integrated-variance``
(alias ``alc``; best for a new chip's first measurements, given a
:meth:`TransferPredictor.fit_sources` model), ``qlognehvi``, ``cost-stratified`` (a new chip's
first latency campaign spread evenly over the analytic cost range).
"""

from ._base import (
    Predictor,
    create_predictor,
    encode_choices,
    encode_subnets,
    list_predictors,
    predictor_class,
    register_predictor,
)
from ._baselines import ClosedFormGPNAS, GBTPredictor, RidgePredictor
from ._calibration import CalibratedGPNASPredictor, cv_std_scale, loo_std_scale
from ._capabilities import (
    SupportsBotorchModel,
    SupportsCovariance,
    SupportsPriorCovariance,
    SupportsUpdate,
)
from ._cost import CostModel, CostPriorMean
from ._deployment import STD_RULES, DeploymentLatencyModel, PathLatencyPredictor
from ._encodings import ENCODINGS, layer_encoding
from ._features import summary_dim, summary_features
from ._gp import GPNASPredictor
from ._kernels import KERNELS, GroupHammingKernel, GroupLinearKernel, LayerPairwiseKernel, build_kernel
from ._limits import (
    StopRequestedError,
    TimeLimitError,
    check_time,
    clear_stop,
    fit_gflop,
    request_stop,
    time_limit,
)
from ._multitask import MultiTaskGPNASPredictor
from ._sampling import (
    CostStratifiedStrategy,
    IntegratedVarianceStrategy,
    MaxVarianceStrategy,
    QLogNEHVIStrategy,
    RandomStrategy,
    SamplingStrategy,
    create_strategy,
    list_strategies,
)
from ._transfer import NoRelatedTargetsError, TransferPredictor, transfer_prior
from ._transforms import OutputTransform

__all__ = [
    "ENCODINGS",
    "KERNELS",
    "STD_RULES",
    "CalibratedGPNASPredictor",
    "ClosedFormGPNAS",
    "CostModel",
    "CostPriorMean",
    "CostStratifiedStrategy",
    "DeploymentLatencyModel",
    "GBTPredictor",
    "GPNASPredictor",
    "GroupHammingKernel",
    "GroupLinearKernel",
    "LayerPairwiseKernel",
    "MultiTaskGPNASPredictor",
    "IntegratedVarianceStrategy",
    "MaxVarianceStrategy",
    "OutputTransform",
    "PathLatencyPredictor",
    "Predictor",
    "QLogNEHVIStrategy",
    "RandomStrategy",
    "RidgePredictor",
    "SamplingStrategy",
    "SupportsBotorchModel",
    "SupportsCovariance",
    "SupportsPriorCovariance",
    "SupportsUpdate",
    "NoRelatedTargetsError",
    "TransferPredictor",
    "build_kernel",
    "create_predictor",
    "transfer_prior",
    "create_strategy",
    "cv_std_scale",
    "layer_encoding",
    "loo_std_scale",
    "encode_choices",
    "encode_subnets",
    "list_predictors",
    "list_strategies",
    "predictor_class",
    "register_predictor",
    "summary_dim",
    "summary_features",
    "StopRequestedError",
    "TimeLimitError",
    "check_time",
    "clear_stop",
    "fit_gflop",
    "request_stop",
    "time_limit",
]
