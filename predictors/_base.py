"""The :class:`Predictor` interface, its registry and byte serialisation."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, ClassVar, Literal, Self, overload

import numpy as np
import torch

from supernet import Metric, SearchSpace, Subnet, get_space

FeatureKind = Literal["onehot", "ordinal", "onehot+ordinal"]

_REGISTRY: dict[str, type[Predictor]] = {}
_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}


def register_predictor(name: str) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator: make a predictor class creatable by ``name`` and restorable from bytes."""

    def decorate(cls: type[Predictor]) -> type[Predictor]:
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def register_alias(name: str, target: str, **defaults: Any) -> None:
    """Make ``name`` create ``target`` with some default options (e.g. a kernel choice)."""
    _ALIASES[name] = (target, defaults)


def list_predictors() -> list[str]:
    """Names accepted by :func:`create_predictor`."""
    return sorted([*_REGISTRY, *_ALIASES])


def predictor_class(name: str) -> type[Predictor]:
    """The class that :func:`create_predictor` builds for ``name`` (aliases resolved)."""
    if name in _ALIASES:
        return _REGISTRY[_ALIASES[name][0]]
    if name not in _REGISTRY:
        raise ValueError(f"unknown predictor {name!r}; known: {', '.join(list_predictors())}")
    return _REGISTRY[name]


def create_predictor(name: str, space: SearchSpace, **options: Any) -> Predictor:
    """Build the predictor registered as ``name`` for ``space``.

    Args:
        name: One of :func:`list_predictors` (``gpnas`` is the default GP).
        space: The search space whose subnets the predictor sees.
        **options: Passed to the predictor's constructor, e.g. ``metric="latency_ms"``.

    Raises:
        ValueError: If ``name`` is unknown.
    """
    if name in _ALIASES:
        target, defaults = _ALIASES[name]
        return _REGISTRY[target](space, **{**defaults, **options})
    if name not in _REGISTRY:
        raise ValueError(f"unknown predictor {name!r}; known: {', '.join(list_predictors())}")
    return _REGISTRY[name](space, **options)


def encode_subnets(space: SearchSpace, subnets: Sequence[Subnet], kind: FeatureKind) -> torch.Tensor:
    """Encode ``subnets`` as an ``n x d`` float64 tensor; ``onehot+ordinal`` concatenates both."""
    if kind == "onehot+ordinal":
        return torch.cat([space.encode(subnets, "onehot"), space.encode(subnets, "ordinal")], dim=1)
    if kind not in ("onehot", "ordinal"):
        raise ValueError(f"unknown features {kind!r}; expected onehot, ordinal or onehot+ordinal")
    return space.encode(subnets, kind)


def encode_choices(space: SearchSpace, codes: np.ndarray, kind: FeatureKind) -> torch.Tensor:
    """:func:`encode_subnets` of the subnets held as choice matrices, without building them.

    Args:
        space: The search space.
        codes: Choice indices, shape ``n x max_depth x n_dims`` (-1 for absent layers).
        kind: As for :func:`encode_subnets`.

    Returns:
        The ``n x d`` float64 tensor that :func:`encode_subnets` gives for the same subnets.

    Raises:
        ValueError: If a row is not a subnet of ``space`` or ``kind`` is unknown.
    """
    if kind == "onehot+ordinal":
        return torch.cat(
            [space.encode_choices(codes, "onehot"), space.encode_choices(codes, "ordinal")], dim=1
        )
    if kind not in ("onehot", "ordinal"):
        raise ValueError(f"unknown features {kind!r}; expected onehot, ordinal or onehot+ordinal")
    return space.encode_choices(codes, kind)


def default_transform(metric: str, transform: str | None) -> str:
    """The output transform for ``metric`` unless ``transform`` names one explicitly."""
    if transform is not None:
        return transform
    return "log" if Metric.parse(metric) is Metric.LATENCY else "rankgauss"


def as_matrix(
    Y: torch.Tensor | Sequence[Sequence[float]] | np.ndarray, rows: int, columns: str = "T"
) -> torch.Tensor:
    """``Y`` as a float64 tensor of shape ``rows x columns``; ValueError naming the shape otherwise."""
    Y = torch.as_tensor(Y, dtype=torch.float64)
    if Y.ndim != 2 or Y.shape[0] != rows:
        raise ValueError(f"Y must be {rows} x {columns}, got shape {tuple(Y.shape)}")
    return Y


