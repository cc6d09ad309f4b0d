"""Abstract profiler classes, their result type and declarative settings.

Modelled on Optuna's ``BaseSampler``: a small abstract base class per role documents the
contract, concrete profilers subclass it and are registered by name under the entry-point group
``gpnas.profilers`` (see :mod:`profilers._registry`).

A *device* is a profiler plus its settings (``torch-cpu`` with ``threads=1, batch_size=1`` is a
different device from ``torch-cpu`` with ``batch_size=8``), so every profiler declares its
settings in :attr:`Profiler.settings_spec`; unknown names and bad values are rejected with a
:class:`ValueError` naming the setting, before any hardware is touched.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from supernet import Metric, SearchSpace, Subnet

from ._local import LocalConfig, SettingKind, check_reference_name, check_relative_path

if TYPE_CHECKING:
    # Only in annotations: deployments are timed by the profilers that run models (torch).
    from supernet import Deployment, InputMode


@dataclass(frozen=True)
class ProfileResult:
    """One measurement of one subnet.

    Attributes:
        value: The reported number: median latency in milliseconds per batch for latency
            profilers, the score (higher is better) for accuracy profilers.
        std: Spread of a single repeat (``1.4826 * MAD`` of the timings, a robust standard
            deviation); 0 for replayed tables and deterministic evaluations.
        repeats: Number of timed repeats (or evaluated batches) behind ``value``.
        p10: 10th percentile of the repeats (``value`` when there is a single one).
        p90: 90th percentile of the repeats.
        rse: Relative standard error of ``value`` (``1.2533 * std / sqrt(repeats) / value``).
        environment: Where and how it was measured: runtime versions, CPU/GPU model, threads,
            dtype, batch size, input size ...
        raw_value: For interleaved batches, the median of the subnet's own times (ms); ``value``
            is then the reference-normalised estimate unless the profiler's estimator is ``raw``.
        rounds_dropped: Rounds left out because the reference was an outlier in them.
        reference_spread: The batch's drift: ``(p90 - p10) / median`` of the reference subnet's
            times across the batch's rounds (``None`` when no reference was timed).
        flagged: The batch drifted beyond the profiler's threshold; refits trust it less.
        reference_arch: The reference subnet timed in every round of the batch (``None``: none).
        reference_ms: The batch's reference level: the reference's median time across its
            rounds (ms). Values are on this level; the service and ``gpnas profile`` rescale them
            to the device's long-run level (:mod:`search_service.levels`).
    """

    value: float
    std: float = 0.0
    repeats: int = 1
    p10: float | None = None
    p90: float | None = None
    rse: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)
    raw_value: float | None = None
    rounds_dropped: int = 0
    reference_spread: float | None = None
    flagged: bool = False
    reference_arch: str | None = None
    reference_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of all fields."""
        return asdict(self)

    def measurement_fields(self) -> dict[str, Any]:
        """The fields of a stored measurement (``value, std, repeats, drift, flagged,
        environment``, and ``reference_arch, reference_ms`` for a batch timed with a reference);
        the percentiles, the RSE and the raw median go into the environment."""
        extra = {"p10": self.p10, "p90": self.p90, "rse": self.rse}
        if self.raw_value is not None:
            extra |= {"raw_median_ms": self.raw_value, "rounds_dropped": self.rounds_dropped}
        # Only when timed with one, so that results of other profilers post as before.
        level = (
            {"reference_arch": self.reference_arch, "reference_ms": self.reference_ms}
            if self.reference_ms is not None
            else {}
        )
        return {
            **level,
            "value": self.value,
            "std": self.std,
            "repeats": self.repeats,
            "drift": self.reference_spread,
            "flagged": self.flagged,
            "environment": {**self.environment, **extra},
        }


def _coerce(type_: type, value: Any) -> Any:
    """``value`` as a ``type_`` (``bool``, ``int``, ``float`` or ``str``; strings are parsed); raises
    TypeError or ValueError if it is not one. Other types pass ``value`` through unchanged."""
    if type_ is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError
            return lowered in {"true", "1", "yes"}
        if not isinstance(value, bool):
            raise ValueError
        return value
    if type_ is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    if type_ is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if type_ is str and (not isinstance(value, str) or not value):
        raise ValueError
    return value


