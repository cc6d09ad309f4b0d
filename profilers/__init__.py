"""Latency and accuracy profilers and their plug-in registry (the device agent that runs them
for the service is :mod:`search_service.agent`).

A profiler is a class registered under the entry-point group ``gpnas.profilers``; built-ins are
registered the same way in gpnas' ``pyproject.toml``:

=================== ============================== ==========
name                class                          metric
=================== ============================== ==========
``torch-cpu``       :class:`TorchCPUProfiler`       latency_ms
``onnxruntime-cpu`` :class:`OnnxRuntimeCPUProfiler` latency_ms
``torch-cuda``      :class:`TorchCUDAProfiler`      latency_ms
``table``           :class:`TableLatencyProfiler`   latency_ms
``table-score``     :class:`TableScoreProfiler`     score
``supernet-eval``   :class:`SupernetEvalProfiler`   score
=================== ============================== ==========

``supernet-eval`` scores a task with a *task metric*, a :class:`TaskMetric` registered under the
entry-point group ``gpnas.metrics`` the same way (built in: ``top1``, ``reid``, ``verification``,
``retrieval``; see :mod:`profilers._metrics` for the protocols).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supernet.lazy import lazy_attributes

from ._base import (
    AccuracyProfiler,
    LatencyProfiler,
    Profiler,
    ProfileResult,
    ProfilerUnavailableError,
    Setting,
)
from ._interleave import (
    InterleavedEstimate,
    ReferenceSummary,
    RoundTimings,
    estimate_rounds,
    outlier_rounds,
    summarise_reference,
    time_rounds,
)
from ._local import LocalConfig, resolve_import_path
from ._registry import (
    ENTRY_POINT_GROUP,
    available_profilers,
    create_profiler,
    get_profiler_class,
    validate_settings,
)
from ._table import TableLatencyProfiler, TableScoreProfiler
from ._timing import TimingStats, base_environment, cpu_model, summarize, time_repeats

if TYPE_CHECKING:
    from ._metrics import (
        METRICS_ENTRY_POINT_GROUP,
        EvalBatch,
        EvalOutputs,
        MetricResult,
        RankedQueries,
        ReIDMetric,
        RetrievalMetric,
        TaskMetric,
        Top1Metric,
        VerificationMetric,
        as_eval_batch,
        available_metrics,
        best_threshold,
        collect_outputs,
        create_metric,
        distance_matrix,
        get_metric,
        kfold_indices,
        pair_distances,
        reid_rankings,
        retrieval_ranks,
        verification_folds,
    )
    from ._onnx import OnnxRuntimeCPUProfiler
    from ._supernet_eval import DeviceUnavailableError, SupernetEvalProfiler
    from ._torch import ExtractedModelProfiler, TorchCPUProfiler, TorchCUDAProfiler
    from ._training import (
        DIGITS_TASKS,
        digits_batches,
        digits_eval_batches,
        digits_space,
        extreme_subnet,
        train_sandwich,
    )

# The profilers that run models need torch; they load on first use of one of their names (those
# imported under TYPE_CHECKING above), so that the device agent and the table profilers run on
# machines without torch. tests/test_layers.py checks both.
_TORCH_MODULES = ("._torch", "._onnx", "._supernet_eval", "._metrics", "._training")

__all__ = [
    "DIGITS_TASKS",
    "ENTRY_POINT_GROUP",
    "METRICS_ENTRY_POINT_GROUP",
    "AccuracyProfiler",
    "DeviceUnavailableError",
    "EvalBatch",
    "EvalOutputs",
    "ExtractedModelProfiler",
    "InterleavedEstimate",
    "LatencyProfiler",
    "LocalConfig",
    "MetricResult",
    "OnnxRuntimeCPUProfiler",
    "ProfileResult",
    "Profiler",
    "ProfilerUnavailableError",
    "RankedQueries",
    "ReIDMetric",
    "ReferenceSummary",
    "RetrievalMetric",
    "RoundTimings",
    "Setting",
    "SupernetEvalProfiler",
    "TableLatencyProfiler",
    "TableScoreProfiler",
    "TaskMetric",
    "TimingStats",
    "Top1Metric",
    "TorchCPUProfiler",
    "TorchCUDAProfiler",
    "VerificationMetric",
    "as_eval_batch",
    "available_metrics",
    "available_profilers",
    "base_environment",
    "best_threshold",
    "collect_outputs",
    "cpu_model",
    "create_metric",
    "create_profiler",
    "digits_batches",
    "digits_eval_batches",
    "digits_space",
    "distance_matrix",
    "estimate_rounds",
    "extreme_subnet",
    "get_metric",
    "get_profiler_class",
    "kfold_indices",
    "outlier_rounds",
    "pair_distances",
    "reid_rankings",
    "resolve_import_path",
    "retrieval_ranks",
    "summarise_reference",
    "summarize",
    "time_repeats",
    "time_rounds",
    "train_sandwich",
    "validate_settings",
    "verification_folds",
]

if not TYPE_CHECKING:  # type checkers read the imports above instead
    __getattr__ = lazy_attributes(__name__, _TORCH_MODULES, __all__)
