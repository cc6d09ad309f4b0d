"""GP-NAS predictors (gpytorch / botorch), baselines, transfer across chips and tasks, active sampling."""

from ._base import Predictor, create_predictor, encode_subnets, list_predictors, register_predictor
from ._baselines import ClosedFormGPNAS, GBTPredictor, RidgePredictor
from ._gp import GPNASPredictor
from ._kernels import KERNELS, GroupHammingKernel, build_kernel
from ._transfer import TransferPredictor
from ._transforms import OutputTransform

__all__ = [
    "KERNELS",
    "ClosedFormGPNAS",
    "GBTPredictor",
    "GPNASPredictor",
    "GroupHammingKernel",
    "OutputTransform",
    "Predictor",
    "RidgePredictor",
    "TransferPredictor",
    "build_kernel",
    "create_predictor",
    "encode_subnets",
    "list_predictors",
    "register_predictor",
]