@dataclass(frozen=True)
class Setting:
    """Declaration of one profiler setting.

    Attributes:
        type: ``int``, ``float``, ``str`` or ``bool``. Strings (e.g. from ``--set k=v`` on the
            command line) are converted to this type.
        default: Value used when the setting is not given; ``None`` means "not set".
        help: One line shown by ``gpnas profile --list``.
        choices: Allowed values, if the setting is categorical.
        minimum: Smallest allowed value for numbers.
        maximum: Largest allowed value for numbers.
        required: The setting must be given (``default`` is then ignored).
        kind: ``"value"`` for plain data; ``"file"`` for a path relative to the measuring
            machine's data directory; ``"dataset"`` / ``"supernet"`` / ``"metric"`` for the name
            of a callable (or a metric class) defined on the measuring machine (see
            :mod:`profilers._local`). Settings are stored by the server and read by every agent of
            a device, so code and files are only ever referred to by such names.
    """

    type: type
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    kind: SettingKind = "value"

    def convert(self, owner: str, name: str, value: Any) -> Any:
        """Return ``value`` converted to this setting's type, or raise ValueError naming the setting."""
        where = f"setting {name!r} of profiler {owner!r}"
        try:
            value = _coerce(self.type, value)
        except (TypeError, ValueError):
            kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a non-empty string"}[
                self.type
            ]
            raise ValueError(f"{where} must be {kind}, got {value!r}") from None
        if self.kind in ("dataset", "supernet", "metric"):
            check_reference_name(value, self.kind, where)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{where} must be >= {self.minimum}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{where} must be <= {self.maximum}, got {value!r}")
        return value


class ProfilerUnavailableError(RuntimeError):
    """The profiler's hardware or runtime is missing here (e.g. ``torch-cuda`` without a GPU)."""


