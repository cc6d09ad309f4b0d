"""UFO 2.0 deployments: several tasks' paths through one supernet, stored and run as one model.

A :class:`Deployment` maps tasks to subnets of one UFO space. Deployed together, the tasks store
what they share once: the stem (patch embedding, class token, position embedding), every layer's
norms and attention up to the most heads any task uses there, the shared FFN up to the widest
task that takes the shared path there, and the final norm. Each task adds only its own FFN
experts (``ffn_path = task``) and its head. :func:`deployment_params` counts exactly that union;
:class:`DeploymentViT` holds it.

When the tasks read the same image, what their paths compute identically is computed once: the
stem, then each layer for as long as the tasks' choices agree (same heads, same width, the shared
FFN). :func:`deployment_tree` gives that computation as a tree of layers (:class:`SharedLayer`),
which :meth:`DeploymentViT.forward_shared` runs and :func:`deployment_macs` counts.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._export import ONNX_OPSET, batch_axes, example_input
from ._space import Subnet
from ._supernet import (
    LayerSpec,
    StemParts,
    UFOSupernet,
    _copy_,
    _copy_stem,
    _embed,
    _ffn,
    _init_weights,
    _Stem,
    _stem_parts,
    _SuperBlock,
    _SuperFFN,
    resolve_path,
)
from ._ufo import (
    DEFAULT_NORM_EPS,
    UFOSpace,
    ViTGeometry,
    _attention_params,
    _ffn_params,
    _linear_params,
    _norms_params,
    _stem_params,
)

InputMode = Literal["separate", "shared"]
#: The input modes of a deployment: each task its own image, or one image for every task.
INPUT_MODES: tuple[InputMode, ...] = ("separate", "shared")
#: Bytes per weight of the dtypes a deployment's memory can be counted in.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


@dataclass(frozen=True)
class Deployment:
    """Tasks deployed together on one chip, each with its own path through one space.

    Attributes:
        space: Name of the space every path belongs to.
        paths: ``(task, subnet)`` pairs, in the order the tasks were given; tasks are distinct.
    """

    space: str
    paths: tuple[tuple[str, Subnet], ...]

    def __post_init__(self) -> None:
        tasks = [task for task, _ in self.paths]
        if not tasks:
            raise ValueError("a deployment needs at least one task")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"a deployment names each task once, got {tasks}")

    @classmethod
    def of(cls, space: str, paths: Mapping[str, Subnet]) -> Deployment:
        """The deployment of ``{task: subnet}`` on ``space``."""
        return cls(space, tuple(paths.items()))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(task for task, _ in self.paths)

    def __getitem__(self, task: str) -> Subnet:
        for name, sub in self.paths:
            if name == task:
                return sub
        raise KeyError(task)

    def __iter__(self) -> Iterator[tuple[str, Subnet]]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class SharedLayer:
    """One layer computed once, for every task whose path agrees up to and including it.

    Attributes:
        layer: Position of the layer (0-based).
        spec: Its heads, FFN width and FFN path.
        tasks: Tasks that use this computation, in deployment order.
        parent: Index (in :func:`deployment_tree`'s list) of the layer it reads, -1 for the stem.
        expert: The task whose own FFN expert the layer runs, or None for the shared FFN.
    """

    layer: int
    spec: LayerSpec
    tasks: tuple[str, ...]
    parent: int
    expert: str | None


def resolve_deployment(space: UFOSpace, dep: Deployment) -> dict[str, list[LayerSpec]]:
    """Check that ``dep`` belongs to ``space`` (tasks known, subnets valid); each task's layers.

    Raises:
        ValueError: Naming the task whose path or name is wrong.
    """
    if dep.space != space.name:
        raise ValueError(f"deployment is of space {dep.space!r}, not {space.name!r}")
    specs = {}
    for task, sub in dep:
        if task not in space.task_outputs:
            raise ValueError(f"unknown task {task!r} for space {space.name!r}; known: {space.tasks}")
        try:
            specs[task] = resolve_path(space, sub, task)[1]
        except ValueError as error:
            raise ValueError(f"task {task!r}: {error}") from None
    return specs


def deployment_tree(space: UFOSpace, dep: Deployment) -> tuple[list[SharedLayer], dict[str, int]]:
    """The layers a shared-input forward of ``dep`` computes, each once, parents first.

    Two tasks share a layer when they share its input (the stem, or the same parent layer) and
    choose the same heads, FFN width and the shared FFN; a layer on a task's own expert is that
    task's alone, and so is every layer of a space with a stem per task (a first layer's
    ``parent`` is -1: it reads the stem of its first task).

    Returns:
        ``(layers, last)``: the layers in computation order, and for each task the index of the
        last layer of its path (its embedding is the final norm of that layer's output).
    """
    specs = resolve_deployment(space, dep)
    layers: list[SharedLayer] = []
    index: dict[tuple[int, LayerSpec, str | None, str | None], int] = {}
    last: dict[str, int] = {}
    for task, task_specs in specs.items():
        parent = -1
        stem = task if space.per_task_stem else None
        for position, spec in enumerate(task_specs):
            expert = task if spec.ffn_path == "task" else None
            key = (parent, spec, expert, stem if parent < 0 else None)
            if key in index:
                node = layers[index[key]]
                layers[index[key]] = SharedLayer(
                    node.layer, node.spec, (*node.tasks, task), node.parent, node.expert
                )
            else:
                index[key] = len(layers)
                layers.append(SharedLayer(position, spec, (task,), parent, expert))
            parent = index[key]
        last[task] = parent
    return layers, last


@dataclass(frozen=True)
class _Union:
    """Widths of the union of a deployment's paths at one layer position."""

    heads: int
    shared_hidden: int  # 0 when no task takes the shared FFN here
    experts: dict[str, int]  # task -> hidden width of its expert here


def _union(space: UFOSpace, dep: Deployment) -> list[_Union]:
    specs = resolve_deployment(space, dep)
    depth = max(len(s) for s in specs.values())
    layers = []
    for position in range(depth):
        users = [(task, s[position]) for task, s in specs.items() if position < len(s)]
        shared = [spec.ffn_hidden for _, spec in users if spec.ffn_path != "task"]
        layers.append(
            _Union(
                heads=max(spec.num_heads for _, spec in users),
                shared_hidden=max(shared, default=0),
                experts={task: spec.ffn_hidden for task, spec in users if spec.ffn_path == "task"},
            )
        )
    return layers


@dataclass(frozen=True)
class LayerChoices:
    """Per-layer shapes of many deployments' paths, from their choice matrices.

    Every array is ``n x T x max_depth`` (``n`` deployments of the same ``T`` tasks).

    Attributes:
        active: Whether the task's path has the layer.
        heads: Attention heads of the layer (0 where absent).
        hidden: FFN hidden width of the layer (0 where absent).
        expert: Whether the layer runs the task's own FFN expert.
    """

    active: np.ndarray
    heads: np.ndarray
    hidden: np.ndarray
    expert: np.ndarray

    @classmethod
    def of(cls, space: UFOSpace, codes: np.ndarray) -> LayerChoices:
        """The shapes of ``codes``, ``n x T x max_depth x n_dims`` choice indices (-1 = absent)."""
        codes = np.asarray(codes)
        if codes.ndim != 4:
            raise ValueError(f"deployment codes must be n x T x max_depth x n_dims, got shape {codes.shape}")
        names = [d.name for d in space.dimensions]
        active = codes[..., 0] >= 0

        def values(name: str, convert: Any) -> np.ndarray:
            table = np.array([convert(v) for v in space.dimensions[names.index(name)].values], dtype=np.int64)
            return np.where(active, table[np.where(active, codes[..., names.index(name)], 0)], 0)

        heads = values("num_heads", int)
        hidden = values("mlp_ratio", space.geometry.ffn_hidden)
        if "ffn_path" in names:
            # By name: a definition may list the paths in any order (``[task, shared]``, ``[task]``).
            own = space.dimensions[names.index("ffn_path")].values.index("task")
            expert = active & (codes[..., names.index("ffn_path")] == own)
        else:
            expert = np.zeros_like(active)
        return cls(active, heads, hidden, expert)


def deployment_choice_params(space: UFOSpace, tasks: Sequence[str], codes: np.ndarray) -> np.ndarray:
    """:func:`deployment_params` of many deployments of ``tasks`` at once (vectorised).

    Args:
        space: The UFO space.
        tasks: The ``T`` tasks, in the order of ``codes``' second axis.
        codes: Valid choice matrices, ``n x T x max_depth x n_dims`` (-1 for absent layers).

    Returns:
        Parameter counts, int64 array of shape ``n``.
    """
    g = space.geometry
    e = g.embed_dim
    layers = LayerChoices.of(space, codes)
    used = layers.active.any(axis=1)  # n x max_depth
    attn = g.head_dim * layers.heads.max(axis=1)
    shared_hidden = np.where(layers.active & ~layers.expert, layers.hidden, 0).max(axis=1)
    expert_hidden = np.where(layers.expert, layers.hidden, 0)
    ffn = np.where(shared_hidden > 0, _ffn_params(e, shared_hidden), 0).sum(axis=1)
    ffn += np.where(expert_hidden > 0, _ffn_params(e, expert_hidden), 0).sum(axis=(1, 2))
    per_layer = np.where(used, _norms_params(e) + _attention_params(e, attn), 0).sum(axis=1)
    stem = (len(tasks) if space.per_task_stem else 1) * _stem_params(g)
    heads = sum(_linear_params(e, out) for task in tasks if (out := space.task_outputs[task]))
    result: np.ndarray = (stem + per_layer + ffn + 2 * e + heads).astype(np.int64)
    return result


def reused_layers(space: UFOSpace, codes: np.ndarray) -> np.ndarray:
    """Which layers a shared-input forward does not compute again: ``n x T x max_depth`` bool.

    Task ``t``'s layer ``i`` is reused when an earlier task ``u`` (in ``codes``' task order)
    agrees with ``t`` on every layer up to ``i`` (heads, width, the shared FFN; expert layers never
    agree), i.e. when :func:`deployment_tree` gives both the same :class:`SharedLayer`.
    """
    if space.per_task_stem:  # no two tasks start from the same tokens
        return np.zeros(np.asarray(codes).shape[:3], dtype=bool)
    layers = LayerChoices.of(space, codes)
    n, tasks, depth = layers.active.shape
    same_layer = (
        layers.active[:, :, None]
        & layers.active[:, None, :]
        & ~layers.expert[:, :, None]
        & ~layers.expert[:, None, :]
        & (layers.heads[:, :, None] == layers.heads[:, None, :])
        & (layers.hidden[:, :, None] == layers.hidden[:, None, :])
    )  # n x T x T x max_depth
    same_prefix = np.logical_and.accumulate(same_layer, axis=3)
    earlier = np.tril(np.ones((tasks, tasks), dtype=bool), k=-1)  # [t, u]: u comes before t
    return np.asarray((same_prefix & earlier[None, :, :, None]).any(axis=2))


def deployment_choices(space: UFOSpace, dep: Deployment) -> np.ndarray:
    """``dep`` as a ``1 x T x max_depth x n_dims`` choice matrix (tasks in deployment order)."""
    resolve_deployment(space, dep)
    return space.choice_matrix([sub for _, sub in dep])[None]


def deployment_params(space: UFOSpace, dep: Deployment) -> int:
    """Exact parameter count of the deployed model: the union of the tasks' weight slices.

    Shared parts count once, at their widest use (stem, norms, attention, shared FFN, final
    norm); experts and heads count per task. For a one-task deployment this equals
    ``space.param_count(sub, task)``.
    """
    return int(deployment_choice_params(space, dep.tasks, deployment_choices(space, dep))[0])


def deployment_weight_mb(space: UFOSpace, dep: Deployment, dtype: str = "float32") -> float:
    """Megabytes (10^6 bytes) of the deployed model's weights stored as ``dtype``.

    Raises:
        ValueError: If ``dtype`` is not one of :data:`DTYPE_BYTES`.
    """
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {sorted(DTYPE_BYTES)}")
    return deployment_params(space, dep) * DTYPE_BYTES[dtype] / 1e6


def _layer_macs(g: ViTGeometry, spec: LayerSpec) -> int:
    e, t, a = g.embed_dim, g.num_tokens, g.attn_dim(spec.num_heads)
    return t * e * 3 * a + 2 * t * t * a + t * a * e + 2 * t * e * spec.ffn_hidden


def deployment_macs(space: UFOSpace, dep: Deployment, input: InputMode = "separate") -> int:
    """Multiply-accumulates of one forward pass of every task on one image each.

    ``separate``: each task runs its own path on its own image (the sum of the tasks'
    ``space.flops``). ``shared``: one image for all, so the stem and every :class:`SharedLayer`
    run once.
    """
    if input == "separate":
        resolve_deployment(space, dep)
        return sum(space.flops(sub, task) for task, sub in dep)
    if input != "shared":
        raise ValueError(f"input must be 'separate' or 'shared', got {input!r}")
    g = space.geometry
    layers, _ = deployment_tree(space, dep)
    heads = sum(g.embed_dim * out for task in dep.tasks if (out := space.task_outputs[task]))
    stems = len(dep) if space.per_task_stem else 1
    stem = stems * g.num_patches * g.embed_dim * g.in_chans * g.patch_size**2
    return stem + sum(_layer_macs(g, node.spec) for node in layers) + heads


# ---------------------------------------------------------------------- the deployed model
def _interleaved_attention(
    x: Tensor, qkv: nn.Linear, proj: nn.Linear, num_heads: int, head_dim: int
) -> Tensor:
    """Self-attention of the first ``num_heads`` heads of a head-major ``qkv`` (``B x T x E``).

    ``qkv``'s rows are ``[q_0 k_0 v_0 q_1 k_1 v_1 ...]`` (``head_dim`` rows each), so any number of
    heads is a contiguous row prefix and no task's forward copies weights; ``proj``'s columns are
    cut the same way (a strided view that the matrix multiply reads in place).
    """
    b, t, _ = x.shape
    rows = 3 * num_heads * head_dim
    out = F.linear(x, qkv.weight[:rows], qkv.bias[:rows]).reshape(b, t, num_heads, 3, head_dim)
    q, k, v = out.permute(3, 0, 2, 1, 4).unbind(0)  # each B x h x T x d
    attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, num_heads * head_dim)
    return F.linear(attended, proj.weight[:, : num_heads * head_dim], proj.bias)