def as_vector(y: torch.Tensor | Sequence[float] | np.ndarray) -> torch.Tensor:
    """``y`` as a float64 tensor of shape ``n`` (copies read-only arrays, e.g. from pandas)."""
    if isinstance(y, torch.Tensor):
        return y.to(torch.float64).reshape(-1)
    return torch.tensor(np.asarray(y, dtype=np.float64)).reshape(-1)


@overload
def check_y_std(y_std: None, n: int) -> None: ...
@overload
def check_y_std(y_std: torch.Tensor | Sequence[float] | np.ndarray, n: int) -> torch.Tensor: ...
@overload
def check_y_std(y_std: torch.Tensor | Sequence[float] | np.ndarray | None, n: int) -> torch.Tensor | None: ...


def check_y_std(y_std: torch.Tensor | Sequence[float] | np.ndarray | None, n: int) -> torch.Tensor | None:
    """``y_std`` as a float64 tensor of shape ``n``, or None.

    Raises:
        ValueError: If it has the wrong length or a negative or non-finite entry.
    """
    if y_std is None:
        return None
    out = as_vector(y_std)
    if out.numel() != n:
        raise ValueError(f"y_std has {out.numel()} values but there are {n} targets")
    if not (torch.isfinite(out).all() and (out >= 0).all()):
        raise ValueError("y_std must be finite and non-negative")
    return out


def training_values(
    subnets: Sequence[Subnet], y: torch.Tensor | Sequence[float] | np.ndarray
) -> torch.Tensor:
    """``y`` as a float64 tensor of shape ``n``, checked against its ``n`` subnets.

    Raises:
        ValueError: If the lengths differ or there are fewer than 2 subnets.
    """
    y = as_vector(y)
    if len(subnets) != y.numel():
        raise ValueError(f"got {len(subnets)} subnets but {y.numel()} target values")
    if len(subnets) < 2:
        raise ValueError(f"need at least 2 measured subnets to fit, got {len(subnets)}")
    return y


def target_column(
    subnets: Sequence[Subnet],
    Y: torch.Tensor,
    target_index: int,
    y_std: torch.Tensor | Sequence[float] | None = None,
) -> tuple[list[Subnet], torch.Tensor, torch.Tensor | None]:
    """The measured rows of column ``target_index`` of ``Y``, as :meth:`Predictor.fit` takes them.

    Args:
        subnets: ``n`` subnets, the rows of ``Y``.
        Y: ``n x T`` values, NaN where a subnet was not measured.
        target_index: The column wanted.
        y_std: Optional standard errors of that column (shape ``n``; NaN allowed where the target
            is unmeasured).

    Returns:
        The ``k`` measured subnets, their values (shape ``k``) and standard errors (``k`` or None).

    Raises:
        ValueError: If ``Y`` is not ``n x T``, ``target_index`` is out of range or ``y_std`` is invalid.
    """
    Y = as_matrix(Y, len(subnets))
    if not 0 <= target_index < Y.shape[1]:
        raise ValueError(f"target_index {target_index} out of range for {Y.shape[1]} columns")
    rows = ~torch.isnan(Y[:, target_index])
    std = None
    if y_std is not None:
        # NaN standard errors are allowed where the target is unmeasured.
        std = check_y_std(torch.nan_to_num(as_vector(y_std), nan=0.0), len(Y))[rows]
    measured = [subnets[i] for i in torch.nonzero(rows).squeeze(-1).tolist()]
    return measured, Y[rows, target_index], std


