"""Search spaces as data: a validated YAML / JSON definition that builds a space, and back.

A :class:`SpaceDefinition` says everything a :class:`~supernet.SearchSpace` is made of: its
name, its tasks (each with the width of its head and what its score measures), the per-layer
choices, the depths, the ViT geometry, which parts of the network each task has to itself, and the
spelling of its arch strings. :func:`space_from_definition` builds the space and
:meth:`SearchSpace.to_definition` gives the definition back; every preset round-trips. Invalid
input raises :class:`DefinitionError`, a ``ValueError`` whose message names each bad field.

Three families are described, those of the presets:

* ``ufo``: ViT spaces whose layers choose ``num_heads`` and ``mlp_ratio`` and, with
  ``per_task: [ffn]``, an ``ffn_path`` (the shared FFN or the task's own expert). Their arch strings
  are ``indices`` (any choices: two digits of depth, then per layer one character per choice, the
  1-based index in ``1-9a-z``, ``0`` for absent layers), or the presets' ``track2`` (37 characters,
  choices fixed) and ``multipath`` (``ffn_path`` / ``mlp_ratio`` / ``num_heads`` groups).
* ``fbnet`` and ``nasbench201``: the latency-benchmark cell spaces, whose choices and depths are
  fixed by their macro-architecture (the analytic cost tables); a definition may give them tasks.

Example (YAML)::

    name: my-vit
    family: ufo
    tasks:
      - {name: face, head: 512, metric: verification}
      - {name: person, head: null, metric: reid}
    depths: [4, 5, 6]
    choices:
      ffn_path: [shared, task]
      mlp_ratio: [4.0, 3.0, 2.0]
      num_heads: [6, 4]
    per_task: [ffn]
    geometry: {embed_dim: 384, patch_size: 16, image_size: 224, head_dim: 64, in_chans: 3}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._cells import FBNET_OPS, NB201_OPS, FBNetSpace, NASBench201Space
from ._space import Dimension, SearchSpace, Subnet
from ._ufo import DEFAULT_NORM_EPS, MultipathSpace, Track2Space, UFOSpace, ViTGeometry, two_digit_depth
from .errors import UserError

Family = Literal["ufo", "fbnet", "nasbench201"]
ArchFormat = Literal["indices", "track2", "multipath", "fbnet", "nasbench201"]
PerTaskPart = Literal["ffn", "stem"]

#: Names of spaces and tasks: printable, no spaces, usable in URLs and file names (as the service's).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$"
# 64: the width of the service's space and task columns.
_SpaceName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=64)]
_TaskName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=64)]
_Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]
_Bound = Annotated[float, AllowInfNan(False)]
_MetricName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=64)]
_ChoiceValue = (
    Annotated[int, Strict()]
    | Annotated[float, Strict(), AllowInfNan(False)]
    | Annotated[str, Strict(), StringConstraints(min_length=1, max_length=64)]
)
_GeometryInt = Annotated[int, Strict()]

#: Characters of the ``indices`` arch format: choice index 0 is ``1``, 34 is ``z``; ``0`` = absent.
INDEX_CHARS = "123456789abcdefghijklmnopqrstuvwxyz"
#: Longest arch string a definition may produce (the service stores arch strings of <= 256 chars).
MAX_ARCH_LENGTH = 256
MAX_TASKS = 64
MAX_DIMENSIONS = 8
MAX_DEPTH = 99
DEFAULT_SCORE_LABEL = SearchSpace.score_label

_UFO_DIMENSIONS = ("num_heads", "mlp_ratio", "ffn_path")
_FFN_PATHS = ("shared", "task")
_FORMATS: dict[str, tuple[str, ...]] = {
    "ufo": ("indices", "track2", "multipath"),
    "fbnet": ("fbnet",),
    "nasbench201": ("nasbench201",),
}
# Choices and depths a format fixes (track2 and the cell spaces) or defaults to (multipath).
_TRACK2_CHOICES: dict[str, list[Any]] = {"num_heads": [12, 11, 10], "mlp_ratio": [4.0, 3.5, 3.0]}
_FIXED: dict[str, tuple[dict[str, list[Any]], list[int]]] = {
    "track2": (_TRACK2_CHOICES, [10, 11, 12]),
    "fbnet": ({"op": list(FBNET_OPS)}, [22]),
    "nasbench201": ({"op": list(NB201_OPS)}, [6]),
}
_MULTIPATH_DEFAULTS: tuple[dict[str, list[Any]], list[int]] = (
    {"ffn_path": list(_FFN_PATHS), "mlp_ratio": [4.0, 3.5, 3.0], "num_heads": [12, 11, 10]},
    [10, 11, 12],
)


class _YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads exponents without a dot (``1e-6``) as floats.

    PyYAML follows YAML 1.1, where ``1e-6`` is a string (``1.0e-6`` is a float); YAML 1.2 and
    JSON read it as a number, and a definition's numbers are strict, so a hand-written ``norm_eps:
    1e-6`` would be refused as a string.
    """


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _plain(value: str) -> str:
    """Reject NUL and lone surrogates, which a database or a UTF-8 answer could not carry."""
    if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
        raise ValueError("NUL characters and lone surrogates are not allowed")
    return value


