"""Latency of the exported ONNX subnet under onnxruntime's CPU execution provider."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from supernet import DeploymentViT, InputMode, SearchSpace

from ._base import Setting
from ._torch import CLOCK_SETTING, COMMON_SETTINGS, ExtractedModelProfiler, cpu_clock


class OnnxRuntimeCPUProfiler(ExtractedModelProfiler):
    """Exports each extracted subnet to ONNX (``supernet.export_onnx``) and times
    ``InferenceSession.run`` on the CPU execution provider.

    Settings (besides the common ones):
        threads: ``intra_op_num_threads`` (inter-op is 1, execution sequential); recorded.
        clock: ``wall`` (default) or ``cpu`` (the timing thread's CPU time, for shared machines).
        optimization: onnxruntime graph optimisation level.
    """

    name: ClassVar[str] = "onnxruntime-cpu"
    version: ClassVar[str] = "2"
    measures_deployments: ClassVar[bool] = True
    settings_spec: ClassVar[dict[str, Setting]] = {
        **COMMON_SETTINGS,
        "threads": Setting(int, 1, "onnxruntime intra-op threads", minimum=1),
        "clock": CLOCK_SETTING,
        "optimization": Setting(
            str, "all", "graph optimisation level", choices=("disable", "basic", "extended", "all")
        ),
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        self.clock = cpu_clock(self.name, self.settings)

    def _prepare(self, model: nn.Module) -> Callable[[], float]:
        from supernet import export_onnx

        return self._timed(lambda path: export_onnx(model, path, batch_size=self.settings["batch_size"]))

    def _prepare_deployment(self, model: DeploymentViT, input: InputMode) -> Callable[[], float]:
        """One run of the deployment's graph (``export_deployment_onnx``: every task's output, the
        shared layers once on a shared input, one input per task otherwise)."""
        from supernet import export_deployment_onnx

        batch = self.settings["batch_size"]
        return self._timed(lambda path: export_deployment_onnx(model, path, input=input, batch_size=batch))

    def _timed(self, export: Callable[[Path], object]) -> Callable[[], float]:
        """``run_once`` of the graph ``export`` writes: every input fed the example images."""
        x = self.example_input()
        with tempfile.TemporaryDirectory(prefix="gpnas-onnx-") as workdir:
            # The session holds the graph in memory once created, so the file can go at once.
            path = Path(workdir) / "model.onnx"
            export(path)
            session = self._session_for(path)
        feed = {i.name: x.numpy() for i in session.get_inputs()}
        clock = self.clock

        def run_once() -> float:
            start = clock()
            session.run(None, feed)
            return (clock() - start) * 1e3

        return run_once

    def _session_for(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings["threads"]
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.settings["optimization"]]
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _runtime_environment(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "runtime": "onnxruntime",
            "onnxruntime": ort.__version__,
            "provider": "CPUExecutionProvider",
            "threads": self.settings["threads"],
            "clock": self.settings["clock"],
            "optimization": self.settings["optimization"],
            "dtype": "fp32",
        }
