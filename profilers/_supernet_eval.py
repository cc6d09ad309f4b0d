"""Score of a subnet evaluated with the trained supernet's weights (UFO's "One for All")."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch

from supernet import SearchSpace, Subnet, UFOSpace, UFOSupernet

from ._base import AccuracyProfiler, ProfileResult, Setting
from ._metrics import DISTANCES, TaskMetric, collect_outputs, get_metric

Batches = Iterable[Any]
"""What a dataset callable returns: ``(inputs, labels)`` pairs, :class:`~profilers.EvalBatch`
objects or mappings of their fields."""


class SupernetEvalProfiler(AccuracyProfiler):
    """Extracts ``sub``'s path for ``task`` from a trained supernet and scores it on the task's
    validation data with the task's metric.

    The supernet, the data, the metric and the checkpoint are names resolved on the measuring
    machine (its local config or installed entry points, see :mod:`profilers._local`), so any
    trained supernet, data set and metric plug in without code here, and the server never names
    code to run:

    Settings:
        checkpoint: File saved with ``torch.save(net.state_dict(), path)``, relative to the
            machine's data directory; loaded with ``weights_only=True``. Omit it when
            ``supernet`` already returns trained weights.
        supernet: Name of a ``callable(space)`` returning the supernet module (default ``ufo``,
            gpnas' :func:`supernet.build_supernet`, whose shapes follow ``space.geometry``).
        data: Name of a ``callable(task)`` returning an iterable of validation batches:
            ``(inputs, labels)`` pairs (inputs ``b x C x H x W``, labels ``b``), or
            :class:`~profilers.EvalBatch` objects (or mappings of their fields) carrying what the
            metric needs (identities, cameras, query flags, pairs); built in: ``digits``,
            ``digits-ufo``.
        metric: Name of the :class:`~profilers.TaskMetric` that scores the task (``top1``,
            ``reid``, ``verification``, ``retrieval`` or a ``gpnas.metrics`` plug-in). Default:
            the one the space names for the task (:meth:`~supernet.SearchSpace.evaluation_metric`;
            ``top1`` for classification tasks).
        distance: ``cosine`` or ``euclidean`` between embeddings, for metrics that compare them
            (default: the metric's own, ``cosine`` for the built-ins, as UFO evaluates).
        max_batches: Evaluate at most this many batches (0 = all).
        threads: ``torch.set_num_threads`` during evaluation.

    ``ProfileResult.value`` is the metric's value (top-1 accuracy, mAP, verification accuracy,
    Recall@1, in [0, 1]), ``std`` its standard error (binomial ``sqrt(p (1 - p) / n)`` for
    top-1) and ``repeats`` the number ``n`` of units behind it (examples, valid queries, pairs);
    the environment holds the metric's name and all its values (``metric_values``).

    Raises (at construction):
        ValueError: A setting names nothing on this machine, or ``distance`` is given for a
            metric that compares no embeddings.
    """

    name: ClassVar[str] = "supernet-eval"
    # 2: the task's metric instead of top-1 for every task (tasks without a head changed).
    version: ClassVar[str] = "2"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "checkpoint": Setting(str, None, "state_dict file of the trained supernet", kind="file"),
        "supernet": Setting(str, "ufo", "name of a callable(space) -> supernet", kind="supernet"),
        "data": Setting(
            str,
            required=True,
            help="name of a callable(task) -> iterable of (x, y) or EvalBatch batches",
            kind="dataset",
        ),
        "metric": Setting(
            str, None, "name of the task metric (default: the space's for the task)", kind="metric"
        ),
        "distance": Setting(
            str, None, "embedding distance of reid/verification/retrieval (default cosine)", choices=DISTANCES
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
        self._metrics: dict[str, TaskMetric] = {}
        if self.settings["metric"] is not None:
            self._metric(self.settings["metric"], where.format("metric"))  # fail now, not per subnet
        # What the supernet factory returns: a UFOSupernet, or a module with its interface.
        self._net: UFOSupernet | None = None

    def _metric(self, name: str, where: str) -> TaskMetric:
        """The metric named ``name`` here, with this profiler's ``distance`` (built once)."""
        if name not in self._metrics:
            cls = get_metric(name, self.local, where)
            distance = self.settings["distance"]
            if distance is not None and not cls.uses_distance:
                raise ValueError(
                    f"setting 'distance' of profiler 'supernet-eval': metric {name!r} compares no embeddings"
                )
            self._metrics[name] = cls(distance=distance) if cls.uses_distance else cls()
        return self._metrics[name]

    def task_metric(self, task: str) -> TaskMetric:
        """The metric that scores ``task``: setting ``metric``, else the space's for the task.

        Raises:
            ValueError: The name is no metric on this machine.
        """
        if self.settings["metric"] is not None:
            return self._metric(self.settings["metric"], "setting 'metric' of profiler 'supernet-eval'")
        name = self.space.evaluation_metric(task)
        return self._metric(name, f"the metric of task {task!r} of space {self.space.name!r}")

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
        metric = self.task_metric(task)
        if metric.needs_head and self.space.task_outputs.get(task) is None:
            raise ValueError(
                f"task {task!r} of space {self.space.name!r} has no classification head (its outputs "
                f"are embeddings), so metric {metric.name!r} cannot score it; set 'metric' to one that "
                "compares embeddings (reid, verification, retrieval)"
            )
        model = self.supernet().extract(sub, task=task).eval()
        where = f"data {self.settings['data']!r} for task {task!r}"
        previous = torch.get_num_threads()
        torch.set_num_threads(self.settings["threads"])
        try:
            # no_grad, not inference_mode: the data callable runs inside this block, and tensors it
            # creates and caches (as the digits loader does) must stay usable for training later.
            with torch.no_grad():
                outputs = collect_outputs(
                    model,
                    self._data(task),
                    pairs="pair_outputs" in metric.requires,
                    max_batches=self.settings["max_batches"],
                    where=where,
                )
        finally:
            torch.set_num_threads(previous)
        result = metric(outputs, where)
        environment = {
            "torch": torch.__version__,
            "checkpoint": self.settings["checkpoint"],
            "data": self.settings["data"],
            "examples": len(outputs),
            "task_metric": metric.name,
            "task_metric_version": metric.version,
            "distance": metric.distance,
            "metric_values": result.values,
            "profiler": self.name,
            "profiler_version": self.version,
        }
        return ProfileResult(result.value, result.std, result.count, None, None, 0.0, environment)

    def close(self) -> None:
        self._net = None