class Predictor(ABC):
    """Predicts a per-subnet quantity (a latency or a score) with an uncertainty.

    Subclasses implement :meth:`fit_encoded`, :meth:`predict_encoded` and the ``_state`` pair;
    :meth:`fit` / :meth:`predict` only add the encoding, so a caller that scores many batches
    (evolutionary search) can encode once with :meth:`encode` and call :meth:`predict_encoded`.

    Args:
        space: Search space of the subnets.
        **options: Subclass options; all are stored and restored by :meth:`to_bytes`.
    """

    registry_name: ClassVar[str] = ""
    features: FeatureKind = "onehot"
    #: Whether :meth:`fit_multi` learns from the related columns (other devices or tasks) of its
    #: matrix. If false it fits the target column alone, so a caller need not gather the others.
    uses_related_targets: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, **options: Any) -> None:
        self.space = space
        # Plain values (a Metric is a str): to_bytes stores the options for torch's weights-only load.
        self.options = {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}
        self.n_train = 0

    # ------------------------------------------------------------------ public API
    def encode(self, subnets: Sequence[Subnet]) -> torch.Tensor:
        """The ``n x d`` features this predictor's :meth:`predict_encoded` expects."""
        return encode_subnets(self.space, subnets, self.features)

    def encode_choices(self, codes: np.ndarray) -> torch.Tensor:
        """:meth:`encode` of the subnets held as choice matrices (``n x max_depth x n_dims``, -1 =
        absent), for callers that breed choice matrices (evolutionary search).

        Predictors that override :meth:`encode` (e.g. with summary features) get their own
        encoding of the corresponding subnets, so the result always equals :meth:`encode`'s.

        Returns:
            The ``n x d`` features that :meth:`predict_encoded` expects.
        """
        if type(self).encode is not Predictor.encode:
            depths = self.space.validate_choices(codes)
            return self.encode(self.space.from_choice_matrix(codes, depths))
        return encode_choices(self.space, codes, self.features)

    def fit(
        self,
        subnets: Sequence[Subnet],
        y: torch.Tensor | Sequence[float],
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Fit on measured ``subnets`` and their values ``y`` (shape ``n``, original units).

        Args:
            subnets: The measured subnets.
            y: Their values, shape ``n``.
            y_std: Optional standard error of each value (shape ``n``, units of ``y``, >= 0): GP
                predictors treat it as extra, known noise of that point on top of the learned
                noise, so an uncertain (e.g. drift-flagged) measurement pulls the fit less.
                Predictors without a noise model (ridge, trees, the closed form) ignore it.
        """
        y = training_values(subnets, y)
        return self.fit_encoded(self.encode(subnets), y, check_y_std(y_std, y.numel()))

    def fit_multi(
        self,
        subnets: Sequence[Subnet],
        Y: torch.Tensor,
        target_index: int,
        y_std: torch.Tensor | Sequence[float] | None = None,
    ) -> Self:
        """Fit to column ``target_index`` of ``Y``, the other columns being related targets.

        Predictors with :attr:`uses_related_targets` learn from the other columns too; this
        default fits the target column's measured rows alone, as :meth:`fit` would.

        Args:
            subnets: ``n`` subnets, the rows of ``Y``.
            Y: ``n x T`` values in original units, NaN where a subnet was not measured.
            target_index: The column to predict.
            y_std: Optional standard errors of the target column (shape ``n``, original units;
                entries of rows without a target value are ignored), see :meth:`fit`.
        """
        return self.fit(*target_column(subnets, Y, target_index, y_std))

    def predict(self, subnets: Sequence[Subnet]) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and std (both shape ``n``) in the original units of ``y``."""
        return self.predict_encoded(self.encode(subnets))

    @abstractmethod
    def fit_encoded(self, X: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor | None = None) -> Self:
        """Fit on features ``X`` (``n x d``, from :meth:`encode`), targets ``y`` (``n``) and
        optional standard errors ``y_std`` (``n``, see :meth:`fit`)."""

    @abstractmethod
    def predict_encoded(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (shape ``n``, original units) for features ``X`` (``n x d``)."""

    # ------------------------------------------------------------------ serialisation
    def to_bytes(self) -> bytes:
        """Serialise class, space name, options and fitted state (tensors and plain data)."""
        buffer = io.BytesIO()
        payload = {
            "class": self.registry_name,
            "space": self.space.name,
            "options": self.options,
            "state": self._state(),
        }
        torch.save(payload, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, space: SearchSpace | None = None) -> Predictor:
        """Restore any registered predictor from :meth:`to_bytes` output.

        Args:
            data: Bytes from :meth:`to_bytes`.
            space: The space to attach (default: the preset named in ``data``); pass it for
                spaces that are not presets.
        """
        payload = torch.load(io.BytesIO(data), weights_only=True)
        name = payload["class"]
        if name not in _REGISTRY:
            raise ValueError(f"serialised predictor class {name!r} is not registered")
        target = _REGISTRY[name]
        if cls is not Predictor and not issubclass(target, cls):
            raise ValueError(f"bytes hold a {name!r} predictor, not a {cls.__name__}")
        out = target(space if space is not None else get_space(payload["space"]), **payload["options"])
        out._load_state(payload["state"])
        return out

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """Fitted state as tensors and plain Python data (safe for ``torch.load(weights_only=True)``)."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`_state`."""

    def _check_fitted(self) -> None:
        if self.n_train == 0:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit() first")
