"""The layout of a UFO checkpoint: which tasks, stems, blocks and heads its keys hold, and their shapes."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._definition import NAME_PATTERN
from ._errors import CheckpointError

#: Epsilon of UFO's LayerNorms (``partial(nn.LayerNorm, epsilon=1e-6)``).
UFO_NORM_EPS = 1e-6
#: Epsilon of the BatchNorm of UFO's embedding heads (``EmbeddingHead``'s ``BatchNorm``).
UFO_BN_EPS = 1e-5
#: UFO's ``predefined_head_dim`` default (the released ViT-Huge uses 80).
DEFAULT_HEAD_DIM = 64


BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
HEAD_KEY = re.compile(r"heads\.([^.]+)\.(.+)")
HEAD_PART_KEY = re.compile(r"bottleneck\.[01]\.(weight|bias|_mean|_variance)|linear\.(weight|bias)")
BN_FIELDS = ("weight", "bias", "_mean", "_variance")


def _mode(values: Iterable[Any]) -> Any:
    """The most common value (the first seen among equally common ones), or None.

    Geometry is read as the most common shape, so that one wrong array is the one reported.
    """
    counts = Counter(values)
    return max(counts, key=lambda v: counts[v]) if counts else None


def strip_wrapper(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` without the key prefix of a ``paddle.DataParallel`` wrapper, if it has one."""
    # A state saved from paddle.DataParallel prefixes every key with "_layers.".
    if state and all(key.startswith("_layers.") for key in state):
        return {key[len("_layers.") :]: value for key, value in state.items()}
    return dict(state)


def shape_of(array: np.ndarray) -> list[int]:
    """``array``'s shape as plain ints (for messages and comparisons with lists)."""
    return [int(n) for n in array.shape]


def require_floating(key: str, array: np.ndarray) -> None:
    """Check that the array at ``key`` holds floats.

    Raises:
        CheckpointError: Another dtype (with a hint for Paddle's bfloat16, saved as uint16).
    """
    if array.dtype.kind != "f":
        hint = (
            " (Paddle saves bfloat16 as uint16: convert it to float32 first)"
            if array.dtype == np.uint16
            else ""
        )
        raise CheckpointError(f"{key}: dtype {array.dtype} is not a floating type{hint}", key)


class _Keys:
    """The backbone keys of a state (without their prefix), searched by pattern."""

    def __init__(self, state: Mapping[str, np.ndarray]) -> None:
        self.prefix = "backbone." if any(k.startswith("backbone.") for k in state) else ""
        n = len(self.prefix)
        self.items = [(k[n:], v) for k, v in state.items() if k.startswith(self.prefix)]

    def matches(self, pattern: str) -> list[tuple[re.Match[str], np.ndarray]]:
        compiled = re.compile(pattern)
        return [(m, v) for k, v in self.items if (m := compiled.fullmatch(k))]

    def shapes(self, pattern: str, ndim: int) -> list[tuple[int, ...]]:
        return [tuple(int(n) for n in v.shape) for _, v in self.matches(pattern) if v.ndim == ndim]


@dataclass(frozen=True)
class Layout:
    """What a UFO state dict holds, read from its keys and most common shapes."""

    backbone: str  # prefix of the backbone keys: "backbone." or "" (a bare backbone)
    tasks: tuple[str, ...]
    per_task: dict[str, bool]  # stem part -> one per task (else one, the first task's, shared)
    embed_dim: int
    in_chans: int
    patch_size: int
    grid: int
    depth: int
    qkv_width: int  # 3 * heads * head_dim
    ffn_width: int
    qkv_bias: bool
    experts_by_name: bool  # specific_experts.<task> rather than .<index>
    heads: dict[str, int | None]  # task -> folded head width

    @property
    def per_task_stem(self) -> bool:
        return any(self.per_task.values())

    def expert_id(self, task: str) -> str:
        return task if self.experts_by_name else str(self.tasks.index(task))


def _tasks_of(keys: _Keys, task_names: Sequence[str] | None) -> tuple[tuple[str, ...], list[str]]:
    """The tasks (given, or the patch embeddings' names) and the patch embeddings' names."""
    patch_tasks = [m.group(1) for m, _ in keys.matches(r"patch_embeds\.([^.]+)\.proj\.weight")]
    b = keys.prefix
    if task_names is None and not patch_tasks:
        raise CheckpointError(f"no {b}patch_embeds.<task>.proj.weight to name the tasks: give task_names")
    tasks = tuple(patch_tasks if task_names is None else task_names)
    if not tasks or len(set(tasks)) != len(tasks):
        raise CheckpointError(f"task names must be distinct, one or more, got {list(tasks)}")
    bad = [t for t in tasks if not isinstance(t, str) or not re.fullmatch(NAME_PATTERN, t) or len(t) > 64]
    if bad:
        raise CheckpointError(f"task name {bad[0]!r} is not a valid name ({NAME_PATTERN}, 64 characters)")
    if len(patch_tasks) > 1 and set(patch_tasks) == set(tasks) and tuple(patch_tasks) != tasks:
        key = f"{b}patch_embeds.{patch_tasks[0]}.proj.weight"
        raise CheckpointError(
            f"the tasks {list(tasks)} are not in the checkpoint's order {patch_tasks}, the order that "
            "numbers cls_tokens.<i> and pos_embeds.<i>",
            key,
        )
    return tasks, patch_tasks