class Profiler(abc.ABC):
    """Base class of every profiler.

    Subclasses set the class attributes and implement :meth:`profile` through one of the two
    role classes :class:`LatencyProfiler` or :class:`AccuracyProfiler`.

    Args:
        space: The search space whose subnets are profiled.
        local: What ``file``, ``dataset`` and ``supernet`` settings refer to on this machine
            (default: :meth:`LocalConfig.load`, i.e. ``$GPNAS_LOCAL_CONFIG`` or nothing).
        **settings: Values for the names declared in :attr:`settings_spec`.

    Raises:
        ValueError: If a setting is unknown or has a bad value.
        ProfilerUnavailableError: If the hardware or runtime the profiler needs is missing.
    """

    name: ClassVar[str] = ""
    """Registry name (the entry-point name under ``gpnas.profilers``)."""
    version: ClassVar[str] = "0"
    """Bumped whenever a change could alter the numbers; stored with every measurement."""
    metric: ClassVar[Metric]
    """:attr:`Metric.LATENCY` or :attr:`Metric.SCORE`."""
    settings_spec: ClassVar[Mapping[str, Setting]] = {}
    """The settings this profiler accepts."""

    def __init__(self, space: SearchSpace, *, local: LocalConfig | None = None, **settings: Any) -> None:
        self.space = space
        self.local = local if local is not None else LocalConfig.load()
        self.settings: dict[str, Any] = self.validate_settings(settings, portable=not self.local.trusted)

    @classmethod
    def validate_settings(cls, settings: Mapping[str, Any], portable: bool = True) -> dict[str, Any]:
        """Check ``settings`` against :attr:`settings_spec` without touching any hardware.

        Args:
            settings: The given settings.
            portable: The settings may be stored by a server and read on other machines: ``file``
                settings must then be relative paths that stay inside a data directory.
                ``False`` only for settings this machine's own user typed.

        Returns:
            The full settings: given values converted to their declared types, defaults for the
            others.

        Raises:
            ValueError: Naming the first unknown setting or bad value.
        """
        owner = cls.name or cls.__name__
        unknown = sorted(set(settings) - set(cls.settings_spec))
        if unknown:
            known = ", ".join(cls.settings_spec) or "none"
            raise ValueError(
                f"unknown setting {unknown[0]!r} for profiler {owner!r}; known settings: {known}"
            )
        out: dict[str, Any] = {}
        for key, spec in cls.settings_spec.items():
            if key in settings and settings[key] is not None:
                out[key] = spec.convert(owner, key, settings[key])
                if spec.kind == "file" and portable:
                    check_relative_path(out[key], f"setting {key!r} of profiler {owner!r}")
            elif spec.required:
                raise ValueError(f"setting {key!r} of profiler {owner!r} is required")
            else:
                out[key] = spec.default
        return out

    def resolve_file(self, key: str) -> str:
        """The file that the ``file`` setting ``key`` names on this machine (see :attr:`local`)."""
        return str(self.local.resolve_file(self.settings[key], f"setting {key!r} of profiler {self.name!r}"))

    @classmethod
    def listed_subnets(
        cls, space: SearchSpace, settings: Mapping[str, Any], local: LocalConfig
    ) -> list[Subnet] | None:
        """The only subnets a profiler with ``settings`` can measure, read without measuring, or
        ``None`` if it can measure any subnet.

        The server calls this on a device's stored settings to plan campaigns, with a
        :class:`LocalConfig` holding only its own data directory; it never constructs other
        profilers. Replay profilers return their table's rows.

        Raises:
            ValueError: The list exists but cannot be read here (e.g. the table is not under
                ``local.data_dir``), naming the setting.
        """
        return None

    def subnet(self, sub: Subnet | str) -> Subnet:
        """``sub`` as a validated :class:`Subnet` of :attr:`space` (arch strings are parsed)."""
        return self.space.parse(sub) if isinstance(sub, str) else self.space.validate(sub)

    @abc.abstractmethod
    def profile(self, sub: Subnet | str, task: str | None = None) -> ProfileResult:
        """Measure ``sub`` (for ``task`` where the metric needs one)."""

    def profile_many(
        self, subs: Sequence[Subnet | str], task: str | None = None
    ) -> list[ProfileResult | Exception]:
        """Measure a batch; what the device agent and ``gpnas profile`` call.

        One subnet that cannot be measured (it does not parse, cannot be built, its run fails)
        does not sink the batch: its entry is the exception, the others are results.

        Returns:
            One entry per subnet, in order: a :class:`ProfileResult` or the exception it raised.

        Raises:
            ValueError: If ``subs`` is empty.
            ProfilerUnavailableError: If this machine cannot run the profiler at all.
        """
        self._check_batch(subs)
        out: list[ProfileResult | Exception] = []
        for sub in subs:
            try:
                out.append(self.profile(sub, task))
            except ProfilerUnavailableError:
                raise
            except Exception as error:  # the subnet's failure, reported in its entry
                out.append(error)
        return out

    def _check_batch(self, subs: Sequence[Subnet | str]) -> None:
        """Raise ValueError for an empty batch."""
        if not subs:
            raise ValueError(f"profiler {self.name!r} got an empty batch; give at least one subnet")

    def known_subnets(self) -> list[Subnet] | None:
        """The only subnets this profiler can measure, or ``None`` if it measures any subnet.

        Replay profilers return their table's subnets, so ``gpnas profile`` samples from them.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most profilers hold nothing
        """Release held resources (models, sessions, temporary files). Default: nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(space={self.space.name!r}, settings={self.settings!r})"


