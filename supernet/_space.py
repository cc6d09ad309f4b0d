"""Generic layered search space: per-layer categorical dimensions and a set of depths.

Every preset (UFO ViT spaces, FBNet, NAS-Bench-201) is a :class:`SearchSpace` whose subnets
are a depth plus, for each active layer, one choice index per :class:`Dimension`. Subclasses
only add their canonical arch-string syntax (``parse`` / ``format``) and, for the UFO spaces,
analytic parameter and FLOP counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

    from ._definition import SpaceDefinition

EncodingKind = Literal["onehot", "ordinal"]


@dataclass(frozen=True)
class Dimension:
    """One per-layer choice, e.g. ``num_heads`` in ``(12, 11, 10)``.

    Attributes:
        name: Name used in structured configs.
        values: Allowed values, in the order of their choice indices.
    """

    name: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        # Values are looked up by equality (configs -> indices), so duplicates would make two
        # indices one subnet and inflate the cardinality.
        if not self.values or len(set(self.values)) != len(self.values):
            raise ValueError(f"dimension {self.name!r} needs distinct values, got {list(self.values)}")

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True, order=True)
class Subnet:
    """An immutable, hashable path through a search space.

    Attributes:
        space: Name of the space the subnet belongs to.
        depth: Number of active layers.
        layers: ``depth`` tuples, each holding one choice index per dimension of the space.
    """

    space: str
    depth: int
    layers: tuple[tuple[int, ...], ...]


class SearchSpace:
    """A layered space of ``sum_d (prod_k |dim_k|) ** d`` subnets over the allowed depths ``d``.

    Args:
        name: Registry name of the space.
        tasks: Task names scored on this space (may be empty for latency-only spaces).
        dimensions: Per-layer choice dimensions.
        depths: Allowed numbers of active layers; layers beyond the depth are absent.
    """

    #: What a ``score`` measured on this space's tasks means, for axis labels and docs.
    score_label: str = "score (higher is better)"
    #: The values a score can take, ``(low, high)``, as :attr:`score_label` states them (None: no
    #: bound on that side). Predicted scores that the service serves are kept within them.
    score_bounds: tuple[float | None, float | None] = (None, None)
    #: Task -> name of the metric plug-in that evaluates it (a ``gpnas.metrics`` entry point:
    #: ``reid``, ``verification``, ``retrieval`` ...); tasks not listed are classification tasks
    #: (``top1``). Replace it (per class or instance) rather than mutating it.
    evaluation_metrics: dict[str, str] = {}

    def __init__(
        self,
        name: str,
        tasks: Sequence[str],
        dimensions: Sequence[Dimension],
        depths: Sequence[int],
    ) -> None:
        if not dimensions or not depths:
            raise ValueError(f"space {name!r} needs at least one dimension and one depth")
        self.name = name
        self.tasks: list[str] = list(tasks)
        self.dimensions: tuple[Dimension, ...] = tuple(dimensions)
        self.depths: tuple[int, ...] = tuple(sorted(set(depths)))
        self.max_depth = self.depths[-1]

    def evaluation_metric(self, task: str) -> str:
        """The ``gpnas.metrics`` plug-in that evaluates ``task`` (what ``supernet-eval`` computes):
        its :attr:`evaluation_metrics` entry, else ``"top1"``."""
        return self.evaluation_metrics.get(task, "top1")

    # ------------------------------------------------------------------ size and sampling
    @property
    def choices_per_layer(self) -> int:
        """Number of distinct settings of one layer (product of the dimension sizes)."""
        return math.prod(len(d) for d in self.dimensions)

    @property
    def cardinality(self) -> int:
        """Exact number of subnets, as a Python int."""
        per_layer = self.choices_per_layer
        return sum(per_layer**depth for depth in self.depths)

    @property
    def variable_depth(self) -> bool:
        return len(self.depths) > 1

    def depth_probabilities(self) -> np.ndarray:
        """Share of the space held by each depth, shape ``len(depths)``."""
        logs = np.array([d * math.log(self.choices_per_layer) for d in self.depths])
        weights = np.exp(logs - logs.max())
        result: np.ndarray = weights / weights.sum()
        return result

    def sample(self, n: int, seed: int | None = None) -> list[Subnet]:
        """Draw ``n`` distinct subnets uniformly over the whole space.

        Depth is drawn with probability proportional to the number of subnets of that depth,
        so every subnet is equally likely.

        Raises:
            ValueError: If ``n`` is negative or exceeds the cardinality.
        """
        if n < 0 or n > self.cardinality:
            raise ValueError(f"cannot draw {n} distinct subnets from a space of {self.cardinality}")
        rng = np.random.default_rng(seed)
        # Rejection sampling slows down as n approaches the cardinality; small spaces are
        # enumerated instead (large ones cannot hold a comparable n in memory anyway).
        if n > self.cardinality // 4 and self.cardinality <= 2_000_000:
            everything = list(self.enumerate())
            order = rng.permutation(len(everything))[:n]
            return [everything[i] for i in order]
        sizes = [len(d) for d in self.dimensions]
        probabilities = self.depth_probabilities()
        chosen: dict[Subnet, None] = {}
        while len(chosen) < n:
            batch = max(16, 2 * (n - len(chosen)))
            depth_idx = rng.choice(len(self.depths), size=batch, p=probabilities)
            codes = np.stack([rng.integers(0, s, size=(batch, self.max_depth)) for s in sizes], -1)
            for row, di in zip(codes, depth_idx, strict=True):
                depth = self.depths[di]
                sub = Subnet(self.name, depth, tuple(tuple(int(v) for v in layer) for layer in row[:depth]))
                chosen.setdefault(sub)
                if len(chosen) == n:
                    break
        return list(chosen)

    def enumerate(self, limit: int = 2_000_000) -> Iterator[Subnet]:
        """Yield every subnet, shallowest first.

        Raises:
            ValueError: If the space holds more than ``limit`` subnets.
        """
        if self.cardinality > limit:
            raise ValueError(f"space {self.name!r} has {self.cardinality} subnets, more than limit={limit}")
        layer_settings = list(product(*(range(len(d)) for d in self.dimensions)))
        for depth in self.depths:
            for layers in product(layer_settings, repeat=depth):
                yield Subnet(self.name, depth, tuple(layers))

    # ------------------------------------------------------------------ validation and views
    def validate(self, sub: Subnet) -> Subnet:
        """Return ``sub`` if it belongs to this space, else raise ValueError saying why."""
        if not isinstance(sub, Subnet):
            raise ValueError(f"expected a Subnet, got {type(sub).__name__}")
        if sub.space != self.name:
            raise ValueError(f"subnet belongs to space {sub.space!r}, not {self.name!r}")
        if sub.depth not in self.depths or len(sub.layers) != sub.depth:
            raise ValueError(f"depth {sub.depth} not allowed in {self.name!r}; allowed: {list(self.depths)}")
        for i, layer in enumerate(sub.layers):
            if len(layer) != len(self.dimensions):
                raise ValueError(f"layer {i} has {len(layer)} choices, expected {len(self.dimensions)}")
            for dim, choice in zip(self.dimensions, layer, strict=True):
                if not 0 <= choice < len(dim):
                    raise ValueError(f"layer {i}: {dim.name} index {choice} out of range 0..{len(dim) - 1}")
        return sub

    def config(self, sub: Subnet) -> dict[str, Any]:
        """Structured, human-readable view: ``{"depth": d, "layers": [{dim: value, ...}, ...]}``."""
        self.validate(sub)
        return {
            "depth": sub.depth,
            "layers": [
                {dim.name: dim.values[c] for dim, c in zip(self.dimensions, layer, strict=True)}
                for layer in sub.layers
            ],
        }

    def from_config(self, config: dict[str, Any]) -> Subnet:
        """Inverse of :meth:`config`; a ``depth`` entry, if present, must match the layer count.

        Raises:
            ValueError: If the config is malformed or names values outside the space.
        """
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError("config must be a dict with a list under 'layers'")
        if "depth" in config and config["depth"] != len(config["layers"]):
            raise ValueError(f"config has depth {config['depth']} but {len(config['layers'])} layers")
        layers = []
        for i, layer in enumerate(config["layers"]):
            if not isinstance(layer, dict):
                raise ValueError(f"layer {i} must be a dict of {[d.name for d in self.dimensions]}")
            choice = []
            for dim in self.dimensions:
                if dim.name not in layer or layer[dim.name] not in dim.values:
                    raise ValueError(f"layer {i}: {dim.name} must be one of {list(dim.values)}")
                choice.append(dim.values.index(layer[dim.name]))
            layers.append(tuple(choice))
        return self.validate(Subnet(self.name, len(layers), tuple(layers)))

    def to_definition(self) -> SpaceDefinition:
        """This space as data: the :class:`~supernet.SpaceDefinition` that
        :func:`~supernet.space_from_definition` builds it back from (YAML / JSON via its
        ``to_yaml`` / ``to_json``).

        Raises:
            ValueError: If the space is of no family a definition describes.
        """
        from ._definition import definition_of

        return definition_of(self)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: name, tasks, cardinality (decimal string) and choices."""
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "cardinality": str(self.cardinality),
            "score_label": self.score_label,
            "depths": list(self.depths),
            "choices": {dim.name: list(dim.values) for dim in self.dimensions},
        }

    # ------------------------------------------------------------------ encoding
    def encoding_dim(self, kind: EncodingKind = "onehot") -> int:
        """Width ``d`` of :meth:`encode`'s output."""
        if kind == "onehot":
            absent = 1 if self.variable_depth else 0
            return self.max_depth * sum(len(dim) + absent for dim in self.dimensions)
        if kind == "ordinal":
            active = 1 if self.variable_depth else 0
            return self.max_depth * (len(self.dimensions) + active)
        raise ValueError(f"unknown encoding {kind!r}; expected 'onehot' or 'ordinal'")

    def encode(
        self, subs: Sequence[Subnet], kind: EncodingKind = "onehot", dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """Encode subnets as a ``n x d`` tensor for predictors.

        ``onehot``: per layer position and dimension, one column per value, plus (variable-depth
        spaces only) one ``absent`` column that is 1 for layers beyond the depth, so padding is
        its own category rather than a fake choice.
        ``ordinal``: per layer position and dimension, the choice index scaled to [0, 1]; for
        variable-depth spaces one extra ``active`` column per layer, with absent layers at 0.
        """
        return self._encode_codes(self.choice_matrix(subs), kind, dtype)

    def encode_choices(
        self, codes: np.ndarray, kind: EncodingKind = "onehot", dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """:meth:`encode` of the subnets held as a :meth:`choice_matrix`, without building them.

        Evolutionary search breeds choice matrices; encoding them directly skips one ``Subnet``
        object and one validation per candidate, which otherwise cost more than the predictions.

        Args:
            codes: Choice indices, shape ``n x max_depth x n_dims`` (-1 for absent layers).
            kind: ``onehot`` or ``ordinal``, as for :meth:`encode`.
            dtype: Dtype of the result (default float64).

        Returns:
            The ``n x encoding_dim(kind)`` tensor that :meth:`encode` gives for the same subnets.

        Raises:
            ValueError: If a row is not a subnet of this space (see :meth:`validate_choices`).
        """
        codes = np.asarray(codes)
        self.validate_choices(codes)
        return self._encode_codes(codes, kind, dtype)

    def _encode_codes(self, codes: np.ndarray, kind: EncodingKind, dtype: torch.dtype | None) -> torch.Tensor:
        """The encoding of valid choice matrices ``codes`` (``n x max_depth x n_dims``), as
        ``dtype`` (default float64)."""
        # Only the predictors encode: parsing and formatting archs must not load torch.
        import torch

        width = self.encoding_dim(kind)  # also rejects an unknown kind
        n = codes.shape[0]
        sizes = np.array([len(dim) for dim in self.dimensions])
        if kind == "onehot":
            absent = 1 if self.variable_depth else 0
            # Column of choice 0 of each (layer, dimension) block; an absent layer (-1) maps to the
            # block's extra "absent" column, i.e. index len(dim).
            block = sizes + absent
            starts = np.arange(self.max_depth)[:, None] * block.sum() + np.cumsum(block) - block
            column = starts[None] + np.where(codes < 0, sizes, codes)  # n x max_depth x n_dims
            out = np.zeros((n, width))
            out[np.arange(n)[:, None], column.reshape(n, self.max_depth * len(sizes))] = 1.0
        else:
            scale = np.maximum(sizes - 1, 1).astype(float)
            values = np.where(codes >= 0, codes / scale, 0.0)
            if self.variable_depth:
                values = np.concatenate([values, (codes[:, :, :1] >= 0).astype(float)], axis=2)
            out = values.reshape(n, width)
        return torch.as_tensor(out, dtype=torch.float64 if dtype is None else dtype)

    def restrict_to_task(self, codes: np.ndarray, task: str | None) -> np.ndarray:
        """The subnets ``task`` may take, of those in ``codes`` (``n x max_depth x n_dims``): each row
        mapped to its nearest allowed one. Every subnet here; a UFO space may fix a task's
        ``ffn_path`` per layer (:attr:`~supernet.UFOSpace.fixed_ffn_paths`)."""
        return codes

    def validate_choices(
        self, codes: np.ndarray, depths: Sequence[int] | np.ndarray | None = None
    ) -> np.ndarray:
        """Check that every row of ``codes`` is a subnet of this space (vectorised :meth:`validate`).

        Args:
            codes: Choice indices, shape ``n x max_depth x n_dims``: the first ``depth`` layers hold
                indices in range, the others -1 in every dimension.
            depths: Expected depth of each row (shape ``n``), or None to read them from ``codes``.

        Returns:
            The depth of each row, int64 array of shape ``n``.

        Raises:
            ValueError: Naming the first offending row and why.
        """
        codes = np.asarray(codes)
        shape = (self.max_depth, len(self.dimensions))
        if codes.ndim != 3 or codes.shape[1:] != shape or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(
                f"choice matrix must be an integer n x {shape[0]} x {shape[1]} array, got "
                f"{codes.dtype} {codes.shape}"
            )
        sizes = np.array([len(dim) for dim in self.dimensions])
        active = codes >= 0
        layer_active = active[:, :, 0]
        found = layer_active.sum(1)
        checks = (
            ((codes >= -1) & (codes < sizes)).all((1, 2)),
            (active == layer_active[:, :, None]).all((1, 2)),
            (layer_active == (np.arange(self.max_depth)[None, :] < found[:, None])).all(1),
            np.isin(found, self.depths),
            np.ones(len(codes), bool) if depths is None else found == np.asarray(depths).reshape(-1),
        )
        reasons = (
            "a choice index is out of range",
            "a layer is partly absent",
            "an absent layer precedes an active one",
            f"its depth is not one of {list(self.depths)}",
            "its depth differs from the one given",
        )
        for ok, reason in zip(checks, reasons, strict=True):
            if not ok.all():
                row = int(np.flatnonzero(~ok)[0])
                raise ValueError(f"choice matrix row {row} is not a subnet of {self.name!r}: {reason}")
        result: np.ndarray = found.astype(np.int64)
        return result

    def choice_matrix(self, subs: Sequence[Subnet]) -> np.ndarray:
        """Choice indices as an int array ``n x max_depth x n_dims``; -1 marks absent layers.

        Raises:
            ValueError: If a subnet is not in this space (the message of :meth:`validate`).
        """
        codes = np.full((len(subs), self.max_depth, len(self.dimensions)), -1, dtype=np.int64)
        try:
            # Fast path: fill, then check the whole matrix at once; per-subnet validation (which
            # names the problem precisely) runs only when something is wrong.
            for i, sub in enumerate(subs):
                if sub.space != self.name or sub.depth != len(sub.layers):
                    raise ValueError
                if sub.depth:
                    codes[i, : sub.depth] = sub.layers
            self.validate_choices(codes, [sub.depth for sub in subs])
        except (ValueError, TypeError, AttributeError, IndexError):
            for sub in subs:
                self.validate(sub)
            raise
        return codes

    def from_choice_matrix(self, codes: np.ndarray, depths: Sequence[int] | np.ndarray) -> list[Subnet]:
        """Build subnets from ``n x max_depth x n_dims`` choice indices and their depths.

        Entries of layers at or beyond a row's depth are ignored.

        Raises:
            ValueError: If a resulting subnet is not in the space (bad depth or index).
        """
        codes, depth_array = np.asarray(codes), np.asarray(depths).reshape(-1)
        # tolist() first: converting numpy scalars one by one dominates evolutionary search time.
        rows, depth_list = codes.tolist(), depth_array.tolist()
        subs = [
            Subnet(self.name, d, tuple(tuple(layer) for layer in row[:d]))
            for row, d in zip(rows, depth_list, strict=True)
        ]
        try:
            beyond = np.arange(codes.shape[1])[None, :, None] >= depth_array[:, None, None]
            self.validate_choices(np.where(beyond, -1, codes), depth_array)
        except (ValueError, IndexError):
            # Per-subnet validation names the problem precisely; it is the authority.
            for sub in subs:
                self.validate(sub)
        return subs

    # ------------------------------------------------------------------ analytic costs
    @property
    def cost_names(self) -> tuple[str, ...]:
        """Names of the columns of :meth:`costs`.

        Raises:
            NotImplementedError: If the space knows no analytic cost model.
        """
        raise NotImplementedError(f"space {self.name!r} has no analytic cost model")

    @property
    def has_costs(self) -> bool:
        """Whether :meth:`costs`, :meth:`macs` and :meth:`cost_extremes` are available."""
        try:
            return bool(self.cost_names)
        except NotImplementedError:
            return False

    def choice_costs(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`costs` from a :meth:`choice_matrix` (``n x max_depth x n_dims``, -1 = absent).

        Vectorised, so predictors can score the encodings of many subnets quickly.

        Returns:
            ``n x len(cost_names)`` float64 array of non-negative, additive cost components.

        Raises:
            NotImplementedError: If the space knows no analytic cost model.
        """
        raise NotImplementedError(f"space {self.name!r} has no analytic cost model")

    def choice_macs(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`macs` from a :meth:`choice_matrix`, shape ``n`` (float64).

        Raises:
            NotImplementedError: If the space knows no analytic cost model.
        """
        raise NotImplementedError(f"space {self.name!r} has no analytic cost model")

    def costs(self, subs: Sequence[Subnet]) -> np.ndarray:
        """Additive cost components of each subnet, shape ``n x len(cost_names)`` (float64, >= 0).

        Latency on most runtimes is close to ``intercept + w . costs`` with ``w >= 0``: MACs of
        the main operator kinds plus counts that carry fixed per-operator overheads. Constant
        parts of the network (stems, heads) are left to the intercept.

        Raises:
            NotImplementedError: If the space knows no analytic cost model.
        """
        return self.choice_costs(self.choice_matrix(subs))

    def macs(self, subs: Sequence[Subnet]) -> np.ndarray:
        """Multiply-accumulates of one forward pass of each subnet, shape ``n`` (float64).

        The scalar analytic cost used to spread first measurements over the cost range.

        Raises:
            NotImplementedError: If the space knows no analytic cost model.
        """
        return self.choice_macs(self.choice_matrix(subs))

    def cost_extremes(self) -> tuple[Subnet, Subnet]:
        """The cheapest and the costliest subnet by :meth:`macs`.

        MACs are a sum of per-layer terms, so per depth every layer takes its cheapest (costliest)
        setting independently, and the best depth wins. Spaces whose costs are not additive per
        layer override this.

        Raises:
            NotImplementedError: If the space knows no analytic cost model.
        """
        settings = np.array(list(product(*(range(len(d)) for d in self.dimensions))))  # P x k
        best: dict[str, tuple[float, Subnet]] = {}
        for depth in self.depths:
            # Row 0: every active layer at setting 0; row 1 + l * P + p: layer l switched to p.
            codes = np.full((1 + depth * len(settings), self.max_depth, len(self.dimensions)), -1)
            codes[:, :depth] = settings[0]
            for layer in range(depth):
                rows = slice(1 + layer * len(settings), 1 + (layer + 1) * len(settings))
                codes[rows, layer] = settings
            delta = (self.choice_macs(codes)[1:] - self.choice_macs(codes[:1])[0]).reshape(depth, -1)
            for kind, pick in (("min", np.argmin), ("max", np.argmax)):
                chosen = pick(delta, axis=1)
                sub = Subnet(self.name, depth, tuple(tuple(int(v) for v in settings[c]) for c in chosen))
                value = float(self.macs([sub])[0])
                if kind not in best or (value < best[kind][0] if kind == "min" else value > best[kind][0]):
                    best[kind] = (value, sub)
        return best["min"][1], best["max"][1]

    # ------------------------------------------------------------------ parameter counts
    @property
    def has_params(self) -> bool:
        """Whether :meth:`params` and :meth:`choice_params` are available (every preset has them)."""
        return type(self).choice_params is not SearchSpace.choice_params

    def choice_params(self, codes: np.ndarray, task: str | None = None) -> np.ndarray:
        """:meth:`params` from a :meth:`choice_matrix` (vectorised, like :meth:`choice_macs`).

        Args:
            codes: Valid choice indices (see :meth:`validate_choices`), shape
                ``n x max_depth x n_dims`` with -1 for absent layers; not checked here.
            task: The task whose own head is counted, in spaces whose tasks have heads; spaces
                whose tasks all run one network ignore it.

        Returns:
            int64 array of shape ``n``.

        Raises:
            NotImplementedError: If the space cannot count parameters (:attr:`has_params`).
            ValueError: If the space has per-task heads and ``task`` is not one of its tasks.
        """
        raise NotImplementedError(f"space {self.name!r} has no parameter count")

    def params(self, subs: Sequence[Subnet], task: str | None = None) -> np.ndarray:
        """Exact trainable parameters (weights and biases, BatchNorm/LayerNorm affine terms; no
        running statistics) of each subnet built as a standalone model, int64 array of shape ``n``.

        Each preset documents what its model holds at its ``choice_params``.

        Raises:
            NotImplementedError: If the space cannot count parameters (:attr:`has_params`).
            ValueError: If a subnet is not in this space, or ``task`` is unknown (see
                :meth:`choice_params`).
        """
        return self.choice_params(self.choice_matrix(subs), task)

    # ------------------------------------------------------------------ arch strings
    def parse(self, arch: str) -> Subnet:  # pragma: no cover - every preset overrides
        raise NotImplementedError

    def format(self, sub: Subnet) -> str:  # pragma: no cover - every preset overrides
        raise NotImplementedError

    def parse_many(self, archs: Sequence[str]) -> list[Subnet]:
        return [self.parse(a) for a in archs]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, cardinality={self.cardinality})"
