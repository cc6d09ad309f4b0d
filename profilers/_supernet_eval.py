"""Accuracy of a subnet evaluated with the trained supernet's weights (UFO's "One for All")."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from supernet import SearchSpace, Subnet, UFOSpace

from ._base import AccuracyProfiler, ProfileResult, Setting, resolve_import_path

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class SupernetEvalProfiler(AccuracyProfiler):
    """Extracts ``sub``'s path for ``task`` from a trained supernet and measures its top-1
    accuracy on the task's validation batches.

    The supernet and the data are named by import path, so any trained supernet and data set
    plug in without code here:

    Settings:
        checkpoint: File saved with ``torch.save(net.state_dict(), path)``; loaded with
            ``weights_only=True``. Omit it when ``supernet`` already returns trained weights.
        supernet: ``"pkg.module:callable"``; ``callable(space)`` returns the supernet module
            (default ``supernet:build_supernet``, whose shapes follow ``space.geometry``).
        data: ``"pkg.module:callable"``; ``callable(task)`` returns an iterable of
            ``(inputs, labels)`` validation batches (inputs ``b x C x H x W``, labels ``b``).
        max_batches: Evaluate at most this many batches (0 = all).
        threads: ``torch.set_num_threads`` during evaluation.

    ``ProfileResult.value`` is the accuracy in [0, 1], ``std`` its binomial standard error
    ``sqrt(p (1 - p) / n)`` and ``repeats`` the number ``n`` of evaluated examples.
    """

    name: ClassVar[str] = "supernet-eval"
    version: ClassVar[str] = "1"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "checkpoint": Setting(str, None, "state_dict file of the trained supernet"),
        "supernet": Setting(str, "supernet:build_supernet", "import path of callable(space) -> supernet"),
        "data": Setting(
            str, required=True, help="import path of callable(task) -> iterable of (x, y) batches"
        ),
        "max_batches": Setting(int, 0, "evaluate at most this many batches (0 = all)", minimum=0),
        "threads": Setting(int, 1, "torch threads during evaluation", minimum=1),
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        if not isinstance(space, UFOSpace):
            raise ValueError(f"profiler 'supernet-eval' needs a UFO space; {space.name!r} has no supernet")
        self._factory = resolve_import_path(self.settings["supernet"], "setting 'supernet'")
        self._data: Callable[[str], Batches] = resolve_import_path(self.settings["data"], "setting 'data'")
        if not callable(self._factory) or not callable(self._data):
            raise ValueError("settings 'supernet' and 'data' of profiler 'supernet-eval' must name callables")
        self._net: nn.Module | None = None

    def supernet(self) -> nn.Module:
        """The supernet with the checkpoint's weights (loaded on first use)."""
        if self._net is None:
            net = self._factory(self.space)
            if self.settings["checkpoint"]:
                try:
                    state = torch.load(self.settings["checkpoint"], map_location="cpu", weights_only=True)
                except FileNotFoundError:
                    raise ValueError(
                        "setting 'checkpoint' of profiler 'supernet-eval': "
                        f"no such file {self.settings['checkpoint']!r}"
                    ) from None
                net.load_state_dict(state)
            self._net = net.eval()
        return self._net

    def score(self, sub: Subnet | str, task: str) -> ProfileResult:
        sub = self.subnet(sub)
        assert isinstance(self.space, UFOSpace)
        self.space.check_task(task)
        model = self.supernet().extract(sub, task=task).eval()
        previous = torch.get_num_threads()
        torch.set_num_threads(self.settings["threads"])
        correct = total = batches = 0
        try:
            with torch.inference_mode():
                for x, y in self._data(task):
                    logits = model(x)
                    correct += int((logits.argmax(dim=-1) == y).sum())
                    total += int(y.numel())
                    batches += 1
                    if self.settings["max_batches"] and batches >= self.settings["max_batches"]:
                        break
        finally:
            torch.set_num_threads(previous)
        if total == 0:
            raise ValueError(f"data {self.settings['data']!r} yielded no examples for task {task!r}")
        accuracy = correct / total
        environment = {
            "torch": torch.__version__,
            "checkpoint": self.settings["checkpoint"],
            "data": self.settings["data"],
            "examples": total,
            "profiler": self.name,
            "profiler_version": self.version,
        }
        return ProfileResult(
            accuracy, math.sqrt(accuracy * (1 - accuracy) / total), total, None, None, 0.0, environment
        )

    def close(self) -> None:
        self._net = None
