"""Accuracy of a subnet evaluated with the trained supernet's weights (UFO's "One for All")."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from supernet import SearchSpace, Subnet, UFOSpace, UFOSupernet

from ._base import AccuracyProfiler, ProfileResult, Setting

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class SupernetEvalProfiler(AccuracyProfiler):
    """Extracts ``sub``'s path for ``task`` from a trained supernet and measures its top-1
    accuracy on the task's validation batches.

    The supernet, the data and the checkpoint are names resolved on the measuring machine (its
    local config or installed entry points, see :mod:`profilers._local`), so any trained
    supernet and data set plug in without code here, and the server never names code to run:

    Settings:
        checkpoint: File saved with ``torch.save(net.state_dict(), path)``, relative to the
            machine's data directory; loaded with ``weights_only=True``. Omit it when
            ``supernet`` already returns trained weights.
        supernet: Name of a ``callable(space)`` returning the supernet module (default ``ufo``,
            gpnas' :func:`supernet.build_supernet`, whose shapes follow ``space.geometry``).
        data: Name of a ``callable(task)`` returning an iterable of ``(inputs, labels)``
            validation batches (inputs ``b x C x H x W``, labels ``b``); built in: ``digits``.
        max_batches: Evaluate at most this many batches (0 = all).
        threads: ``torch.set_num_threads`` during evaluation.

    ``ProfileResult.value`` is the accuracy in [0, 1], ``std`` its binomial standard error
    ``sqrt(p (1 - p) / n)`` and ``repeats`` the number ``n`` of evaluated examples.
    """

    name: ClassVar[str] = "supernet-eval"
    version: ClassVar[str] = "1"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "checkpoint": Setting(str, None, "state_dict file of the trained supernet", kind="file"),
        "supernet": Setting(str, "ufo", "name of a callable(space) -> supernet", kind="supernet"),
        "data": Setting(
            str, required=True, help="name of a callable(task) -> iterable of (x, y) batches", kind="dataset"
        ),
        "max_batches": Setting(int, 0, "evaluate at most this many batches (0 = all)", minimum=0),
        "threads": Setting(int, 1, "torch threads during evaluation", minimum=1),
    }

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        if not isinstance(space, UFOSpace):
            raise ValueError(f"profiler 'supernet-eval' needs a UFO space; {space.name!r} has no supernet")
        where = "setting {!r} of profiler 'supernet-eval'"
        self._factory = self.local.resolve_callable(
            "supernet", self.settings["supernet"], where.format("supernet")
        )
        self._data: Callable[[str], Batches] = self.local.resolve_callable(
            "dataset", self.settings["data"], where.format("data")
        )
        self._checkpoint = self.resolve_file("checkpoint") if self.settings["checkpoint"] else None
        # What the supernet factory returns: a UFOSupernet, or a module with its interface.
        self._net: UFOSupernet | None = None

    def supernet(self) -> UFOSupernet:
        """The supernet with the checkpoint's weights (loaded on first use)."""
        if self._net is None:
            net = self._factory(self.space)
            if self._checkpoint is not None:
                try:
                    state = torch.load(self._checkpoint, map_location="cpu", weights_only=True)
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
            # no_grad, not inference_mode: the data callable runs inside this block, and tensors it
            # creates and caches (as the digits loader does) must stay usable for training later.
            with torch.no_grad():
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
