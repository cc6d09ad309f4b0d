"""Score of a subnet evaluated with the trained supernet's weights (UFO's "One for All")."""

from __future__ import annotations

import hashlib
import inspect
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from supernet import SearchSpace, Subnet, UFOSpace, UFOSupernet
from supernet.errors import UserError

from ._base import AccuracyProfiler, ProfileResult, ProfilerUnavailableError, Setting
from ._metrics import DISTANCES, EvalOutputs, TaskMetric, collect_outputs, get_metric

Batches = Iterable[Any]
"""What a dataset callable returns: any iterable of batches (a list, a generator, a
``torch.utils.data.DataLoader``), each an ``(inputs, labels)`` pair, an
:class:`~profilers.EvalBatch` or a mapping of its fields (see :mod:`profilers._metrics`)."""

_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")
_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
_WHERE = "setting {!r} of profiler 'supernet-eval'"


class DeviceUnavailableError(ProfilerUnavailableError, UserError):
    """The ``device`` setting names a CUDA device this machine does not have.

    A :class:`~profilers.ProfilerUnavailableError` (an agent hands its jobs back and stops rather
    than fail them all) and a :class:`ValueError` (a bad setting here).
    """


def _sha256(path: Path) -> str:
    """The SHA-256 (hex) of the file ``path``, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _torch_device(value: str) -> torch.device:
    """The torch device that setting ``device`` names, checked against this machine."""
    if value == "cpu":
        return torch.device("cpu")
    where = _WHERE.format("device")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"{where} is {value!r}, but CUDA is not available on this machine (torch "
            f"{torch.__version__}: torch.cuda.is_available() is False); use device='cpu' or a "
            "machine with a GPU"
        )
    device = torch.device(value)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceUnavailableError(
            f"{where} is {value!r}, but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}"
        )
    return device


def _accepts_batch_size(fn: Callable[..., Any]) -> bool | None:
    """Whether ``fn`` takes a ``batch_size`` keyword (``None``: its signature cannot be read)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()) or (
        "batch_size" in parameters and parameters["batch_size"].kind in keyword
    )


def _nbytes(out: EvalOutputs) -> int:
    return sum(t.numel() * t.element_size() for t in vars(out).values() if isinstance(t, torch.Tensor))


class OutputCache:
    """A small LRU cache of :class:`~profilers.EvalOutputs`, bounded by entries and by bytes.

    An entry larger than ``max_bytes`` is not kept; adding one evicts the least recently used
    entries until both bounds hold. ``max_entries=0`` keeps nothing.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[Hashable, tuple[EvalOutputs, int]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> EvalOutputs | None:
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: Hashable, out: EvalOutputs) -> None:
        size = _nbytes(out)
        if self.max_entries == 0 or size > self.max_bytes:
            return
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        self._items[key] = (out, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= self._items.popitem(last=False)[1][1]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0


DEFAULT_SUPERNET = "ufo"
"""The ``supernet`` setting's default: :func:`supernet.build_supernet`, randomly initialised."""