class _FFNUnion(nn.Module):
    def __init__(self, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, embed_dim)

    def forward(self, x: Tensor, hidden: int) -> Tensor:
        return _ffn(
            x, self.fc1.weight[:hidden], self.fc1.bias[:hidden], self.fc2.weight[:, :hidden], self.fc2.bias
        )


class _LayerUnion(nn.Module):
    """One layer position of a deployment: what every task using it needs, stored once."""

    def __init__(self, embed_dim: int, head_dim: int, union: _Union, eps: float = DEFAULT_NORM_EPS) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps)
        self.qkv = nn.Linear(embed_dim, 3 * union.heads * head_dim)
        self.proj = nn.Linear(union.heads * head_dim, embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps)
        self.ffn = _FFNUnion(embed_dim, union.shared_hidden) if union.shared_hidden else None
        self.experts = nn.ModuleDict({task: _FFNUnion(embed_dim, h) for task, h in union.experts.items()})

    def forward(self, x: Tensor, spec: LayerSpec, expert: str | None) -> Tensor:
        x = x + _interleaved_attention(self.norm1(x), self.qkv, self.proj, spec.num_heads, self.head_dim)
        # ModuleDict is not generic: its values are the _FFNUnion experts built in __init__.
        ffn = self.ffn if expert is None else cast(_FFNUnion, self.experts[expert])
        assert ffn is not None, "the union holds the shared FFN whenever a path takes it"
        result: Tensor = x + ffn(self.norm2(x), spec.ffn_hidden)
        return result


