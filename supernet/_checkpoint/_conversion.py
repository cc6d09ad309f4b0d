"""Converting a UFO state dict into :class:`~supernet.UFOSupernet`'s, checking every shape."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._definition import space_from_definition
from .._supernet import UFOSupernet
from .._ufo import UFOSpace
from ._errors import CheckpointError
from ._layout import (
    BLOCK_KEY,
    BN_FIELDS,
    DEFAULT_HEAD_DIM,
    HEAD_KEY,
    HEAD_PART_KEY,
    UFO_BN_EPS,
    Layout,
    parse_layout,
    require_floating,
    shape_of,
    strip_wrapper,
)
from ._merge_ranks import merge_rank_states
from ._pdparams import read_pdparams
from ._report import ExpertGates, ImportReport
from ._space_inference import ufo_definition


@dataclass(frozen=True)
class _Rule:
    targets: tuple[str, ...]
    transform: str  # "copy" or "transpose" (Paddle's Linear.weight is [in, out])

    def apply(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array.T) if self.transform == "transpose" else array

    def ufo_shape(self, gpnas_shape: tuple[int, ...]) -> list[int]:
        return list(reversed(gpnas_shape) if self.transform == "transpose" else gpnas_shape)


def _linear(target: str, what: str) -> _Rule:
    return _Rule((target,), "transpose" if what == "weight" else "copy")


class _Conversion:
    """One conversion of a UFO state onto the supernet of a space (see convert_ufo_state_dict)."""

    def __init__(
        self, state: Mapping[str, np.ndarray], layout: Layout, space: UFOSpace, bn_eps: float
    ) -> None:
        self.state, self.layout, self.space, self.bn_eps = state, layout, space, bn_eps
        self.tasks, self.b = layout.tasks, layout.backbone
        self.expected = {k: tuple(v.shape) for k, v in UFOSupernet(space, device="meta").state_dict().items()}
        self.out: dict[str, np.ndarray] = {}
        self.gates = np.zeros((len(self.tasks), layout.depth, 2))
        self.gated: set[int] = set()  # layers whose gate logits were read
        self.mapping: list[tuple[str, tuple[str, ...], str]] = []
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.head_tasks: list[str] = []

    # -------------------------------------------------------------- UFO key -> gpnas keys
    def _stem(self, part: str, owner: str | None) -> tuple[str, ...]:
        """gpnas keys a stem part (``patch_embed.weight``, ``cls_token`` ...) of ``owner`` fills:
        the shared stem's, or that of ``owner`` (of every task when UFO shares the part)."""
        if not self.space.per_task_stem:
            return (part,)
        return tuple(f"stems.{t}.{part}" for t in ([owner] if owner is not None else self.tasks))

    def _expert_task(self, ident: str) -> str | None:
        if self.layout.experts_by_name:
            return ident if ident in self.tasks else None
        return (
            self.tasks[int(ident)]
            if ident.isdigit() and str(int(ident)) == ident and int(ident) < len(self.tasks)
            else None
        )

    def _stem_rule(self, key: str) -> _Rule | None:
        per_task = self.layout.per_task
        if m := re.fullmatch(r"patch_embeds\.([^.]+)\.proj\.(weight|bias)", key):
            task, what = m.groups()
            own = per_task["patch_embed"]
            if task not in self.tasks or (not own and task != self.tasks[0]):
                return None
            return _Rule(self._stem(f"patch_embed.{what}", task if own else None), "copy")
        if m := re.fullmatch(r"(cls_token|pos_embed)s\.(\d+)", key):
            part, index = m.group(1), int(m.group(2))
            own = per_task[part]
            if index >= len(self.tasks) or (not own and index != 0):
                return None
            return _Rule(self._stem(part, self.tasks[index] if own else None), "copy")
        return None

    def rule(self, key: str) -> _Rule | int | None:
        """The rule of backbone key ``key`` (without its prefix); ``n`` for the gate logits of layer
        ``n``; None for a key that is not UFO's."""
        if key.startswith(("patch_embeds.", "cls_tokens.", "pos_embeds.")):
            return self._stem_rule(key)
        if re.fullmatch(r"norm\.(weight|bias)", key):
            return _Rule((key,), "copy")
        block = BLOCK_KEY.fullmatch(key)
        if block is None:
            return None
        n, rest = block.groups()
        if re.fullmatch(r"norm[12]\.(weight|bias)", rest):
            return _Rule((f"blocks.{n}.{rest}",), "copy")
        if m := re.fullmatch(r"attn\.(qkv|proj)\.(weight|bias)", rest):
            return _linear(f"blocks.{n}.{rest}", m.group(2))
        if m := re.fullmatch(r"mlp\.moe_mlp\.common_expert\.(fc[12])\.(weight|bias)", rest):
            return _linear(f"blocks.{n}.ffn.{m.group(1)}.{m.group(2)}", m.group(2))
        if m := re.fullmatch(r"mlp\.moe_mlp\.specific_experts\.([^.]+)\.(fc[12])\.(weight|bias)", rest):
            task = self._expert_task(m.group(1))
            return (
                None
                if task is None
                else _linear(f"blocks.{n}.experts.{task}.{m.group(2)}.{m.group(3)}", m.group(3))
            )
        return int(n) if rest == "mlp.moe_mlp.expert_weight" else None

    def ufo_key(self, target: str) -> str:
        """The UFO key that fills gpnas key ``target`` (to name one that is missing)."""
        b, lay = self.b, self.layout
        if m := re.fullmatch(
            r"(?:stems\.([^.]+)\.)?(patch_embed|cls_token|pos_embed)(?:\.(weight|bias))?", target
        ):
            task, part, what = m.groups()
            own = task is not None and lay.per_task[part]
            if part == "patch_embed":
                return f"{b}patch_embeds.{task if own else self.tasks[0]}.proj.{what}"
            return f"{b}{part}s.{self.tasks.index(task) if own else 0}"
        if m := re.fullmatch(r"blocks\.(\d+)\.ffn\.(.+)", target):
            return f"{b}blocks.{m.group(1)}.mlp.moe_mlp.common_expert.{m.group(2)}"
        if m := re.fullmatch(r"blocks\.(\d+)\.experts\.([^.]+)\.(.+)", target):
            ident = lay.expert_id(m.group(2))
            return f"{b}blocks.{m.group(1)}.mlp.moe_mlp.specific_experts.{ident}.{m.group(3)}"
        return b + target

    # -------------------------------------------------------------- the passes
    def _head_key(self, key: str, array: np.ndarray) -> None:
        m = HEAD_KEY.fullmatch(key)
        if m is None or m.group(1) not in self.tasks:
            raise CheckpointError(f"unknown key {key}: not the head of a task of {list(self.tasks)}", key)
        task, rest = m.groups()
        if rest == "weight":  # EmbeddingHead's margin classifier [features, classes]: training only
            conv = self.state.get(f"heads.{task}.bottleneck.0.weight")
            features = int(conv.shape[0]) if conv is not None and conv.ndim == 4 else self.layout.embed_dim
            if array.ndim != 2 or array.shape[0] != features:
                raise CheckpointError(
                    f"{key}: shape {shape_of(array)} does not fit task {task}'s head "
                    f"(expected [{features}, classes])",
                    key,
                )
            self.skipped[key] = (
                "the margin classifier of training (EmbeddingHead.weight); evaluation does not use it"
            )
        elif HEAD_PART_KEY.fullmatch(rest):
            if task not in self.head_tasks:
                self.head_tasks.append(task)
        else:
            raise CheckpointError(f"unknown key {key}: not a part of UFO's EmbeddingHead", key)

    def _gate_key(self, key: str, array: np.ndarray, n: int) -> None:
        if n >= self.space.max_depth:
            raise CheckpointError(
                f"unknown key {key}: space {self.space.name!r} has {self.space.max_depth} layers", key
            )
        want = [len(self.tasks), 2]
        if shape_of(array) != want:
            hint = (
                "; one training rank's file holds one task's expert: give one file per task"
                if shape_of(array) == [1, 2]
                else ""
            )
            raise CheckpointError(
                f"{key}: shape {shape_of(array)} does not fit: expected {want} (tasks x 2){hint}", key
            )
        self.gates[:, n] = array
        self.gated.add(n)
        self.mapping.append((key, (), "gate logits (shared, specific): report.gates"))

    def _backbone_key(self, key: str, array: np.ndarray) -> None:
        rule = self.rule(key[len(self.b) :]) if key.startswith(self.b) else None
        if rule is None:
            raise CheckpointError(
                f"unknown key {key}: not a part of UFO's layout of the tasks {list(self.tasks)}", key
            )
        require_floating(key, array)
        if isinstance(rule, int):
            self._gate_key(key, array, rule)
            return
        for target in rule.targets:
            if target not in self.expected:
                raise CheckpointError(
                    f"unknown key {key}: space {self.space.name!r}'s supernet has no {target}", key
                )
            want = rule.ufo_shape(self.expected[target])
            if shape_of(array) != want:
                raise CheckpointError(
                    f"{key}: shape {shape_of(array)} does not fit {target} (expected {want} in UFO's layout)",
                    key,
                )
        converted = rule.apply(array)
        for target in rule.targets:
            self.out[target] = converted
        self.mapping.append((key, rule.targets, rule.transform))

    def _head(self, task: str) -> None:
        used: list[str] = []
        weight, bias = _fold_head(self.state, task, self.layout.embed_dim, self.bn_eps, used)
        prefix = f"heads.{task}."
        leftover = next(
            (k for k in self.state if k.startswith(prefix) and k not in used and k not in self.skipped), None
        )
        if leftover is not None:
            raise CheckpointError(
                f"unknown key {leftover}: not a part of task {task}'s EmbeddingHead", leftover
            )
        target = prefix + "weight"
        if self.expected.get(target) != tuple(weight.shape):
            has = f"width {self.expected[target][0]}" if target in self.expected else "none"
            raise CheckpointError(
                f"{used[0]}: task {task}'s head has width {weight.shape[0]}; space {self.space.name!r} "
                f"gives it {has}",
                used[0],
            )
        self.out[target], self.out[prefix + "bias"] = weight, bias
        self.mapping.append(
            (", ".join(used), (target, prefix + "bias"), "folded: linear(BatchNorm(conv(x)))")
        )

    def _fill_defaults(self) -> None:
        if not self.layout.qkv_bias:  # UFO's ViT-Small has none (qkv_bias=False); zeros compute the same
            for target, shape in self.expected.items():
                if re.fullmatch(r"blocks\.\d+\.attn\.qkv\.bias", target):
                    self.out[target] = np.zeros(shape, np.float32)
            self.notes.append("the checkpoint has no qkv biases (qkv_bias=False): set to zero")
        shared = [part for part, own in self.layout.per_task.items() if not own]
        if self.space.per_task_stem and shared and len(self.tasks) > 1:
            self.notes.append(f"the shared stem part(s) {', '.join(shared)} copied into every task's stem")

    def _check_complete(self) -> None:
        for target, shape in self.expected.items():
            if target in self.out:
                continue
            if target.startswith("heads."):
                task = target.split(".")[1]
                key = f"heads.{task}.linear.weight"
                raise CheckpointError(
                    f"missing key {key}: space {self.space.name!r} gives task {task} a head of width "
                    f"{shape[0]}; the checkpoint has none",
                    key,
                )
            key = self.ufo_key(target)
            raise CheckpointError(f"missing key {key} (for {target})", key)
        for n in range(self.layout.depth):
            if n not in self.gated:
                key = f"{self.b}blocks.{n}.mlp.moe_mlp.expert_weight"
                raise CheckpointError(f"missing key {key} (the gate logits of layer {n})", key)

    def run(self) -> None:
        for key, array in self.state.items():
            if self.b and key.startswith("heads."):
                self._head_key(key, array)
            else:
                self._backbone_key(key, array)
        for task in self.head_tasks:
            self._head(task)
        self._fill_defaults()
        self._check_complete()