class SupernetEvalProfiler(AccuracyProfiler):
    """Extracts ``sub``'s path for ``task`` from a trained supernet and scores the dense subnet
    on the task's validation data with the task's metric.

    The supernet, the data, the metric and the checkpoint are names resolved on the measuring
    machine (its local config or installed entry points, see :mod:`profilers._local`), so any
    trained supernet, data set and metric plug in without code here, and the server never names
    code to run.

    **The data contract.** Setting ``data`` names a callable on this machine that is called once
    per evaluated (subnet, task) as ``factory(task)``, or as ``factory(task, batch_size=N)`` when
    setting ``batch_size`` is given (the profiler then checks at construction that the callable
    takes a ``batch_size`` keyword, and at evaluation that no batch holds more than ``N`` items).
    It returns an iterable of batches, typically a ``torch.utils.data.DataLoader`` (with
    ``pin_memory=True`` for CUDA), or a list or generator. A batch is an ``(inputs, labels)``
    pair (a DataLoader's default collation of ``(image, label)`` samples), a mapping of
    :class:`~profilers.EvalBatch` field names (its default collation of dict samples) or an
    :class:`~profilers.EvalBatch`. ``inputs`` are float ``b x C x H x W`` images, preprocessed
    as the supernet expects; per metric, a batch carries:

    * ``top1``: ``labels`` (class indices);
    * ``reid``: ``labels`` (identities, ``-1`` junk), ``is_query`` (booleans: query or gallery
      item, mixed freely across batches) and optionally ``cameras``;
    * ``verification``: ``pair_inputs`` (the second image of each pair) and ``same`` (booleans);
    * ``retrieval``: ``labels`` (classes).

    **Outputs are computed once per subnet and task**: all of a metric's values (mAP and CMC,
    Recall@1/10/...) come from one pass over the data, and the outputs are kept in a small LRU
    cache (``cache_entries``, ``cache_mb``), so a second :meth:`score` of the same subnet, task
    and checkpoint in this profiler runs no model (its environment says ``outputs_cached``).

    Settings:
        checkpoint: File saved with ``torch.save(net.state_dict(), path)``, relative to the
            machine's data directory; loaded with ``weights_only=True``. Omit it when
            ``supernet`` already returns trained weights.
        random_weights: Score gpnas' randomly initialised supernet. With the default ``supernet``
            give it or ``checkpoint`` (one of them: random weights are never a silent default).
        supernet: Name of a ``callable(space)`` returning the supernet module (default ``ufo``,
            gpnas' :func:`supernet.build_supernet`, whose shapes follow ``space.geometry``).
        data: Name of the data factory above; built in: ``digits``, ``digits-ufo``.
        batch_size: Passed to the data factory as ``batch_size=N`` (default: not passed, the
            factory's own batch size).
        metric: Name of the :class:`~profilers.TaskMetric` that scores the task (``top1``,
            ``reid``, ``verification``, ``retrieval`` or a ``gpnas.metrics`` plug-in). Default:
            the one the space names for the task (:meth:`~supernet.SearchSpace.evaluation_metric`;
            ``top1`` for classification tasks).
        distance: ``cosine`` or ``euclidean`` between embeddings, for metrics that compare them
            (default: the metric's own, ``cosine`` for the built-ins, as UFO evaluates).
        device: ``cpu`` (default), ``cuda`` or ``cuda:N``: where the extracted subnet runs (the
            supernet stays on the CPU); inputs are moved with ``non_blocking=True``, outputs
            gathered on the CPU as float32.
        amp: Run the subnet under ``torch.autocast`` (CUDA only) in ``amp_dtype``
            (``float16``, default, or ``bfloat16``); the metrics still compute in float32.
        progress: A progress bar on stderr (images, images/s); default: only when stderr is a
            terminal; ``false``: never.
        cache_entries: Outputs of this many (subnet, task) kept for repeated scores (0: none;
            default 4).
        cache_mb: At most this many MiB of kept outputs (default 512; larger outputs are not
            kept).
        max_batches: Evaluate at most this many batches (0 = all).
        threads: ``torch.set_num_threads`` during evaluation.

    ``ProfileResult.value`` is the metric's value (top-1 accuracy, mAP, verification accuracy,
    Recall@1, in [0, 1]), ``std`` its standard error (binomial ``sqrt(p (1 - p) / n)`` for
    top-1) and ``repeats`` the number ``n`` of units behind it (examples, valid queries, pairs);
    the environment holds the metric's name and all its values (``metric_values``), the device,
    the batch size, whether the outputs came from the cache and the seconds the model ran, and
    ``weights``: the checkpoint file's sha256, ``random``, or ``supernet NAME`` for a supernet
    callable of the machine's own.

    Raises (at construction):
        ValueError: A setting names nothing on this machine, ``distance`` is given for a metric
            that compares no embeddings, ``batch_size`` is given for a data factory that takes no
            ``batch_size`` keyword, or ``device`` is malformed or ``amp`` is set for the CPU.
        DeviceUnavailableError: ``device`` is a CUDA device this machine lacks (a ValueError
            naming ``device`` and a :class:`~profilers.ProfilerUnavailableError`).
    """

    name: ClassVar[str] = "supernet-eval"
    # 2: the task's metric instead of top-1 for every task (tasks without a head changed).
    version: ClassVar[str] = "2"
    settings_spec: ClassVar[dict[str, Setting]] = {
        "checkpoint": Setting(str, None, "state_dict file of the trained supernet", kind="file"),
        "random_weights": Setting(
            bool, False, "score the randomly initialised supernet (named explicitly: no checkpoint)"
        ),
        "supernet": Setting(str, DEFAULT_SUPERNET, "name of a callable(space) -> supernet", kind="supernet"),
        "data": Setting(
            str,
            required=True,
            help="name of a callable(task[, batch_size=N]) -> DataLoader or iterable of batches",
            kind="dataset",
        ),
        "batch_size": Setting(
            int, None, "passed to the data callable as batch_size=N (default: its own)", minimum=1
        ),
        "metric": Setting(
            str, None, "name of the task metric (default: the space's for the task)", kind="metric"
        ),
        "distance": Setting(
            str, None, "embedding distance of reid/verification/retrieval (default cosine)", choices=DISTANCES
        ),
        "device": Setting(str, "cpu", "torch device of the evaluation: cpu, cuda or cuda:N"),
        "amp": Setting(bool, False, "autocast the subnet on CUDA (outputs gathered in float32)"),
        "amp_dtype": Setting(str, "float16", "dtype of amp", choices=tuple(_AMP_DTYPES)),
        "progress": Setting(bool, None, "progress bar on stderr (default: when stderr is a terminal)"),
        "cache_entries": Setting(int, 4, "outputs of this many (subnet, task) kept (0 = none)", minimum=0),
        "cache_mb": Setting(int, 512, "MiB of kept outputs at most", minimum=0),
        "max_batches": Setting(int, 0, "evaluate at most this many batches (0 = all)", minimum=0),
        "threads": Setting(int, 1, "torch threads during evaluation", minimum=1),
    }

    @classmethod
    def validate_settings(cls, settings: Mapping[str, Any], portable: bool = True) -> dict[str, Any]:
        """:meth:`Profiler.validate_settings`, and ``device`` well formed, ``amp`` only on CUDA
        (checked without touching hardware, so a server refuses them at registration)."""
        out = super().validate_settings(settings, portable)
        if not _DEVICE.match(out["device"]):
            raise ValueError(
                f"{_WHERE.format('device')} must be 'cpu', 'cuda' or 'cuda:N', got {out['device']!r}"
            )
        if out["amp"] and out["device"] == "cpu":
            raise ValueError(f"{_WHERE.format('amp')}: autocast needs a CUDA device; 'device' is 'cpu'")
        # gpnas' own supernet starts from random weights: scoring those must be asked for by name.
        if out["supernet"] == DEFAULT_SUPERNET and (out["checkpoint"] is None) == (not out["random_weights"]):
            raise ValueError(
                f"{_WHERE.format('checkpoint')}: name the weights to score, either 'checkpoint' (a trained "
                "supernet's file) or 'random_weights': true (one of them; there is no default)"
            )
        if out["checkpoint"] is not None and out["random_weights"]:
            raise ValueError(f"{_WHERE.format('random_weights')}: give it or 'checkpoint', not both")
        return out

    def __init__(self, space: SearchSpace, **settings: Any) -> None:
        super().__init__(space, **settings)
        if not isinstance(space, UFOSpace):
            raise ValueError(f"profiler 'supernet-eval' needs a UFO space; {space.name!r} has no supernet")
        self._device = _torch_device(self.settings["device"])
        self._factory = self.local.resolve_callable(
            "supernet", self.settings["supernet"], _WHERE.format("supernet")
        )
        self._data: Callable[..., Batches] = self.local.resolve_callable(
            "dataset", self.settings["data"], _WHERE.format("data")
        )
        if self.settings["batch_size"] is not None and _accepts_batch_size(self._data) is False:
            raise ValueError(
                f"{_WHERE.format('batch_size')}: dataset {self.settings['data']!r} takes no batch_size "
                "keyword; define it as callable(task, batch_size=...) or leave 'batch_size' unset"
            )
        self._checkpoint = self.resolve_file("checkpoint") if self.settings["checkpoint"] else None
        self._metrics: dict[str, TaskMetric] = {}
        if self.settings["metric"] is not None:
            self._metric(self.settings["metric"], _WHERE.format("metric"))  # fail now, not per subnet
        # What the supernet factory returns: a UFOSupernet, or a module with its interface.
        self._net: UFOSupernet | None = None
        # What every score's environment says the weights were (set when the supernet loads).
        self._weights: str | None = None
        self._cache = OutputCache(self.settings["cache_entries"], self.settings["cache_mb"] << 20)

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
        """The supernet with the checkpoint's weights (loaded on first use, kept on the CPU)."""
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
                self._weights = _sha256(Path(self._checkpoint))
            else:
                self._weights = (
                    "random" if self.settings["random_weights"] else f"supernet {self.settings['supernet']}"
                )
            self._net = net.eval()
        return self._net

    def batches(self, task: str) -> Batches:
        """What the data factory returns for ``task`` (with ``batch_size=N`` when that is set).

        Raises:
            ValueError: It returned something that is not an iterable, naming setting ``data``.
        """
        size = self.settings["batch_size"]
        out = self._data(task) if size is None else self._data(task, batch_size=size)
        if not isinstance(out, Iterable):
            raise ValueError(
                f"{_WHERE.format('data')}: dataset {self.settings['data']!r} returned a "
                f"{type(out).__name__} for task {task!r}, not an iterable of batches (e.g. a DataLoader)"
            )
        return out

    def outputs(self, sub: Subnet | str, task: str, pairs: bool = False) -> tuple[EvalOutputs, bool]:
        """The extracted subnet's outputs on ``task``'s data, and whether they came from the cache.

        Args:
            sub: A subnet of the space or its arch string.
            task: One of the space's tasks.
            pairs: Also the outputs of the second image of each pair.
        """
        sub = self.subnet(sub)
        key = (self.space.format(sub), task, self.settings["checkpoint"], pairs)
        cached = self._cache.get(key)
        if cached is not None:
            return cached, True
        model = self.supernet().extract(sub, task=task).eval().to(self._device)
        amp = _AMP_DTYPES[self.settings["amp_dtype"]] if self.settings["amp"] else None
        previous = torch.get_num_threads()
        torch.set_num_threads(self.settings["threads"])
        try:
            # The data factory and the iteration run outside inference mode (tensors a loader
            # creates and caches, as the digits loader does, must stay usable for training);
            # collect_outputs runs only the model under torch.inference_mode().
            out = collect_outputs(
                model,
                self.batches(task),
                pairs=pairs,
                max_batches=self.settings["max_batches"],
                where=f"data {self.settings['data']!r} for task {task!r}",
                device=self._device,
                autocast=amp,
                batch_size=self.settings["batch_size"],
                progress=self.settings["progress"],
                description=f"supernet-eval {task}",
            )
        finally:
            torch.set_num_threads(previous)
            del model
        self._cache.put(key, out)
        return out, False

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
        start = time.perf_counter()
        outputs, cached = self.outputs(sub, task, pairs="pair_outputs" in metric.requires)
        seconds = time.perf_counter() - start
        result = metric(outputs, f"data {self.settings['data']!r} for task {task!r}")
        device = str(self._device)
        environment = {
            "torch": torch.__version__,
            "checkpoint": self.settings["checkpoint"],
            # The checkpoint file's sha256, "random", or the supernet callable that gave trained weights.
            "weights": self._weights,
            "data": self.settings["data"],
            "examples": len(outputs),
            "task_metric": metric.name,
            "task_metric_version": metric.version,
            "distance": metric.distance,
            "metric_values": result.values,
            "device": device,
            "gpu": torch.cuda.get_device_name(self._device) if self._device.type == "cuda" else None,
            "amp": self.settings["amp_dtype"] if self.settings["amp"] else None,
            "batch_size": self.settings["batch_size"],
            "outputs_cached": cached,
            "eval_seconds": 0.0 if cached else seconds,
            "profiler": self.name,
            "profiler_version": self.version,
        }
        return ProfileResult(result.value, result.std, result.count, None, None, 0.0, environment)

    def close(self) -> None:
        self._net = None
        self._cache.clear()
