"""Predictors that were tried and lost, registered by importing this module (benchmarks, tests).

The default registry (:mod:`predictors`) holds what the service and ``gpnas predict`` use: the
score default ``gpnas-multitask``, the latency default ``gpnas-transfer``, the single-target
fallback ``gpnas``, and the baselines the design names (``gpnas-closed-form``, ``ridge``,
``gbt``). The experiments below stay runnable so that benchmarks/accuracy_models.py and
benchmarks/predictors.py can compare them again (their tables:
benchmarks/results/accuracy_models.md and predictors.md)::

    import predictors.experimental  # noqa: F401  (registers the names below)

    create_predictor("stack", space, metric="score")

Names: ``gpnas-rbf``, ``gpnas-ordinal`` (GP-NAS with other kernels), ``gpnas-calibrated``
(GP-NAS with a leave-one-out or CV std rescale), ``gpnas-layer``, ``gpnas-layer-additive``,
``gpnas-layer-pairwise`` (layer-structured kernels of :mod:`predictors._kernels`),
``gpnas-multitask-linear`` (linear heads), ``ridge-summary`` (one-hot plus
:func:`~predictors.summary_features`), ``ridge-joint``, ``ridge-depth``, ``ridge-from-end``
(:mod:`predictors._encodings`), ``ridge-rank`` (soft-Kendall ranking loss), ``stack`` and
``stack-multitask`` (stacked ensembles, a GP on top).
"""

from ._base import register_alias, register_predictor
from ._calibration import CalibratedGPNASPredictor
from ._ensemble import MultiTaskStackPredictor, StackedEnsemblePredictor
from ._ranking import PairwiseRankPredictor

register_predictor("gpnas-calibrated")(CalibratedGPNASPredictor)
register_predictor("ridge-rank")(PairwiseRankPredictor)
register_predictor("stack")(StackedEnsemblePredictor)
register_predictor("stack-multitask")(MultiTaskStackPredictor)

register_alias("gpnas-rbf", "gpnas", kernel="rbf")
# The ordinal GP's std covered 84% of held-out UFO values within ±1.645 std (target 85-95%,
# benchmarks/results/accuracy_models.md): rescale it by inner cross-validation.
register_alias("gpnas-ordinal", "gpnas-calibrated", kernel="ordinal-ard", calibration="cv")
register_alias("gpnas-layer", "gpnas", kernel="layer-linear")
register_alias("gpnas-layer-additive", "gpnas", kernel="layer-additive")
register_alias("gpnas-layer-pairwise", "gpnas", kernel="layer-pairwise")
register_alias("gpnas-multitask-linear", "gpnas-multitask", head="linear")
register_alias("ridge-summary", "ridge", summary=True)
register_alias("ridge-joint", "ridge", encoding="joint")
register_alias("ridge-depth", "ridge", encoding="depth")
register_alias("ridge-from-end", "ridge", encoding="from-end")

__all__ = ["MultiTaskStackPredictor", "PairwiseRankPredictor", "StackedEnsemblePredictor"]