def _fold_head(
    state: Mapping[str, np.ndarray], task: str, embed_dim: int, bn_eps: float, used: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(weight [out, E], bias [out])`` (float64) of ``linear(bn(conv(x)))``, what UFO's
    ``EmbeddingHead`` of ``task`` computes at evaluation; each key's shape checked, each key used
    appended to ``used``."""
    prefix = f"heads.{task}."

    def take(key: str, expected: Sequence[int]) -> np.ndarray:
        array = state.get(key)
        if array is None:
            raise CheckpointError(f"missing key {key} (task {task}'s head)", key)
        if shape_of(array) != list(expected):
            raise CheckpointError(
                f"{key}: shape {shape_of(array)} does not fit task {task}'s head (expected {list(expected)})",
                key,
            )
        require_floating(key, array)
        used.append(key)
        return array.astype(np.float64)

    weight, bias, width, bn = np.eye(embed_dim), np.zeros(embed_dim), embed_dim, prefix + "bottleneck.0."
    conv = state.get(prefix + "bottleneck.0.weight")
    if conv is not None and conv.ndim == 4:  # embedding_dim > 0: a bias-free 1x1 conv first
        width = int(conv.shape[0])
        weight, bias = (
            take(prefix + "bottleneck.0.weight", [width, embed_dim, 1, 1])[:, :, 0, 0],
            np.zeros(width),
        )
        bn = prefix + "bottleneck.1."
    if any(k.startswith(bn) for k in state):  # with_bnneck: BatchNorm (evaluation: running statistics)
        gamma, beta, mean, var = (take(bn + name, [width]) for name in BN_FIELDS)
        if np.any(var + bn_eps <= 0):
            raise CheckpointError(f"{bn}_variance: a variance below -eps", bn + "_variance")
        scale = gamma / np.sqrt(var + bn_eps)
        weight, bias = scale[:, None] * weight, scale * (bias - mean) + beta
    if prefix + "linear.weight" in state:  # classification: Linear(features, classes), [in, out]
        linear = state[prefix + "linear.weight"]
        classes = int(linear.shape[-1]) if linear.ndim else 0
        matrix, offset = (
            take(prefix + "linear.weight", [width, classes]),
            take(prefix + "linear.bias", [classes]),
        )
        weight, bias = matrix.T @ weight, matrix.T @ bias + offset
    return weight, bias


def _check_space(space: UFOSpace, layout: Layout) -> None:
    if not any(dim.name == "ffn_path" for dim in space.dimensions):
        raise CheckpointError(f"space {space.name!r} has no ffn_path choice to hold UFO's task experts")
    if set(space.tasks) != set(layout.tasks):
        raise CheckpointError(
            f"space {space.name!r} has the tasks {space.tasks}, the checkpoint {list(layout.tasks)}"
        )
    if layout.per_task_stem and not space.per_task_stem:
        parts = ", ".join(p for p, own in layout.per_task.items() if own)
        raise CheckpointError(
            f"the checkpoint has a stem per task ({parts}); space {space.name!r} shares one "
            "(its definition needs per_task: [ffn, stem])"
        )


def convert_ufo_state_dict(
    state: Mapping[str, np.ndarray],
    space: UFOSpace | None = None,
    *,
    task_names: Sequence[str] | None = None,
    head_dim: int = DEFAULT_HEAD_DIM,
    bn_eps: float = UFO_BN_EPS,
    name: str = "ufo-import",
    depths: Sequence[int] | None = None,
    num_heads: Sequence[int] | None = None,
    mlp_ratios: Sequence[float] | None = None,
    metrics: Mapping[str, str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[dict[str, Tensor], ImportReport]:
    """Map a UFO task-MoE supernet checkpoint onto gpnas' :class:`~supernet.UFOSupernet`.

    Every key of ``state`` is mapped (see the module docstring), skipped with a reason (the
    training-only margin classifiers ``heads.<task>.weight``) or refused; every shape is checked
    against the supernet of ``space``, all of whose parameters must be filled.

    Args:
        state: The checkpoint, merged (:func:`read_pdparams`, :func:`merge_rank_states`).
        space: The UFO space to fill; default ``space_from_definition(ufo_space_of(...))`` with
            ``task_names``, ``head_dim``, ``name``, ``depths``, ``num_heads``, ``mlp_ratios`` and
            ``metrics``. It needs an ``ffn_path`` choice, the checkpoint's tasks, and a stem per task
            if the checkpoint has one.
        task_names: The tasks in UFO's order (default: ``space``'s, else the checkpoint's
            ``patch_embeds`` order).
        head_dim: UFO's ``predefined_head_dim`` (``space``'s when given).
        bn_eps: Epsilon of the heads' BatchNorms.
        dtype: Floating type of the returned tensors.

    Returns:
        ``(state_dict, report)``: ``build_supernet(space).load_state_dict(state_dict)`` accepts the
        state dict (strictly); ``report.gates`` holds the gates (``tasks x layers x 2``). Tensors
        taken as they are (float32, C-contiguous) share memory with ``state``'s arrays.

    Raises:
        CheckpointError: Naming the first key that does not fit: in the checkpoint's order a key
            that is not UFO's layout, or whose shape is not what the space's supernet needs (both
            shapes given, in UFO's layout); then, in the supernet's order, the UFO key that would
            fill a parameter left empty.
        ValueError: The choices do not fit the checkpoint (when the space is built here).
    """
    state = strip_wrapper(state)
    if space is not None:
        if not isinstance(space, UFOSpace):
            raise ValueError(f"space {getattr(space, 'name', space)!r} is not a UFO space")
        head_dim = space.geometry.head_dim
        task_names = list(space.tasks) if task_names is None else task_names
    layout = parse_layout(state, task_names, head_dim)
    if space is None:
        definition = ufo_definition(
            layout,
            head_dim=head_dim,
            name=name,
            depths=depths,
            num_heads=num_heads,
            mlp_ratios=mlp_ratios,
            metrics=metrics,
        )
        built = space_from_definition(definition)
        assert isinstance(built, UFOSpace)  # a ufo definition builds a UFO space
        space = built
    else:
        _check_space(space, layout)
        definition = space.to_definition()
    conversion = _Conversion(state, layout, space, bn_eps)
    conversion.run()
    tensors = {
        key: torch.from_numpy(np.require(conversion.out[key], requirements=["C", "W"])).to(dtype)
        for key in conversion.expected
    }
    report = ImportReport(
        definition=definition,
        gates=ExpertGates(layout.tasks, torch.from_numpy(conversion.gates).float()),
        mapping=conversion.mapping,
        skipped=conversion.skipped,
        notes=conversion.notes,
    )
    return tensors, report


def import_ufo_checkpoint(
    paths: Sequence[str | Path], task_names: Sequence[str] | None = None, **kwargs: Any
) -> tuple[dict[str, Tensor], ImportReport]:
    """:func:`convert_ufo_state_dict` of checkpoint files: one merged file, or one file per task as
    UFO's training ranks save them (merged by :func:`merge_rank_states`, in task order)."""
    states = [read_pdparams(p) for p in paths]
    if not states:
        raise CheckpointError("no checkpoint file given")
    if len(states) > 1:
        if task_names is None:
            raise CheckpointError("several files (one per training rank) need the task names, in file order")
        return convert_ufo_state_dict(merge_rank_states(states, task_names), task_names=task_names, **kwargs)
    return convert_ufo_state_dict(states[0], task_names=task_names, **kwargs)