class DefinitionError(UserError):
    """A space definition that is not valid; the message names each bad field.

    Attributes:
        errors: ``(location, message)`` per problem, the location a tuple such as
            ``("tasks", 1, "head")`` (pydantic's ``loc``).
    """

    def __init__(self, errors: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.errors = list(errors)
        parts = [f"{_dotted(loc) or 'definition'}: {message}" for loc, message in self.errors]
        super().__init__("invalid space definition: " + "; ".join(parts))

    @classmethod
    def from_validation(cls, error: ValidationError) -> DefinitionError:
        # "Value error, " is how pydantic prefixes the messages of validators; ours say it all.
        return cls(
            [(tuple(item["loc"]), str(item["msg"]).removeprefix("Value error, ")) for item in error.errors()]
        )


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class TaskDefinition(BaseModel):
    """One task of a space.

    Attributes:
        name: The task's name (measurements and queries name it).
        head: Width of the task's own output head (a ``Linear(embed_dim, head)``), or null when the
            task reads the backbone's embedding (the track-2 re-id tasks). UFO spaces only.
        metric: The ``gpnas.metrics`` plug-in that turns the task's outputs into its score
            (``top1``, ``reid``, ``verification``, ``retrieval``, or one the measuring machine
            defines): a name, resolved where the task is evaluated, never on the server.
        ffn_paths: For spaces with an ``ffn_path`` choice: the FFN the task takes at every layer
            position (``shared`` or ``task``), e.g. what its trained gates chose (``gpnas train``
            writes them); searches for the task then vary only the other choices. Null (and left
            out): every path is open.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _TaskName
    head: Annotated[int, Strict()] | None = Field(None, ge=1, le=1_000_000)
    metric: _MetricName = "top1"
    ffn_paths: list[Literal["shared", "task"]] | None = Field(
        None, max_length=MAX_DEPTH, exclude_if=lambda paths: paths is None
    )


class GeometryDefinition(BaseModel):
    """The ViT shapes of a UFO space (the fields of :class:`~supernet.ViTGeometry`, ViT-Base by default).

    ``norm_eps`` (the LayerNorms' epsilon) is written out only when it is not the default
    ``1e-5``, so the definitions of spaces that keep it read as they did before it existed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    embed_dim: _GeometryInt = Field(768, ge=1, le=16_384)
    patch_size: _GeometryInt = Field(16, ge=1, le=1_024)
    image_size: _GeometryInt = Field(224, ge=1, le=8_192)
    head_dim: _GeometryInt = Field(64, ge=1, le=4_096)
    in_chans: _GeometryInt = Field(3, ge=1, le=64)
    # Strict, as every number of a definition: lax pydantic would read "1e-6" as a number.
    norm_eps: Annotated[float, Strict(), AllowInfNan(False)] = Field(
        DEFAULT_NORM_EPS, gt=0, lt=1, exclude_if=lambda eps: eps == DEFAULT_NORM_EPS
    )

    @model_validator(mode="after")
    def _patch_fits(self) -> GeometryDefinition:
        if self.patch_size > self.image_size:
            raise ValueError(f"patch_size {self.patch_size} exceeds image_size {self.image_size}")
        return self

    def to_geometry(self) -> ViTGeometry:
        return ViTGeometry(**self.model_dump())

    @classmethod
    def of(cls, geometry: ViTGeometry) -> GeometryDefinition:
        return cls(
            embed_dim=geometry.embed_dim,
            patch_size=geometry.patch_size,
            image_size=geometry.image_size,
            head_dim=geometry.head_dim,
            in_chans=geometry.in_chans,
            norm_eps=geometry.norm_eps,
        )


class SpaceDefinition(BaseModel):
    """A search space as data (YAML or JSON), validated field by field.

    Omitted fields take their family's defaults: ``arch_format`` ``indices`` for ``ufo`` (the cell
    families' own format otherwise); the choices and depths that ``track2``, ``fbnet`` and
    ``nasbench201`` fix (and ``multipath`` defaults to); ViT-Base ``geometry`` for ``ufo``; and
    ``per_task: [ffn]`` for ``multipath``. What :meth:`SearchSpace.to_definition` returns has every
    field filled in.

    Attributes:
        name: The space's name (64 characters at most).
        family: ``ufo``, ``fbnet`` or ``nasbench201``: what the layers are, hence the supernet and
            the analytic cost model.
        arch_format: How arch strings are spelled (see the module docstring).
        score_label: What a score on the tasks means (higher is better), for axis labels.
        score_bounds: ``[low, high]``: the values a score can take, as the label states them
            (null: no bound on that side); predicted scores are kept within them.
        tasks: The tasks scored on the space (names unique); more can be added later.
        depths: Allowed numbers of active layers (1 to 99).
        choices: Per-layer choice name -> its values, in choice-index order. The order of the
            names is the order of a subnet's per-layer indices (and of the encodings).
        geometry: ViT shapes (``ufo`` only).
        per_task: Parts every task has its own copy of: ``ffn`` = each layer holds one FFN expert
            per task besides the shared FFN, chosen per layer by the ``ffn_path`` choice;
            ``stem`` = each task has its own patch embedding, class token and position embedding
            (UFO's released layout), so tasks share nothing before the first layer. Task heads
            are always per task (a task's ``head``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _SpaceName
    family: Family = "ufo"
    arch_format: ArchFormat
    score_label: _Label = DEFAULT_SCORE_LABEL
    score_bounds: tuple[_Bound | None, _Bound | None] = (None, None)
    tasks: list[TaskDefinition] = Field(default_factory=list, max_length=MAX_TASKS)
    depths: list[Annotated[int, Strict()]] = Field(min_length=1, max_length=MAX_DEPTH)
    choices: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)],
        list[_ChoiceValue],
    ] = Field(min_length=1, max_length=MAX_DIMENSIONS)
    geometry: GeometryDefinition | None = None
    # validate_default: an ffn_path choice without per_task: [ffn] is an error, not a default.
    per_task: list[PerTaskPart] = Field(default_factory=list, validate_default=True)

    # ------------------------------------------------------------------ defaults of the family
    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data  # pydantic answers "should be a valid dictionary"
        data = dict(data)
        family = data.get("family", "ufo")
        if not isinstance(family, str) or family not in _FORMATS:
            return data  # the family field reports it
        fmt = data.setdefault("arch_format", _FORMATS[family][0])
        if not isinstance(fmt, str):
            return data  # the arch_format field reports it
        if fmt in _FIXED or fmt == "multipath":
            choices, depths = _FIXED.get(fmt, _MULTIPATH_DEFAULTS)
            data.setdefault("choices", {k: list(v) for k, v in choices.items()})
            data.setdefault("depths", list(depths))
        if fmt == "multipath":
            data.setdefault("per_task", ["ffn"])
        if family == "ufo":
            data.setdefault("geometry", {})
        return data

    # ------------------------------------------------------------------ field checks
    @field_validator("arch_format")
    @classmethod
    def _format_of_family(cls, value: str, info: ValidationInfo) -> str:
        family = info.data.get("family")
        if family is not None and value not in _FORMATS[family]:
            raise ValueError(f"a {family} space spells its arch strings as {' or '.join(_FORMATS[family])}")
        return value

    @field_validator("score_label")
    @classmethod
    def _plain_label(cls, value: str) -> str:
        return _plain(value)

    @field_validator("score_bounds")
    @classmethod
    def _ordered_bounds(cls, bounds: tuple[float | None, float | None]) -> tuple[float | None, float | None]:
        low, high = bounds
        if low is not None and high is not None and not low < high:
            raise ValueError(f"the low score bound must lie below the high one, got [{low}, {high}]")
        return bounds

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[TaskDefinition], info: ValidationInfo) -> list[TaskDefinition]:
        seen: set[str] = set()
        for i, task in enumerate(tasks):
            if task.name in seen:
                raise ValueError(f"tasks[{i}].name: task {task.name!r} is listed twice")
            seen.add(task.name)
            family = info.data.get("family")
            if task.head is not None and family not in (None, "ufo"):
                raise ValueError(f"tasks[{i}].head: {family} spaces have no task heads; leave it null")
        return tasks

    @field_validator("depths")
    @classmethod
    def _depths(cls, depths: list[int], info: ValidationInfo) -> list[int]:
        if any(not 1 <= d <= MAX_DEPTH for d in depths):
            raise ValueError(f"every depth must lie in 1..{MAX_DEPTH}, got {depths}")
        if len(set(depths)) != len(depths):
            raise ValueError(f"depths must be distinct, got {depths}")
        fmt = info.data.get("arch_format")
        if fmt in _FIXED and sorted(depths) != _FIXED[fmt][1]:
            raise ValueError(f"the {fmt} arch format fixes the depths to {_FIXED[fmt][1]}")
        return sorted(depths)

    @field_validator("choices")
    @classmethod
    def _choices(cls, choices: dict[str, list[Any]], info: ValidationInfo) -> dict[str, list[Any]]:
        family, fmt = info.data.get("family"), info.data.get("arch_format")
        for name, values in choices.items():
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name}: needs one or more distinct values, got {values}")
            if len({type(v) is str for v in values}) > 1:
                raise ValueError(f"{name}: values are all numbers or all strings, got {values}")
        if family == "ufo":
            choices = _ufo_choices(choices)
        if fmt in _FIXED and choices != _FIXED[fmt][0]:
            raise ValueError(
                f"the {fmt} arch format fixes the choices to {_FIXED[fmt][0]}"
                + ("; use arch_format: indices for others" if family == "ufo" else "")
            )
        if fmt == "multipath":
            _multipath_choices(choices)
        if fmt == "indices":
            for name, values in choices.items():
                if len(values) > len(INDEX_CHARS):
                    raise ValueError(f"{name}: the indices arch format allows {len(INDEX_CHARS)} values")
        depths = info.data.get("depths")
        if depths:
            length = _arch_length(fmt, max(depths), len(choices))
            if length is not None and length > MAX_ARCH_LENGTH:
                raise ValueError(
                    f"arch strings would have {length} characters (max depth {max(depths)} x "
                    f"{len(choices)} choices); the service stores at most {MAX_ARCH_LENGTH}"
                )
        return choices

    @field_validator("geometry")
    @classmethod
    def _geometry(
        cls, geometry: GeometryDefinition | None, info: ValidationInfo
    ) -> GeometryDefinition | None:
        family = info.data.get("family")
        if family is not None and family != "ufo" and geometry is not None:
            raise ValueError(f"{family} spaces have a fixed macro-architecture; leave geometry out")
        ratios = (info.data.get("choices") or {}).get("mlp_ratio", [])
        if geometry is not None:
            numbers = [r for r in ratios if isinstance(r, int | float)]
            narrow = [r for r in numbers if round(r * geometry.embed_dim) < 1]
            if narrow:
                raise ValueError(
                    f"mlp_ratio {narrow} gives FFNs of width 0 at embed_dim {geometry.embed_dim}"
                )
        return geometry

    @field_validator("per_task")
    @classmethod
    def _per_task(cls, parts: list[str], info: ValidationInfo) -> list[str]:
        if len(set(parts)) != len(parts):
            raise ValueError(f"parts are listed once each, got {parts}")
        choices = info.data.get("choices")
        if choices is None:
            return parts
        has_path = "ffn_path" in choices
        if "ffn" in parts and not has_path:
            raise ValueError("ffn: per-task FFN experts need an ffn_path choice, e.g. [shared, task]")
        if has_path and "ffn" not in parts:
            raise ValueError("an ffn_path choice routes to per-task FFN experts: list ffn here")
        if "ffn" in parts and not info.data.get("tasks"):
            raise ValueError("ffn: per-task FFN experts need at least one task")
        if "stem" in parts and info.data.get("family") != "ufo":
            raise ValueError("stem: only ufo spaces have a ViT stem to give each task")
        return parts

    # ------------------------------------------------------------------ use
    @classmethod
    def load(cls, data: Any) -> SpaceDefinition:
        """Validate ``data`` (a mapping, e.g. parsed YAML or JSON).

        Raises:
            DefinitionError: Naming each bad field.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise DefinitionError.from_validation(error) from None

    @classmethod
    def from_text(cls, text: str, format: Literal["yaml", "json"] | None = None) -> SpaceDefinition:
        """Parse and validate a YAML or JSON document (``format`` None: JSON if it starts with ``{``).

        Raises:
            DefinitionError: The document does not parse, or a field is invalid.
        """
        kind = format or ("json" if text.lstrip().startswith("{") else "yaml")
        try:
            data = json.loads(text) if kind == "json" else yaml.load(text, Loader=_YAMLLoader)
        except (json.JSONDecodeError, yaml.YAMLError) as error:
            raise DefinitionError([((), f"not valid {kind.upper()}: {error}")]) from None
        return cls.load(data)

    @classmethod
    def read(cls, path: str | Path) -> SpaceDefinition:
        """:meth:`from_text` of a file (``.json``: JSON; otherwise YAML, of which JSON is a subset).

        Raises:
            DefinitionError: The file does not parse, or a field is invalid.
            OSError: The file cannot be read.
        """
        path = Path(path)
        return cls.from_text(path.read_text(encoding="utf-8"), "json" if path.suffix == ".json" else "yaml")

    def to_json(self) -> str:
        """The definition as indented JSON, every field written out."""
        return json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False)

    def to_yaml(self) -> str:
        """The definition as YAML, in field order, every field written out."""
        return yaml.safe_dump(
            self.model_dump(mode="json"), sort_keys=False, allow_unicode=True, default_flow_style=None
        )

    @model_validator(mode="after")
    def _task_paths(self) -> SpaceDefinition:
        for i, task in enumerate(self.tasks):
            if task.ffn_paths is None:
                continue
            if "ffn_path" not in self.choices:
                raise ValueError(f"tasks[{i}].ffn_paths: the space has no ffn_path choice to fix")
            if len(task.ffn_paths) != max(self.depths):
                raise ValueError(
                    f"tasks[{i}].ffn_paths: one per layer position, {max(self.depths)}; "
                    f"got {len(task.ffn_paths)}"
                )
            # The task's paths are fixed to these values, so a value the layers do not offer
            # leaves the task without a single legal subnet: every query of it would fail.
            offered = self.choices["ffn_path"]
            missing = sorted(set(task.ffn_paths) - set(offered))
            if missing:
                layers = [n for n, path in enumerate(task.ffn_paths) if path in missing]
                raise ValueError(
                    f"tasks[{i}].ffn_paths: layers {layers} take {', '.join(map(repr, missing))}, which "
                    f"the ffn_path choice {offered} does not offer, so task {task.name!r} would have "
                    "no subnet; offer it in choices.ffn_path or change the task's paths"
                )
        return self

    def with_task(self, task: TaskDefinition) -> SpaceDefinition:
        """This definition with ``task`` added last. The space's subnets, arch strings and encodings
        do not depend on its tasks, so nothing measured on it changes.

        Raises:
            DefinitionError: The task exists already, or does not fit the family (a head on a
                cell space).
        """
        data = self.model_dump(mode="json")
        data["tasks"].append(task.model_dump(mode="json"))
        return type(self).load(data)

    @property
    def task_names(self) -> list[str]:
        return [task.name for task in self.tasks]


def _ufo_choices(choices: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Check the choices of a UFO space; returns them with ``mlp_ratio`` values as floats."""
    unknown = [name for name in choices if name not in _UFO_DIMENSIONS]
    if unknown:
        raise ValueError(f"{unknown[0]}: not a choice of a ufo layer; known: {', '.join(_UFO_DIMENSIONS)}")
    for name in ("num_heads", "mlp_ratio"):
        if name not in choices:
            raise ValueError(f"{name}: a ufo layer needs this choice")
    heads = choices["num_heads"]
    if any(type(h) is not int or not 1 <= h <= 4_096 for h in heads):
        raise ValueError(f"num_heads: values are integers in 1..4096, got {heads}")
    ratios = choices["mlp_ratio"]
    if any(isinstance(r, str) or not 0 < r <= 64 for r in ratios):
        raise ValueError(f"mlp_ratio: values are numbers in (0, 64], got {ratios}")
    out = dict(choices)
    out["mlp_ratio"] = [float(r) for r in ratios]
    if len(set(out["mlp_ratio"])) != len(ratios):
        raise ValueError(f"mlp_ratio: needs distinct values, got {ratios}")
    paths = choices.get("ffn_path")
    if paths is not None and (any(p not in _FFN_PATHS for p in paths) or "task" not in paths):
        raise ValueError(f"ffn_path: values are 'shared' and 'task' ('task' among them), got {paths}")
    return out


def _multipath_choices(choices: dict[str, list[Any]]) -> None:
    if list(choices) != ["ffn_path", "mlp_ratio", "num_heads"] or choices["ffn_path"] != list(_FFN_PATHS):
        raise ValueError(
            "the multipath arch format needs the choices ffn_path: [shared, task], mlp_ratio, num_heads, "
            "in this order; use arch_format: indices for others"
        )
    for name in ("mlp_ratio", "num_heads"):
        if len(choices[name]) > 9:
            raise ValueError(f"{name}: the multipath arch format allows 9 values")


def _arch_length(fmt: str | None, max_depth: int, n_dims: int) -> int | None:
    if fmt == "indices":
        return 2 + max_depth * n_dims
    if fmt == "multipath":
        return 2 + 3 * max_depth
    return None  # fixed formats


# ---------------------------------------------------------------------- spaces of the indices format
class _IndexArch:
    """The ``indices`` arch format: ``DD`` (depth) then, per layer position, one character per
    choice (``INDEX_CHARS[index]``), ``0`` for each choice of an absent layer."""

    name: str
    dimensions: tuple[Dimension, ...]
    depths: tuple[int, ...]
    max_depth: int

    def parse(self, arch: str) -> Subnet:
        k = len(self.dimensions)
        depth = two_digit_depth(self.name, self.depths, arch, 2 + self.max_depth * k)
        layers = []
        for layer in range(self.max_depth):
            pos = 2 + k * layer
            group = arch[pos : pos + k]
            if layer >= depth:
                if group != "0" * k:
                    raise ValueError(
                        f"{self.name} arch positions {pos}-{pos + k - 1} (layer {layer}, beyond depth "
                        f"{depth}) are {group!r}; allowed: {'0' * k!r}"
                    )
                continue
            choice = []
            for offset, (char, dim) in enumerate(zip(group, self.dimensions, strict=True)):
                index = INDEX_CHARS.find(char)
                if not 0 <= index < len(dim):
                    raise ValueError(
                        f"{self.name} arch position {pos + offset} (layer {layer} {dim.name}) is {char!r}; "
                        f"allowed: {', '.join(INDEX_CHARS[: len(dim)])}"
                    )
                choice.append(index)
            layers.append(tuple(choice))
        return Subnet(self.name, depth, tuple(layers))

    def format(self, sub: Subnet) -> str:
        self.validate(sub)  # type: ignore[attr-defined]  # SearchSpace.validate, in the classes below
        absent = "0" * len(self.dimensions)
        body = "".join("".join(INDEX_CHARS[c] for c in layer) for layer in sub.layers)
        return f"{sub.depth:02d}" + body + absent * (self.max_depth - sub.depth)


class IndexUFOSpace(_IndexArch, UFOSpace):
    """A UFO space of the ``indices`` arch format (the spaces users define with their own choices)."""


# ---------------------------------------------------------------------- definition <-> space
def space_from_definition(definition: SpaceDefinition | Mapping[str, Any]) -> SearchSpace:
    """Build the search space a definition describes.

    Args:
        definition: A :class:`SpaceDefinition`, or a mapping validated as one.

    Raises:
        DefinitionError: ``definition`` is a mapping that is not a valid definition.
    """
    defn = definition if isinstance(definition, SpaceDefinition) else SpaceDefinition.load(definition)
    heads = {task.name: task.head for task in defn.tasks}
    space: SearchSpace
    if defn.family == "ufo":
        assert defn.geometry is not None  # the family's default fills it in
        geometry = defn.geometry.to_geometry()
        if defn.arch_format == "track2":
            space = Track2Space(geometry, name=defn.name, task_outputs=heads)
        elif defn.arch_format == "multipath":
            space = MultipathSpace(
                heads,
                depths=defn.depths,
                mlp_ratios=[float(r) for r in defn.choices["mlp_ratio"]],
                num_heads=[int(h) for h in defn.choices["num_heads"]],
                geometry=geometry,
                name=defn.name,
            )
        else:
            dims = [Dimension(name, tuple(values)) for name, values in defn.choices.items()]
            space = IndexUFOSpace(defn.name, heads, dims, defn.depths, geometry)
    elif defn.family == "fbnet":
        space = FBNetSpace(name=defn.name, tasks=list(heads))
    else:
        space = NASBench201Space(name=defn.name, tasks=list(heads))
    if isinstance(space, UFOSpace):
        space.per_task_stem = "stem" in defn.per_task
        space.fixed_ffn_paths = {t.name: tuple(t.ffn_paths) for t in defn.tasks if t.ffn_paths}
    space.score_label = defn.score_label
    space.score_bounds = defn.score_bounds
    space.evaluation_metrics = {task.name: task.metric for task in defn.tasks}
    return space


def definition_of(space: SearchSpace) -> SpaceDefinition:
    """The definition that :func:`space_from_definition` builds ``space`` back from.

    Raises:
        ValueError: ``space`` is of no family a definition describes (a class defined elsewhere).
    """
    family: str
    fmt: str
    if isinstance(space, UFOSpace):
        family = "ufo"
        if isinstance(space, Track2Space):
            fmt = "track2"
        elif isinstance(space, MultipathSpace):
            fmt = "multipath"
        elif isinstance(space, IndexUFOSpace):
            fmt = "indices"
        else:
            raise ValueError(
                f"space {space.name!r} ({type(space).__name__}) has no arch format a definition names"
            )
    elif isinstance(space, FBNetSpace):
        family = fmt = "fbnet"
    elif isinstance(space, NASBench201Space):
        family = fmt = "nasbench201"
    else:
        raise ValueError(
            f"space {space.name!r} ({type(space).__name__}) is of no family a definition describes"
        )
    heads = space.task_outputs if isinstance(space, UFOSpace) else {}
    fixed = space.fixed_ffn_paths if isinstance(space, UFOSpace) else {}
    data: dict[str, Any] = {
        "name": space.name,
        "family": family,
        "arch_format": fmt,
        "score_label": space.score_label,
        "score_bounds": list(space.score_bounds),
        "tasks": [
            {"name": t, "head": heads.get(t), "metric": space.evaluation_metric(t)}
            | ({"ffn_paths": list(paths)} if (paths := fixed.get(t)) else {})
            for t in space.tasks
        ],
        "depths": list(space.depths),
        "choices": {dim.name: list(dim.values) for dim in space.dimensions},
        "geometry": GeometryDefinition.of(space.geometry).model_dump()
        if isinstance(space, UFOSpace)
        else None,
        "per_task": (["ffn"] if any(dim.name == "ffn_path" for dim in space.dimensions) else [])
        + (["stem"] if isinstance(space, UFOSpace) and space.per_task_stem else []),
    }
    return SpaceDefinition.load(data)
