"""UFO ViT search spaces: the real CVPR'22 track-2 space and the UFO 2.0 task-MoE space.

Both share a ViT geometry (:class:`ViTGeometry`) from which parameter and MAC counts are derived
analytically; :func:`supernet.build_supernet` builds modules with exactly these shapes, and the
tests check that an extracted subnet's parameter count equals :meth:`UFOSpace.param_count`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._space import Dimension, SearchSpace, Subnet

#: Epsilon of the supernet's LayerNorms unless a geometry says otherwise (``torch.nn.LayerNorm``'s).
DEFAULT_NORM_EPS = 1e-5


@dataclass(frozen=True)
class ViTGeometry:
    """Shapes of a ViT supernet. Defaults are ViT-Base at 224x224.

    Attributes:
        embed_dim: Token width ``E``.
        patch_size: Side of a square patch, in pixels.
        image_size: Side of the square input image, in pixels.
        head_dim: Width of one attention head; a layer with ``h`` heads has ``h * head_dim``
            query/key/value channels.
        in_chans: Input image channels.
        norm_eps: Epsilon of every LayerNorm (torch's default; UFO's released supernet uses 1e-6).
    """

    embed_dim: int = 768
    patch_size: int = 16
    image_size: int = 224
    head_dim: int = 64
    in_chans: int = 3
    norm_eps: float = DEFAULT_NORM_EPS

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "norm_eps":
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                    raise ValueError(f"geometry norm_eps must be a number in (0, 1), got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"geometry {field.name} must be a positive integer, got {value!r}")
        if self.patch_size > self.image_size:
            raise ValueError(f"geometry patch_size {self.patch_size} exceeds image_size {self.image_size}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Patches plus the class token."""
        return self.num_patches + 1

    def attn_dim(self, num_heads: int) -> int:
        return num_heads * self.head_dim

    def ffn_hidden(self, mlp_ratio: float) -> int:
        return int(round(mlp_ratio * self.embed_dim))


#: :meth:`UFOSpace.costs` columns: MACs of the qkv/proj linears, of the attention matmuls
#: (heads x tokens^2) and of the FFN, the number of active layers and the total of their heads.
UFO_COSTS = ("linear_macs", "attention_macs", "ffn_macs", "layers", "heads")


def _linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# Per-layer parameter counts, elementwise on ints or int arrays (the one formula that single
# subnets and deployments share). Embedding width e; attention of a = heads * head_dim channels:
# qkv e -> 3a and proj a -> e with biases; an FFN e -> h -> e with biases; a layer's two LayerNorms.
def _attention_params(e: int, a: Any) -> Any:
    return (4 * e + 3) * a + e


def _ffn_params(e: int, h: Any) -> Any:
    return (2 * e + 1) * h + e


def _norms_params(e: int) -> int:
    return 4 * e


def _stem_params(g: ViTGeometry) -> int:
    """Patch-embedding conv (weight, bias), class token and position embedding."""
    e = g.embed_dim
    return g.in_chans * g.patch_size**2 * e + e + e + g.num_tokens * e