class DeploymentViT(nn.Module):
    """A standalone model of several tasks' paths, holding the union of their weights once.

    Built by :func:`extract_deployment`; its parameter count is :func:`deployment_params`.

    Args:
        space: The UFO space (its geometry gives the shapes).
        dep: The deployment.

    Attributes:
        space: ``space``.
        deployment: ``dep``.
        tasks: The deployment's tasks, in order (the order of :meth:`forward_shared`'s outputs).
    """

    def __init__(self, space: UFOSpace, dep: Deployment) -> None:
        super().__init__()
        g = space.geometry
        self.space, self.deployment, self.geometry = space, dep, g
        self.tasks = dep.tasks
        self._specs = resolve_deployment(space, dep)
        self._tree, self._last = deployment_tree(space, dep)
        with torch.device("meta"):
            if space.per_task_stem:
                self.stems = nn.ModuleDict({task: _Stem(g) for task in dep.tasks})
            else:
                self.patch_embed = nn.Conv2d(g.in_chans, g.embed_dim, g.patch_size, stride=g.patch_size)
                self.cls_token = nn.Parameter(torch.empty(1, 1, g.embed_dim))
                self.pos_embed = nn.Parameter(torch.empty(1, g.num_tokens, g.embed_dim))
            self.blocks = nn.ModuleList(
                _LayerUnion(g.embed_dim, g.head_dim, u, g.norm_eps) for u in _union(space, dep)
            )
            self.norm = nn.LayerNorm(g.embed_dim, eps=g.norm_eps)
            self.heads = nn.ModuleDict(
                {task: nn.Linear(g.embed_dim, out) for task in dep.tasks if (out := space.task_outputs[task])}
            )
        self.to_empty(device="cpu")
        with torch.no_grad():
            self.apply(_init_weights)

    def stem_parts(self, task: str) -> StemParts:
        """``(patch_embed, cls_token, pos_embed)`` of ``task``'s stem (shared or its own)."""
        return _stem_parts(self, self.space.per_task_stem, task)

    def _finish(self, x: Tensor, task: str) -> Tensor:
        out = self.norm(x)[:, 0]
        result: Tensor = self.heads[task](out) if task in self.heads else out
        return result

    def _check_input(self, x: Tensor) -> None:
        g = self.geometry
        expected = (g.in_chans, g.image_size, g.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"input must be B x {' x '.join(map(str, expected))}, got {tuple(x.shape)}")

    def forward(self, x: Tensor, task: str) -> Tensor:
        """``task``'s output on images ``x`` (``B x in_chans x image_size x image_size``): its head's
        ``B x width``, or the ``B x E`` embedding for tasks without a head. Equals the task's
        single-task extraction to float rounding."""
        if task not in self._specs:
            raise ValueError(f"task {task!r} is not in this deployment; it holds {list(self.tasks)}")
        self._check_input(x)
        x = _embed(x, *self.stem_parts(task))
        # ModuleList is not generic: these hold the _LayerUnion modules built in __init__.
        for block, spec in zip(cast("Iterable[_LayerUnion]", self.blocks), self._specs[task], strict=False):
            x = block(x, spec, task if spec.ffn_path == "task" else None)
        return self._finish(x, task)

    def forward_shared(self, x: Tensor) -> dict[str, Tensor]:
        """Every task's output on the same images ``x``, computing shared layers once.

        Returns:
            ``{task: output}`` in :attr:`tasks` order; each equals ``self(x, task)``.
        """
        self._check_input(x)
        stem = None if self.space.per_task_stem else _embed(x, *self.stem_parts(self.tasks[0]))
        computed: list[Tensor] = []
        for node in self._tree:  # parents come first
            if node.parent >= 0:
                source = computed[node.parent]
            else:  # a first layer reads the shared stem, or its only task's own
                source = stem if stem is not None else _embed(x, *self.stem_parts(node.tasks[0]))
            computed.append(self.blocks[node.layer](source, node.spec, node.expert))
        return {task: self._finish(computed[self._last[task]], task) for task in self.tasks}

    def forward_separate(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each task's output on its own images: ``{task: images}`` -> ``{task: output}``.

        Raises:
            ValueError: If ``inputs`` does not name exactly the deployment's tasks.
        """
        if set(inputs) != set(self.tasks):
            raise ValueError(f"inputs must name the tasks {list(self.tasks)}, got {list(inputs)}")
        return {task: self(inputs[task], task) for task in self.tasks}

    def extra_repr(self) -> str:
        return f"space={self.space.name!r}, tasks={list(self.tasks)}"


def _copy_attention(target: _LayerUnion, source: _SuperBlock, heads: int, head_dim: int) -> None:
    """Copy the first ``heads`` heads of a supernet layer's ``[q | k | v]`` attention into the
    head-major layout of ``target``."""
    qkv, proj = source.attn.qkv, source.attn.proj
    e = qkv.in_features
    max_heads = qkv.out_features // (3 * head_dim)
    weight = qkv.weight.view(3, max_heads, head_dim, e)[:, :heads].permute(1, 0, 2, 3)
    bias = qkv.bias.view(3, max_heads, head_dim)[:, :heads].permute(1, 0, 2)
    target.qkv.weight.copy_(weight.reshape(-1, e))
    target.qkv.bias.copy_(bias.reshape(-1))
    target.proj.weight.copy_(proj.weight[:, : heads * head_dim])
    target.proj.bias.copy_(proj.bias)


def _copy_ffn(target: _FFNUnion, source: _SuperFFN) -> None:
    fc1, fc2 = target.fc1, target.fc2
    _copy_((fc1.weight, fc1.bias, fc2.weight, fc2.bias), source.sliced(fc1.out_features))


@torch.no_grad()
def extract_deployment(supernet: UFOSupernet, dep: Deployment | Mapping[str, Subnet | str]) -> DeploymentViT:
    """A standalone :class:`DeploymentViT` of ``dep`` (``{task: subnet or arch}`` or a
    :class:`Deployment`) with the supernet's weights; it shares no storage with the supernet.

    Raises:
        ValueError: If a task or path does not belong to the supernet's space.
    """
    space = supernet.space
    if not isinstance(dep, Deployment):
        dep = Deployment.of(
            space.name, {task: space.parse(s) if isinstance(s, str) else s for task, s in dep.items()}
        )
    param = next(supernet.parameters())
    model = DeploymentViT(space, dep).to(device=param.device, dtype=param.dtype)
    for task in dep.tasks if space.per_task_stem else dep.tasks[:1]:
        _copy_stem(model.stem_parts(task), supernet.stem_parts(task))
    g = space.geometry
    # ModuleList / ModuleDict are not generic: these hold the modules built in the two __init__s.
    sources = cast("Iterable[_SuperBlock]", supernet.blocks)
    for target, source in zip(cast("Iterable[_LayerUnion]", model.blocks), sources, strict=False):
        target.norm1.load_state_dict(source.norm1.state_dict())
        target.norm2.load_state_dict(source.norm2.state_dict())
        _copy_attention(target, source, target.qkv.out_features // (3 * g.head_dim), g.head_dim)
        if target.ffn is not None:
            _copy_ffn(target.ffn, source.ffn)
        for task, expert in target.experts.items():
            _copy_ffn(cast(_FFNUnion, expert), cast(_SuperFFN, source.experts[task]))
    model.norm.load_state_dict(supernet.norm.state_dict())
    for task, head in model.heads.items():
        head.load_state_dict(cast(nn.Linear, supernet.heads[task]).state_dict())
    return model.train(supernet.training)


# ---------------------------------------------------------------------- ONNX
class _SharedInputGraph(nn.Module):
    def __init__(self, model: DeploymentViT) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model.forward_shared(x).values())


class _SeparateInputGraph(nn.Module):
    def __init__(self, model: DeploymentViT) -> None:
        super().__init__()
        self.model = model

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model(x, task) for x, task in zip(xs, self.model.tasks, strict=True))


def onnx_names(tasks: Sequence[str], input: InputMode) -> tuple[list[str], list[str]]:
    """Input and output names of :func:`export_deployment_onnx`'s graph: inputs ``images`` (shared)
    or ``images_<task>`` (separate), outputs ``output_<task>``."""
    inputs = ["images"] if input == "shared" else [f"images_{task}" for task in tasks]
    return inputs, [f"output_{task}" for task in tasks]


def export_deployment_onnx(
    model: DeploymentViT,
    path: str | Path,
    input: InputMode = "shared",
    batch_size: int = 1,
    *,
    dynamic_batch: bool = False,
) -> Path:
    """Export a deployment to one ONNX file with one output per task (opset 18).

    ``shared``: one float32 input ``images`` that every task reads (shared layers computed once);
    ``separate``: one input ``images_<task>`` per task. Outputs are ``output_<task>``, in the
    deployment's task order. Weights are stored once: slices of the union are graph operations,
    not folded into per-task copies, so the file holds :func:`deployment_params` weights.
    ``dynamic_batch`` makes axis 0 of every input and output a dynamic axis named ``batch``.

    Raises:
        ValueError: On an unknown ``input`` or ``batch_size < 1``.
    """
    if input not in ("shared", "separate"):
        raise ValueError(f"input must be 'shared' or 'separate', got {input!r}")
    graph: nn.Module = _SharedInputGraph(model) if input == "shared" else _SeparateInputGraph(model)
    x = example_input(model.geometry, batch_size).to(next(model.parameters()).dtype)
    args = (x,) if input == "shared" else tuple(x for _ in model.tasks)
    input_names, output_names = onnx_names(model.tasks, input)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation notices; see export_onnx
        torch.onnx.export(
            graph,
            args,
            str(path),
            dynamo=False,
            input_names=input_names,
            output_names=output_names,
            opset_version=ONNX_OPSET,
            # Folding would turn every task's slice of a shared weight into its own initializer.
            do_constant_folding=False,
            dynamic_axes=batch_axes(input_names + output_names) if dynamic_batch else None,
        )
    return path