class LatencyProfiler(Profiler):
    """Measures how long a subnet takes on one device (a chip, a runtime and settings).

    Implementations should warm up, repeat until the statistic is stable, pin and record the
    thread count, and report the median with its spread. Profilers that time real hardware
    should override :meth:`measure_many` to time a batch in interleaved rounds with a reference
    subnet (see :class:`profilers.ExtractedModelProfiler`), so that the machine's drift does not
    become the data; the default measures the subnets one after another.

    Profilers that run real models can also time a :class:`supernet.Deployment` (several tasks'
    paths deployed as one model, :meth:`measure_deployment`); they set
    :attr:`measures_deployments`. The default raises :class:`NotImplementedError`: a table of
    single-path latencies has nothing to replay for a deployment.
    """

    metric: ClassVar[Metric] = Metric.LATENCY
    measures_deployments: ClassVar[bool] = False
    """Whether :meth:`measure_deployments` can time deployments here (ask before calling)."""
    progress: Callable[[str], None] | None = None
    """Told how a long batch advances, every few seconds (``gpnas demo`` prints it); None: silent."""

    @abc.abstractmethod
    def measure(self, sub: Subnet | str) -> ProfileResult:
        """Latency of one forward pass of ``sub``.

        Args:
            sub: A subnet of :attr:`space` or its arch string.

        Returns:
            A :class:`ProfileResult` whose ``value`` is the median in milliseconds per batch.
        """

    def measure_many(self, subs: Sequence[Subnet | str]) -> list[ProfileResult | Exception]:
        """Latencies of a batch (see :meth:`Profiler.profile_many` for the failure contract).

        The default calls :meth:`measure` for each subnet in turn.
        """
        return Profiler.profile_many(self, subs)

    def measure_deployment(self, dep: Deployment, input: InputMode = "shared") -> ProfileResult:
        """Latency of one forward pass of every task of ``dep``, deployed as one model.

        Args:
            dep: Tasks and their paths, all of :attr:`space`.
            input: ``shared``: one batch of images that every task reads, the layers the paths
                share computed once; ``separate``: each task runs its path on its own batch,
                one task after another (the value is the time of all of them).

        Returns:
            A :class:`ProfileResult` (milliseconds per batch, for all the tasks together) whose
            environment names the tasks, their paths and the input mode.

        Raises:
            NotImplementedError: If this profiler cannot time deployments
                (:attr:`measures_deployments` is false).
            ValueError: If ``input`` is not ``shared`` or ``separate``, or ``dep`` does not
                belong to :attr:`space`.
        """
        (outcome,) = self.measure_deployments([dep], input)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def measure_deployments(
        self,
        items: Sequence[Deployment | Subnet | str],
        input: InputMode | Sequence[InputMode] = "shared",
    ) -> list[ProfileResult | Exception]:
        """Latencies of a batch of deployments, and of single paths timed alongside them.

        A :class:`~supernet.Subnet` (or arch string) among ``items`` is timed as
        :meth:`measure_many` times it; profilers that time in interleaved rounds put
        deployments and paths into the same rounds, so that their numbers share one reference
        and one drift (what a latency model of deployments built from single paths needs).

        Args:
            items: Deployments and subnets, in any order.
            input: One input mode for every deployment, or one per item (ignored for subnets);
                see :meth:`measure_deployment`.

        Returns:
            Per item, in order, its :class:`ProfileResult` or the exception that kept it from
            being measured (a deployment or path that does not belong to the space, or whose
            model fails to run).

        Raises:
            NotImplementedError: If this profiler cannot time deployments.
            ValueError: If ``items`` is empty or an input mode is unknown.
        """
        raise NotImplementedError(
            f"profiler {self.name!r} cannot time deployments: it measures single subnets only "
            "(use a profiler that runs the models, e.g. 'torch-cpu' or 'torch-cuda')"
        )

    def profile(self, sub: Subnet | str, task: str | None = None) -> ProfileResult:
        return self.measure(sub)

    def profile_many(
        self, subs: Sequence[Subnet | str], task: str | None = None
    ) -> list[ProfileResult | Exception]:
        return self.measure_many(subs)


class AccuracyProfiler(Profiler):
    """Scores a subnet on one task (higher is better)."""

    metric: ClassVar[Metric] = Metric.SCORE

    @abc.abstractmethod
    def score(self, sub: Subnet | str, task: str) -> ProfileResult:
        """Score of ``sub`` on ``task``.

        Args:
            sub: A subnet of :attr:`space` or its arch string.
            task: One of the space's tasks (or of the profiler's data).

        Returns:
            A :class:`ProfileResult` whose ``value`` is the score.
        """

    def profile(self, sub: Subnet | str, task: str | None = None) -> ProfileResult:
        if task is None:
            raise ValueError(f"profiler {self.name!r} scores a task; no task was given")
        return self.score(sub, task)
