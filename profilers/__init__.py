"""Latency and accuracy profilers, their plug-in registry, and the device agent.

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
"""

from ._agent import AgentError, DeviceAgent
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
from ._onnx import OnnxRuntimeCPUProfiler
from ._registry import (
    ENTRY_POINT_GROUP,
    available_profilers,
    create_profiler,
    get_profiler_class,
    validate_settings,
)
from ._supernet_eval import SupernetEvalProfiler
from ._table import TableLatencyProfiler, TableScoreProfiler
from ._timing import TimingStats, base_environment, cpu_model, summarize, time_repeats
from ._torch import ExtractedModelProfiler, TorchCPUProfiler, TorchCUDAProfiler
from ._training import DIGITS_TASKS, digits_batches, digits_space, extreme_subnet, train_sandwich

__all__ = [
    "DIGITS_TASKS",
    "ENTRY_POINT_GROUP",
    "AccuracyProfiler",
    "AgentError",
    "DeviceAgent",
    "ExtractedModelProfiler",
    "InterleavedEstimate",
    "LatencyProfiler",
    "LocalConfig",
    "OnnxRuntimeCPUProfiler",
    "ProfileResult",
    "Profiler",
    "ProfilerUnavailableError",
    "ReferenceSummary",
    "RoundTimings",
    "Setting",
    "SupernetEvalProfiler",
    "TableLatencyProfiler",
    "TableScoreProfiler",
    "TimingStats",
    "TorchCPUProfiler",
    "TorchCUDAProfiler",
    "available_profilers",
    "base_environment",
    "cpu_model",
    "create_profiler",
    "digits_batches",
    "digits_space",
    "estimate_rounds",
    "extreme_subnet",
    "get_profiler_class",
    "outlier_rounds",
    "resolve_import_path",
    "summarise_reference",
    "summarize",
    "time_repeats",
    "time_rounds",
    "train_sandwich",
    "validate_settings",
]