class UFOSpace(SearchSpace):
    """A ViT space whose layers choose heads and FFN width (and, for UFO 2.0, the FFN path).

    Args:
        task_outputs: Task name -> width of that task's head. ``None`` widths mean the task uses
            the backbone embedding directly (no head), as the track-2 re-id tasks do.
        geometry: ViT shapes used for parameter and MAC counts and by the supernet.
    """

    #: Whether every task has its own stem (patch embedding, class token, position embedding),
    #: as UFO's released supernet does, instead of one shared stem. A definition's
    #: ``per_task: [stem]`` sets it; the presets share their stem.
    per_task_stem: bool = False
    #: Task -> the FFN (``shared`` / ``task``) its paths take at every layer position, for tasks
    #: whose ffn_path is fixed (a definition's task ``ffn_paths``, e.g. from trained gates).
    #: Replace it rather than mutating it.
    fixed_ffn_paths: dict[str, tuple[str, ...]] = {}

    def __init__(
        self,
        name: str,
        task_outputs: Mapping[str, int | None],
        dimensions: Sequence[Dimension],
        depths: Sequence[int],
        geometry: ViTGeometry,
    ) -> None:
        super().__init__(name, list(task_outputs), dimensions, depths)
        self.task_outputs: dict[str, int | None] = dict(task_outputs)
        self.geometry = geometry

    def with_geometry(self, **overrides: Any) -> UFOSpace:
        """A copy of this space (same name and choices) with some geometry fields replaced.

        Raises:
            ValueError: If an override is not a :class:`ViTGeometry` field or has a bad value.
        """
        known = {field.name for field in dataclasses.fields(ViTGeometry)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown geometry field(s) {unknown}; known: {sorted(known)}")
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        # Own copies of the mutable attributes, so editing the clone cannot change the preset.
        clone.tasks, clone.task_outputs = list(self.tasks), dict(self.task_outputs)
        clone.fixed_ffn_paths = dict(self.fixed_ffn_paths)
        clone.geometry = dataclasses.replace(self.geometry, **overrides)
        return clone

    def restrict_to_task(self, codes: np.ndarray, task: str | None) -> np.ndarray:
        """``codes`` (``n x max_depth x n_dims``) with every active layer's ``ffn_path`` set to
        what :attr:`fixed_ffn_paths` fixes for ``task``; unchanged for other tasks."""
        fixed = self.fixed_ffn_paths.get(task) if task is not None else None
        if fixed is None:
            return codes
        names = [d.name for d in self.dimensions]
        column = names.index("ffn_path")
        values = self.dimensions[column].values
        chosen = np.array([values.index(path) for path in fixed])
        codes = np.array(codes, copy=True)
        codes[:, :, column] = np.where(codes[:, :, 0] >= 0, chosen[None, :], -1)
        return codes

    def check_task(self, task: str | None) -> str | None:
        if task is not None and task not in self.task_outputs:
            raise ValueError(f"unknown task {task!r} for space {self.name!r}; known: {self.tasks}")
        return task

    def layer_values(self, sub: Subnet) -> list[dict[str, Any]]:
        """Per active layer, ``{dimension name: value}``."""
        result: list[dict[str, Any]] = self.config(sub)["layers"]
        return result

    def param_count(self, sub: Subnet, task: str | None = None) -> int:
        """Exact parameter count of the extracted subnet (plus ``task``'s head when it has one).

        The one-subnet form of :meth:`choice_params`, which holds the formula.

        Raises:
            ValueError: If ``sub`` is not a subnet of this space or ``task`` is unknown.
        """
        return int(self.choice_params(self.choice_matrix([sub]), task)[0])

    def choice_params(self, codes: np.ndarray, task: str | None = None) -> np.ndarray:
        """Exact trainable parameters of each subnet's extracted model (:meth:`UFOSupernet.extract`).

        Counted: the patch-embedding conv (weight and bias), the class token, the position
        embedding, per active layer two LayerNorms (weight and bias), the qkv linear
        ``E -> 3 h d`` and the projection ``h d -> E``, the FFN's two linears ``E -> H -> E``
        (all with biases), the final LayerNorm, and ``task``'s head ``E -> out`` when the task has
        an output width. An ``ffn_path`` choice changes whose FFN a layer runs, not its size.

        Args:
            codes: Valid choice indices, shape ``n x max_depth x n_dims`` (-1 for absent layers).
            task: The task whose head is counted; None (or a task without a head) counts none.

        Returns:
            int64 array of shape ``n``.

        Raises:
            ValueError: If ``task`` is not a task of this space.
        """
        self.check_task(task)
        g = self.geometry
        e = g.embed_dim
        fixed = _stem_params(g) + 2 * e  # stem, final norm
        out = self.task_outputs.get(task) if task else None
        if out:
            fixed += _linear_params(e, out)
        active, heads, hidden = self._layer_shapes(np.asarray(codes))
        attn = heads.astype(np.int64) * g.head_dim  # exact: small integers held as float64
        width = hidden.astype(np.int64)
        per_layer = _norms_params(e) + _attention_params(e, attn) + _ffn_params(e, width)
        result: np.ndarray = fixed + np.where(active, per_layer, 0).sum(1, dtype=np.int64)
        return result

    def flops(self, sub: Subnet, task: str | None = None) -> int:
        """Multiply-accumulates of one 1-image forward pass (convolutions and matmuls only)."""
        self.check_task(task)
        g = self.geometry
        e, t = g.embed_dim, g.num_tokens
        total = g.num_patches * e * g.in_chans * g.patch_size**2
        for layer in self.layer_values(sub):
            a = g.attn_dim(layer["num_heads"])
            h = g.ffn_hidden(layer["mlp_ratio"])
            total += t * e * 3 * a + 2 * t * t * a + t * a * e + 2 * t * e * h
        out = self.task_outputs.get(task) if task else None
        if out:
            total += e * out
        return total

    # ------------------------------------------------------------------ cost components
    @property
    def cost_names(self) -> tuple[str, ...]:
        return UFO_COSTS

    def _layer_shapes(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per layer position: active mask, heads and FFN hidden width, each ``n x max_depth``."""
        names = [d.name for d in self.dimensions]
        heads_dim = self.dimensions[names.index("num_heads")]
        ratio_dim = self.dimensions[names.index("mlp_ratio")]
        active = codes[:, :, 0] >= 0
        heads_idx = np.where(active, codes[:, :, names.index("num_heads")], 0)
        ratio_idx = np.where(active, codes[:, :, names.index("mlp_ratio")], 0)
        hidden = np.array([self.geometry.ffn_hidden(r) for r in ratio_dim.values], dtype=np.float64)
        heads = np.where(active, np.asarray(heads_dim.values, dtype=np.float64)[heads_idx], 0.0)
        return active, heads, np.where(active, hidden[ratio_idx], 0.0)

    def choice_costs(self, codes: np.ndarray) -> np.ndarray:
        """Columns of :data:`UFO_COSTS`, summed over the active layers (see :meth:`flops`).

        With a fixed geometry the two attention MAC columns and ``heads`` are proportional to
        each other; they stay separate because their ratio changes with ``image_size`` (tokens).
        """
        g = self.geometry
        e, t = float(g.embed_dim), float(g.num_tokens)
        active, heads, hidden = self._layer_shapes(np.asarray(codes))
        attn = heads * g.head_dim  # query/key/value channels per layer
        columns = [
            (4.0 * t * e * attn).sum(1),  # qkv (E -> 3A) and proj (A -> E) linears
            (2.0 * t * t * attn).sum(1),  # q k^T and attn @ v
            (2.0 * t * e * hidden).sum(1),  # FFN fc1 and fc2
            active.sum(1).astype(np.float64),  # per-layer overheads: norms, residuals, launches
            heads.sum(1),  # per-head overheads: softmax rows, head reshapes
        ]
        return np.stack(columns, 1)

    def choice_macs(self, codes: np.ndarray) -> np.ndarray:
        g = self.geometry
        patch_embed = float(g.num_patches * g.embed_dim * g.in_chans * g.patch_size**2)
        result: np.ndarray = patch_embed + self.choice_costs(codes)[:, :3].sum(1)
        return result


def two_digit_depth(name: str, depths: Sequence[int], arch: str, length: int) -> int:
    """The depth of an arch string that spells it in its first two digits and has ``length``
    characters (the multipath and index formats).

    Raises:
        ValueError: Naming the length or the depth positions when they are wrong.
    """
    if not isinstance(arch, str) or len(arch) != length:
        raise ValueError(f"{name} arch must be a {length}-character string, got {arch!r}")
    # str.isdigit() accepts non-ASCII digits such as '²', which int() then rejects.
    if not all(c in "0123456789" for c in arch[:2]) or int(arch[:2]) not in depths:
        raise ValueError(
            f"{name} arch positions 0-1 (depth) are {arch[:2]!r}; allowed: "
            + ", ".join(f"{d:02d}" for d in depths)
        )
    return int(arch[:2])


TRACK2_TASKS = ("cplfw", "market1501", "dukemtmc", "msmt17", "veri", "vehicleid", "veriwild", "sop")
_TRACK2_DEPTH_CHARS = {"j": 10, "k": 11, "l": 12}


class Track2Space(UFOSpace):
    """The VIMER-UFO ViT-Base space of the CVPR 2022 NAS track 2.

    Arch strings have 37 characters: a depth letter (``j``/``k``/``l`` = 10/11/12 layers), then
    12 groups of three: num_heads ``1``/``2``/``3`` = 12/11/10, mlp_ratio ``1``/``2``/``3`` =
    4.0/3.5/3.0, embed_dim ``1`` = 768. Layers beyond the depth are ``000``.
    Cardinality: ``9**10 + 9**11 + 9**12``.
    """

    score_label = "rank among the 500 track-2 subnets (0-499, higher is better)"
    score_bounds = (0.0, 499.0)
    #: How UFO scores these tasks (PaddlePaddle/VIMER ``UFO/OneForAll`` evaluators): CPLFW by
    #: face verification accuracy, the person and vehicle re-id sets by mAP/CMC, SOP by Recall@K.
    evaluation_metrics = {
        "cplfw": "verification",
        **dict.fromkeys(("market1501", "dukemtmc", "msmt17", "veri", "vehicleid", "veriwild"), "reid"),
        "sop": "retrieval",
    }

    def __init__(
        self,
        geometry: ViTGeometry | None = None,
        *,
        name: str = "ufo-track2",
        task_outputs: Mapping[str, int | None] | None = None,
    ) -> None:
        # name and task_outputs: a space defined as data with this arch format and its own tasks.
        super().__init__(
            name,
            {task: None for task in TRACK2_TASKS} if task_outputs is None else task_outputs,
            [Dimension("num_heads", (12, 11, 10)), Dimension("mlp_ratio", (4.0, 3.5, 3.0))],
            sorted(_TRACK2_DEPTH_CHARS.values()),
            geometry or ViTGeometry(),
        )

    def parse(self, arch: str) -> Subnet:
        if not isinstance(arch, str) or len(arch) != 37:
            raise ValueError(f"{self.name} arch must be a 37-character string, got {arch!r}")
        if arch[0] not in _TRACK2_DEPTH_CHARS:
            raise ValueError(f"{self.name} arch position 0 (depth) is {arch[0]!r}; allowed: j, k, l")
        depth = _TRACK2_DEPTH_CHARS[arch[0]]
        layers = []
        for layer in range(12):
            group = arch[1 + 3 * layer : 4 + 3 * layer]
            pos = 1 + 3 * layer
            if layer >= depth:
                if group != "000":
                    raise ValueError(
                        f"{self.name} arch positions {pos}-{pos + 2} (layer {layer}, beyond depth {depth}) "
                        f"are {group!r}; allowed: '000'"
                    )
                continue
            for offset, (char, allowed) in enumerate(zip(group, ("123", "123", "1"), strict=True)):
                if char not in allowed:
                    what = ("num_heads", "mlp_ratio", "embed_dim")[offset]
                    raise ValueError(
                        f"{self.name} arch position {pos + offset} (layer {layer} {what}) is {char!r}; "
                        f"allowed: {', '.join(allowed)}"
                    )
            layers.append((int(group[0]) - 1, int(group[1]) - 1))
        return Subnet(self.name, depth, tuple(layers))

    def format(self, sub: Subnet) -> str:
        self.validate(sub)
        letter = {v: k for k, v in _TRACK2_DEPTH_CHARS.items()}[sub.depth]
        body = "".join(f"{h + 1}{r + 1}1" for h, r in sub.layers)
        return letter + body + "000" * (self.max_depth - sub.depth)


class MultipathSpace(UFOSpace):
    """The UFO 2.0 task-MoE space: every layer of a task's path picks the shared FFN or the task's
    own FFN expert, an FFN width ratio and a number of attention heads; the path has a depth.

    For one task the space holds ``sum_{d in depths} (|ffn_path| * |mlp_ratio| * |num_heads|) ** d``
    subnets (``18**10 + 18**11 + 18**12`` for the preset); the arch string does not name the task,
    the same path is meaningful for every task (``task`` selects whose expert ``ffn_path=task`` is).

    Arch strings: two digits of depth, then ``max_depth`` groups of three: ffn_path ``s``/``t``
    (shared / task-specific), mlp_ratio index and num_heads index (1-based); absent layers ``000``.

    The preset's task kinds are scored as UFO scores them (face: verification, person and
    vehicle: re-id, product: retrieval); other task names are classification tasks (``top1``).
    """

    evaluation_metrics = {"face": "verification", "person": "reid", "vehicle": "reid", "product": "retrieval"}

    def __init__(
        self,
        task_outputs: Mapping[str, int | None],
        depths: Sequence[int] = (10, 11, 12),
        mlp_ratios: Sequence[float] = (4.0, 3.5, 3.0),
        num_heads: Sequence[int] = (12, 11, 10),
        geometry: ViTGeometry | None = None,
        name: str = "ufo2-multipath",
    ) -> None:
        if len(task_outputs) < 1:
            raise ValueError("ufo2-multipath needs at least one task")
        if max(depths) > 99 or len(mlp_ratios) > 9 or len(num_heads) > 9:
            raise ValueError("ufo2-multipath arch strings allow depth <= 99 and <= 9 choices per dimension")
        super().__init__(
            name,
            task_outputs,
            [
                Dimension("ffn_path", ("shared", "task")),
                Dimension("mlp_ratio", tuple(float(r) for r in mlp_ratios)),
                Dimension("num_heads", tuple(int(h) for h in num_heads)),
            ],
            depths,
            geometry or ViTGeometry(),
        )

    def parse(self, arch: str) -> Subnet:
        depth = two_digit_depth(self.name, self.depths, arch, 2 + 3 * self.max_depth)
        allowed = (
            "st",
            "".join(str(i + 1) for i in range(len(self.dimensions[1]))),
            "".join(str(i + 1) for i in range(len(self.dimensions[2]))),
        )
        layers = []
        for layer in range(self.max_depth):
            pos = 2 + 3 * layer
            group = arch[pos : pos + 3]
            if layer >= depth:
                if group != "000":
                    raise ValueError(
                        f"{self.name} arch positions {pos}-{pos + 2} (layer {layer}, beyond depth {depth}) "
                        f"are {group!r}; allowed: '000'"
                    )
                continue
            for offset, char in enumerate(group):
                if char not in allowed[offset]:
                    raise ValueError(
                        f"{self.name} arch position {pos + offset} (layer {layer} "
                        f"{self.dimensions[offset].name}) is {char!r}; allowed: {', '.join(allowed[offset])}"
                    )
            layers.append(("st".index(group[0]), int(group[1]) - 1, int(group[2]) - 1))
        return Subnet(self.name, depth, tuple(layers))

    def format(self, sub: Subnet) -> str:
        self.validate(sub)
        body = "".join(f"{'st'[p]}{r + 1}{h + 1}" for p, r, h in sub.layers)
        return f"{sub.depth:02d}" + body + "000" * (self.max_depth - sub.depth)


MULTIPATH_TASKS: dict[str, int | None] = {"face": 512, "person": 512, "vehicle": 512, "product": 512}
