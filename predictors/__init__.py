"""GP-NAS predictors (gpytorch / botorch), baselines, transfer across chips and tasks, active sampling."""

from ._base import Predictor, create_predictor, encode_subnets, list_predictors, register_predictor
from ._baselines import ClosedFormGPNAS, GBTPredictor, RidgePredictor
from ._gp import GPNASPredictor
from ._kernels import KERNELS, GroupHammingKernel, build_kernel
from ._sampling import (
    MaxVarianceStrategy,
    QLogNEHVIStrategy,
    RandomStrategy,
    SamplingStrategy,
    create_strategy,
    list_strategies,
)
from ._transfer import TransferPredictor
from ._transforms import OutputTransform

__all__ = [
    "KERNELS",
    "ClosedFormGPNAS",
    "GBTPredictor",
    "GPNASPredictor",
    "GroupHammingKernel",
    "MaxVarianceStrategy",
    "OutputTransform",
    "Predictor",
    "QLogNEHVIStrategy",
    "RandomStrategy",
    "RidgePredictor",
    "SamplingStrategy",
    "TransferPredictor",
    "build_kernel",
    "create_predictor",
    "create_strategy",
    "encode_subnets",
    "list_predictors",
    "list_strategies",
    "register_predictor",
]