def _stem_layout(keys: _Keys, tasks: Sequence[str], patch_tasks: Sequence[str]) -> dict[str, Any]:
    b = keys.prefix
    several = len(tasks) > 1
    per_task = {
        "patch_embed": several and len(patch_tasks) > 1,
        "cls_token": several and len(keys.matches(r"cls_tokens\.\d+")) > 1,
        "pos_embed": several and len(keys.matches(r"pos_embeds\.\d+")) > 1,
    }
    widths = [
        v.shape[-1]
        for _, v in keys.matches(r"(blocks\.\d+\.norm[12]|norm)\.weight|(cls_tokens|pos_embeds)\.\d+")
        if v.ndim
    ]
    embed_dim = _mode(widths)
    patch_shape = _mode(keys.shapes(r"patch_embeds\.[^.]+\.proj\.weight", 4))
    first_patch = f"{b}patch_embeds.{(list(patch_tasks) or list(tasks))[0]}.proj.weight"
    if embed_dim is None or patch_shape is None:
        raise CheckpointError(
            f"missing key {first_patch} (4-D) or LayerNorm weights: not UFO's layout", first_patch
        )
    _, in_chans, side, other = patch_shape
    if side != other:
        raise CheckpointError(
            f"{first_patch}: patches of {side}x{other}; gpnas' patches are square", first_patch
        )
    tokens = _mode(s[1] for s in keys.shapes(r"pos_embeds\.\d+", 3))
    grid = math.isqrt(tokens - 1) if tokens is not None and tokens > 1 else 0
    if tokens is None or grid * grid != tokens - 1:
        key = f"{b}pos_embeds.0"
        raise CheckpointError(
            f"{key}: {tokens} tokens are not a class token and a square grid of patches", key
        )
    return {
        "per_task": per_task,
        "embed_dim": int(embed_dim),
        "in_chans": in_chans,
        "patch_size": side,
        "grid": grid,
    }


def _block_layout(keys: _Keys, tasks: Sequence[str], head_dim: int) -> dict[str, Any]:
    b = keys.prefix
    blocks = sorted({int(m.group(1)) for m, _ in keys.matches(r"blocks\.(\d+)\..+")})
    if not blocks or blocks != list(range(len(blocks))):
        missing = next((i for i in range(len(blocks) + 1) if i not in blocks), 0)
        key = f"{b}blocks.{missing}.norm1.weight"
        raise CheckpointError(f"missing key {key}: blocks are numbered 0, 1, ...", key)
    qkv_width = _mode(s[1] for s in keys.shapes(r"blocks\.\d+\.attn\.qkv\.weight", 2))
    ffn_width = _mode(s[1] for s in keys.shapes(r"blocks\.\d+\.mlp\.moe_mlp\.common_expert\.fc1\.weight", 2))
    for width, part in ((qkv_width, "attn.qkv.weight"), (ffn_width, "mlp.moe_mlp.common_expert.fc1.weight")):
        if width is None:
            key = f"{b}blocks.0.{part}"
            raise CheckpointError(f"missing key {key} (2-D): not UFO's task-MoE layout", key)
    if qkv_width % (3 * head_dim):
        key = f"{b}blocks.0.attn.qkv.weight"
        raise CheckpointError(
            f"{key}: {qkv_width} output channels are not 3 x heads x head_dim {head_dim}; give UFO's "
            "predefined_head_dim (head_dim)",
            key,
        )
    ids = {m.group(1) for m, _ in keys.matches(r"blocks\.\d+\.mlp\.moe_mlp\.specific_experts\.([^.]+)\..+")}
    indices = {str(i) for i in range(len(tasks))}
    return {
        "depth": len(blocks),
        "qkv_width": qkv_width,
        "ffn_width": ffn_width,
        "qkv_bias": bool(keys.matches(r"blocks\.\d+\.attn\.qkv\.bias")),
        "experts_by_name": bool(ids) and ids <= set(tasks) and not ids <= indices,
    }


def _head_width(state: Mapping[str, np.ndarray], task: str, embed_dim: int) -> int | None:
    """Output width of ``task``'s evaluation head: ``linear``'s, else the 1x1 conv's, else
    ``embed_dim`` for a BatchNorm alone; None without a head."""
    prefix = f"heads.{task}."
    linear, conv = state.get(prefix + "linear.weight"), state.get(prefix + "bottleneck.0.weight")
    if linear is not None and linear.ndim == 2:
        return int(linear.shape[1])
    if conv is not None and conv.ndim == 4:
        return int(conv.shape[0])
    return embed_dim if any(key.startswith(prefix + "bottleneck.") for key in state) else None


def parse_layout(state: Mapping[str, np.ndarray], task_names: Sequence[str] | None, head_dim: int) -> Layout:
    """The :class:`Layout` of a (merged, unwrapped) UFO state dict.

    Raises:
        CheckpointError: Keys or shapes that fit no UFO supernet, naming the first key at fault.
    """
    keys = _Keys(state)
    tasks, patch_tasks = _tasks_of(keys, task_names)
    stem = _stem_layout(keys, tasks, patch_tasks)
    heads = {task: _head_width(state, task, stem["embed_dim"]) for task in tasks} if keys.prefix else {}
    return Layout(
        backbone=keys.prefix,
        tasks=tasks,
        heads={task: heads.get(task) for task in tasks},
        **stem,
        **_block_layout(keys, tasks, head_dim),
    )
