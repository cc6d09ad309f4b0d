"""Import the supernet UFO released (PaddlePaddle/VIMER ``UFO/OneForAll``) into gpnas.

UFO trains its multi-task supernet in PaddlePaddle; a checkpoint is a pickle (``paddle.save``) of
numpy arrays. :func:`read_pdparams` reads one without Paddle, and without running anything the
file could ask the unpickler to run; :func:`convert_ufo_state_dict` maps its keys onto
:class:`~supernet.UFOSupernet`'s, checking every shape, and :func:`ufo_space_of` writes the space
definition the converted weights fit (``gpnas import-checkpoint`` does all three).

The released layout (``modeling/backbones/vision_transformer_super_hardpolicy_moe.py``, the
``MultiTaskBatchFuse`` meta-architecture of ``modeling/meta_arch/multitask_super_hardpolicy_moe.py``
that prefixes ``backbone.`` and ``heads.<task>.``) and where each part goes:

==================================================  ====================================  =========
UFO key (``N``: block, ``i``: task index)           gpnas key                             transform
==================================================  ====================================  =========
``backbone.patch_embeds.<task>.proj.*``            ``stems.<task>.patch_embed.*``        copy
``backbone.cls_tokens.<i>``                         ``stems.<tasks[i]>.cls_token``        copy
``backbone.pos_embeds.<i>``                         ``stems.<tasks[i]>.pos_embed``        copy
``backbone.blocks.N.norm{1,2}.*``                   ``blocks.N.norm{1,2}.*``              copy
``backbone.blocks.N.attn.qkv.weight`` ``[E, 3A]``   ``blocks.N.attn.qkv.weight``          transpose
``backbone.blocks.N.attn.qkv.bias``                 ``blocks.N.attn.qkv.bias``            copy
``backbone.blocks.N.attn.proj.weight`` ``[A, E]``   ``blocks.N.attn.proj.weight``         transpose
``...N.mlp.moe_mlp.common_expert.fc{1,2}.weight``   ``blocks.N.ffn.fc{1,2}.weight``       transpose
``...N.mlp.moe_mlp.specific_experts.<i>.fc*.*``     ``blocks.N.experts.<tasks[i]>.fc*``   transpose
``backbone.blocks.N.mlp.moe_mlp.expert_weight``     :attr:`ImportReport.gates`            row i: task i
``backbone.norm.{weight,bias}``                     ``norm.{weight,bias}``                copy
``heads.<task>.{bottleneck.*, linear.*}``           ``heads.<task>.{weight,bias}``        folded
``heads.<task>.weight`` (margin classifier)         (skipped: training only)
==================================================  ====================================  =========

The linears' biases are copied; a checkpoint without qkv biases (``qkv_bias=False``) gets zeros.
Paddle's ``Linear.weight`` is ``[in, out]``, torch's ``[out, in]``; the qkv output channels are
``[q | k | v]``, each head-major, in both (``QkvSuper.sample_weight`` cuts each third to its first
channels, as gpnas slices heads), so the transpose is the only reordering. When a stem part is
shared (UFO's ``sep_list`` without it: only ``patch_embeds.<tasks[0]>`` / ``cls_tokens.0`` /
``pos_embeds.0``) but another is per task, the shared part is copied into every task's stem.
A head (``EmbeddingHead`` at evaluation: ``bottleneck`` = an optional bias-free 1x1 conv and an
optional BatchNorm, then ``linear`` for classification tasks) is affine, so it is folded into one
``Linear``; a head-less task outputs the embedding.

Experts of several tasks. In training each rank holds one task's expert as
``specific_experts.0`` and the gate logits ``expert_weight`` ``[1, 2]`` (``MoeLayer``), and saves
its own file (``tools/ufo_trainsuper_moe.py``: ``<output_dir>/task<id>/``). A merged checkpoint, the
form :func:`merge_rank_states` builds from one such file per task, is the ``MoeLayer`` holding every
task's expert: ``specific_experts.<i>`` in task order and ``expert_weight`` ``[tasks, 2]``, one row
of (shared, specific) logits per task. Experts named by task (``specific_experts.<task>``, as the
UFO 2.0 17B release names them in ``tools/extract_task_specific_model.py``) are accepted too.

Geometry: UFO's LayerNorms have epsilon ``1e-6`` (the space's ``geometry.norm_eps``), attention
scales by ``head_dim ** -0.5`` (``change_qkv``), GELU is exact. The patch stride is assumed equal to
the patch size (``stride_size`` of the released configs); the image side is the token grid times
the patch size (a ``256`` input with 14-pixel patches is its top-left ``252`` crop to the conv).
"""

from __future__ import annotations

import codecs
import importlib
import math
import pickle
import re
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._definition import NAME_PATTERN, SpaceDefinition, space_from_definition
from ._space import Subnet
from ._supernet import UFOSupernet
from ._ufo import MultipathSpace, UFOSpace

#: Epsilon of UFO's LayerNorms (``partial(nn.LayerNorm, epsilon=1e-6)``).
UFO_NORM_EPS = 1e-6
#: Epsilon of the BatchNorm of UFO's embedding heads (``EmbeddingHead``'s ``BatchNorm``).
UFO_BN_EPS = 1e-5
#: UFO's ``predefined_head_dim`` default (the released ViT-Huge uses 80).
DEFAULT_HEAD_DIM = 64


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the first key at fault.

    Attributes:
        key: That key (in UFO's layout), or ``None`` when the fault is not one key's.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------- reading without Paddle
def _numpy_attr(name: str, *modules: str) -> Any:
    """``name`` of the first of ``modules`` that has it (numpy 2 renamed ``numpy.core``)."""
    for module in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {name} in {modules}")


def _encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(text, "latin1"); nothing else is needed.
    if encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode(..., {encoding!r})")
    return codecs.encode(text, encoding)


def _empty_bytes(*args: Any) -> bytes:
    # Protocol-2 pickles spell b"" as bytes(); a size argument could only allocate.
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    core = ("numpy._core.multiarray", "numpy.core.multiarray")
    numeric = ("numpy._core.numeric", "numpy.core.numeric")
    reconstruct = _numpy_attr("_reconstruct", *core)
    scalar = _numpy_attr("scalar", *core)
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "tuple"): tuple,
        ("builtins", "list"): list,
        ("builtins", "dict"): dict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytes"): _empty_bytes,
        ("_codecs", "encode"): _encode,
    }
    for module in core:
        allowed[module, "_reconstruct"] = reconstruct
        allowed[module, "scalar"] = scalar
    try:
        frombuffer = _numpy_attr("_frombuffer", *numeric)
    except ImportError:  # numpy < 1.17 pickles no _frombuffer
        pass
    else:
        for module in numeric:
            allowed[module, "_frombuffer"] = frombuffer
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dtypes and plain containers, and nothing else.

    Every global a pickle names goes through :meth:`find_class`; those outside a fixed list
    (numpy's array and dtype reconstruction, ``OrderedDict``, the builtin containers) are refused
    before anything is called, so a crafted file cannot run code (``os.system`` via
    ``__reduce__``, ``eval`` ...).
    """

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol 2: Python 2 spelling of builtins
            module = "builtins"
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        found = _RestrictedUnpickler._allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a checkpoint may hold only numpy arrays, "
                "numbers, strings and containers of them"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id: not a plain pickle of numpy arrays")


_NAME_TABLE = "StructuredToParameterName@@"  # paddle.save: key -> parameter name
_UNPACK_INFO = "UnpackBigParamInfor@@"  # paddle.save, protocol 2/3: arrays > 4 GB in slices


def _pack_big_arrays(state: dict[str, Any], where: str) -> None:
    """Reassemble the arrays ``paddle.save`` split into ``key@@.i`` slices (protocol 2 and 3)."""
    info = state.pop(_UNPACK_INFO, None)
    if info is None:
        return
    if not isinstance(info, Mapping):
        raise CheckpointError(f"{where}: {_UNPACK_INFO} is not a mapping", _UNPACK_INFO)
    for key, entry in info.items():
        try:
            parts = [state.pop(part) for part in entry["slices"]]
            shape = tuple(int(n) for n in entry["OriginShape"])
            state[key] = np.concatenate([np.ravel(p) for p in parts]).reshape(shape)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{where}: cannot reassemble the sliced array {key!r}: {error}", key
            ) from None


def _as_state(obj: Any, where: str) -> dict[str, np.ndarray]:
    """The ``{key: array}`` model state in a loaded checkpoint object.

    Accepts a state dict as ``paddle.save(model.state_dict())`` writes it, and a training
    checkpoint (``{"model": state, "optimizer": ..., ...}``, UFO's ``Checkpointer.save``), whose
    tensors ``paddle.save`` writes as ``(name, array)`` pairs.
    """
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a state dict")
    state: dict[str, Any] = dict(obj)
    state.pop(_NAME_TABLE, None)
    _pack_big_arrays(state, where)
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{where}: key {key!r} is not a string")
        if (
            isinstance(value, tuple)
            and len(value) == 2
            and isinstance(value[0], str)
            and isinstance(value[1], np.ndarray)
        ):
            value = value[1]  # a paddle Tensor pickled as (name, numpy array)
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, not an array", key)
        if value.dtype.kind not in "biuf":
            raise CheckpointError(f"{where}: {key} has dtype {value.dtype}, not a numeric array", key)
        out[key] = value
    return out


def read_pdparams(path: str | Path) -> dict[str, np.ndarray]:
    """The model state in a PaddlePaddle checkpoint, read without Paddle.

    ``.pdparams`` / ``.pdmodel`` / ``.pkl`` files are pickles (``paddle.save``; protocols 2 to 5)
    of a state dict or of a training checkpoint holding one under ``"model"``; ``.npz`` files
    (``numpy.savez``) are read too. The unpickler builds numpy arrays and plain containers only.

    Returns:
        Key -> array, in the file's order.

    Raises:
        CheckpointError: The file cannot be read, is not such a pickle, names anything but numpy's
            array reconstruction (refused unrun), or holds a value that is not a numeric array.
    """
    path = Path(path)
    where = str(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return _as_state({key: archive[key] for key in archive.files}, where)
        with open(path, "rb") as handle:
            obj = _RestrictedUnpickler(handle).load()
    except OSError as error:
        raise CheckpointError(f"cannot read {where}: {error.strerror or error}") from None
    except CheckpointError:
        raise
    except Exception as error:  # malformed pickles raise many types (UnpicklingError, EOFError ...)
        raise CheckpointError(
            f"{where} is not a Paddle checkpoint (a pickle of numpy arrays): {error}"
        ) from None
    return _as_state(obj, where)


# ---------------------------------------------------------------------- the layout of a checkpoint
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_HEAD = re.compile(r"heads\.([^.]+)\.(.+)")
_HEAD_PART = re.compile(r"bottleneck\.[01]\.(weight|bias|_mean|_variance)|linear\.(weight|bias)")
_BN_FIELDS = ("weight", "bias", "_mean", "_variance")


def _mode(values: Iterable[Any]) -> Any:
    """The most common value (the first seen among equally common ones), or None.

    Geometry is read as the most common shape, so that one wrong array is the one reported.
    """
    counts = Counter(values)
    return max(counts, key=lambda v: counts[v]) if counts else None


def _strip_wrapper(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # A state saved from paddle.DataParallel prefixes every key with "_layers.".
    if state and all(key.startswith("_layers.") for key in state):
        return {key[len("_layers.") :]: value for key, value in state.items()}
    return dict(state)


def _shape(array: np.ndarray) -> list[int]:
    return [int(n) for n in array.shape]


def _floating(key: str, array: np.ndarray) -> None:
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
class _Layout:
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


def _parse_layout(
    state: Mapping[str, np.ndarray], task_names: Sequence[str] | None, head_dim: int
) -> _Layout:
    keys = _Keys(state)
    tasks, patch_tasks = _tasks_of(keys, task_names)
    stem = _stem_layout(keys, tasks, patch_tasks)
    heads = {task: _head_width(state, task, stem["embed_dim"]) for task in tasks} if keys.prefix else {}
    return _Layout(
        backbone=keys.prefix,
        tasks=tasks,
        heads={task: heads.get(task) for task in tasks},
        **stem,
        **_block_layout(keys, tasks, head_dim),
    )


# ---------------------------------------------------------------------- the space of a checkpoint
def _below(largest: float, step: float) -> list[float]:
    """UFO's released search choices: the largest and two steps below it (``num_heads``
    12/11/10, ``mlp_ratio`` 4.0/3.5/3.0, depth 12/11/10), those above 0."""
    return [v for v in (largest, largest - step, largest - 2 * step) if v > 0]


def _choices(
    layout: _Layout,
    head_dim: int,
    depths: Sequence[int] | None,
    num_heads: Sequence[int] | None,
    mlp_ratios: Sequence[float] | None,
) -> tuple[list[int], list[int], list[float]]:
    e = layout.embed_dim
    max_heads, max_ratio = layout.qkv_width // (3 * head_dim), layout.ffn_width / e
    depth_choices = [int(d) for d in (depths if depths is not None else _below(layout.depth, 1))]
    head_choices = [int(h) for h in (num_heads if num_heads is not None else _below(max_heads, 1))]
    if mlp_ratios is not None:
        ratios = [float(r) for r in mlp_ratios]
    else:  # below the largest, those of whole widths (where UFO's int() and gpnas' round() agree)
        ratios = [max_ratio] + [r for r in _below(max_ratio, 0.5)[1:] if (r * e).is_integer()]
    for what, given, largest in (
        ("depths", depth_choices, layout.depth),
        ("num_heads", head_choices, max_heads),
    ):
        if not given or max(given) != largest:
            raise ValueError(f"{what} {given}: the largest must be the checkpoint's {largest}")
    if not ratios or round(max(ratios) * e) != layout.ffn_width:
        raise ValueError(
            f"mlp_ratios {ratios}: the largest must give the checkpoint's FFN width {layout.ffn_width} "
            f"(ratio {max_ratio:g} of embed_dim {e})"
        )
    uneven = [r for r in ratios if r != max(ratios) and int(r * e) != round(r * e)]
    if uneven:
        raise ValueError(
            f"mlp_ratio {uneven[0]:g}: UFO's FFN width int({uneven[0]:g} x {e}) is not gpnas' round(); "
            "choose ratios of whole widths"
        )
    return depth_choices, head_choices, ratios


def _ufo_definition(
    layout: _Layout,
    *,
    head_dim: int,
    name: str,
    depths: Sequence[int] | None,
    num_heads: Sequence[int] | None,
    mlp_ratios: Sequence[float] | None,
    metrics: Mapping[str, str] | None,
) -> SpaceDefinition:
    depth_choices, head_choices, ratios = _choices(layout, head_dim, depths, num_heads, mlp_ratios)
    metrics = dict(metrics or {})
    unknown = sorted(set(metrics) - set(layout.tasks))
    if unknown:
        raise ValueError(f"metrics of unknown task(s) {unknown}; the tasks: {list(layout.tasks)}")
    named = MultipathSpace.evaluation_metrics
    data: dict[str, Any] = {
        "name": name,
        "family": "ufo",
        "arch_format": "multipath" if len(ratios) <= 9 and len(head_choices) <= 9 else "indices",
        "tasks": [
            {"name": t, "head": layout.heads[t], "metric": metrics.get(t, named.get(t, "top1"))}
            for t in layout.tasks
        ],
        "depths": depth_choices,
        "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": ratios, "num_heads": head_choices},
        "geometry": {
            "embed_dim": layout.embed_dim,
            "patch_size": layout.patch_size,
            "image_size": layout.grid * layout.patch_size,
            "head_dim": head_dim,
            "in_chans": layout.in_chans,
            "norm_eps": UFO_NORM_EPS,
        },
        "per_task": ["ffn"] + (["stem"] if layout.per_task_stem else []),
    }
    return SpaceDefinition.load(data)


def ufo_space_of(
    state: Mapping[str, np.ndarray],
    task_names: Sequence[str] | None = None,
    *,
    head_dim: int = DEFAULT_HEAD_DIM,
    name: str = "ufo-import",
    depths: Sequence[int] | None = None,
    num_heads: Sequence[int] | None = None,
    mlp_ratios: Sequence[float] | None = None,
    metrics: Mapping[str, str] | None = None,
) -> SpaceDefinition:
    """The multipath space definition whose supernet a UFO checkpoint fills.

    The geometry comes from the shapes: ``embed_dim`` from the norms, the patch size and channels
    from the patch embedding, the image side from the position embedding's length (token grid x
    patch), the most heads from the qkv width over ``head_dim``, the widest FFN from ``fc1``, the
    depth from the block count; ``norm_eps`` is UFO's ``1e-6``. ``per_task`` is ``[ffn, stem]``
    when any stem part is per task. A task's head width is its folded head's (None without one).

    Args:
        state: The checkpoint (:func:`read_pdparams`; merged, see :func:`merge_rank_states`).
        task_names: The tasks in UFO's order (its config's ``task_names``, the order numbering
            ``cls_tokens.<i>``); default: the names of the checkpoint's ``patch_embeds``.
        head_dim: UFO's ``predefined_head_dim``.
        name: The space's name.
        depths, num_heads, mlp_ratios: The search choices, whose largest must be the checkpoint's;
            default UFO's pattern: the largest and two steps below it (of 1, 1 and 0.5).
        metrics: Task -> metric plug-in; default that of :class:`~supernet.MultipathSpace`'s tasks
            of the same name (``face``: verification ...), else ``top1``.

    Raises:
        CheckpointError: The checkpoint is not UFO's layout (naming a key).
        ValueError: The choices do not fit the checkpoint.
    """
    layout = _parse_layout(_strip_wrapper(state), task_names, head_dim)
    return _ufo_definition(
        layout,
        head_dim=head_dim,
        name=name,
        depths=depths,
        num_heads=num_heads,
        mlp_ratios=mlp_ratios,
        metrics=metrics,
    )


# ---------------------------------------------------------------------- merging the ranks' files
_RANK_EXPERT = re.compile(r"(.*\.mlp\.moe_mlp\.)specific_experts\.([^.]+)\.(.+)")


def _same_everywhere(
    key: str, value: np.ndarray, states: Sequence[Mapping[str, np.ndarray]], atol: float
) -> None:
    for i, state in enumerate(states[1:], start=2):
        other = state.get(key)
        if other is None:
            raise CheckpointError(f"file {i}: missing key {key}", key)
        if other.shape != value.shape:
            raise CheckpointError(f"{key}: shape {_shape(other)} in file {i}, {_shape(value)} in file 1", key)
        if not np.allclose(other, value, rtol=0, atol=atol):
            diff = float(np.abs(other.astype(np.float64) - value).max())
            raise CheckpointError(
                f"{key}: file {i} differs from file 1 (max |difference| {diff:.3g}); the ranks' shared "
                "weights are equal in files of one training step",
                key,
            )


def _each_rank(
    key: str, states: Sequence[Mapping[str, np.ndarray]], task_names: Sequence[str]
) -> list[np.ndarray]:
    """``key``'s array in every rank's file."""
    arrays = []
    for i, state in enumerate(states):
        array = state.get(key)
        if array is None:
            raise CheckpointError(f"file {i + 1} ({task_names[i]}): missing key {key}", key)
        arrays.append(array)
    return arrays


def _expert_tails(state: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """MoeLayer prefix (``...mlp.moe_mlp.``) -> the keys of its one expert, in the file's order."""
    tails: dict[str, list[str]] = {}
    for key in state:
        if expert := _RANK_EXPERT.fullmatch(key):
            if expert.group(2) != "0":
                raise CheckpointError(f"{key}: a rank's file holds its one expert as specific_experts.0", key)
            tails.setdefault(expert.group(1), []).append(expert.group(3))
    return tails


def merge_rank_states(
    states: Sequence[Mapping[str, np.ndarray]], task_names: Sequence[str], *, atol: float = 1e-6
) -> dict[str, np.ndarray]:
    """One merged state from the files UFO's training ranks save, one file per task.

    Each rank's file holds the whole model with its own task's expert as ``specific_experts.0``
    and its gate logits ``expert_weight`` ``[1, 2]``; the rest is synchronised across the ranks
    (all-reduced). The merged state has ``specific_experts.<i>`` (task ``i``'s, from file ``i``)
    and ``expert_weight`` ``[tasks, 2]``; the other arrays are the first file's, once checked
    equal (to ``atol``) in every file.

    Raises:
        CheckpointError: Not one file per task; the files do not hold the same keys; a shared array
            differs between them; a file holds another expert than ``specific_experts.0``.
    """
    if len(states) != len(task_names):
        raise CheckpointError(
            f"{len(states)} files for {len(task_names)} tasks: give one file per task, in order"
        )
    stripped = [_strip_wrapper(s) for s in states]
    first = stripped[0]
    tails = _expert_tails(first)
    merged: dict[str, np.ndarray] = {}
    for key, value in first.items():
        expert = _RANK_EXPERT.fullmatch(key)
        if expert is not None:
            layer = expert.group(1)
            if expert.group(3) == tails[layer][0]:  # the layer's experts, task after task, at its first key
                arrays = {
                    tail: _each_rank(f"{layer}specific_experts.0.{tail}", stripped, task_names)
                    for tail in tails[layer]
                }
                for i in range(len(stripped)):
                    merged.update(
                        {f"{layer}specific_experts.{i}.{tail}": arrays[tail][i] for tail in tails[layer]}
                    )
        elif key.endswith(".mlp.moe_mlp.expert_weight"):
            rows = _each_rank(key, stripped, task_names)
            wrong = next((i for i, row in enumerate(rows) if row.shape != (1, 2)), None)
            if wrong is not None:
                raise CheckpointError(f"file {wrong + 1} ({task_names[wrong]}): {key} is not [1, 2]", key)
            merged[key] = np.concatenate(rows)
        else:
            _same_everywhere(key, value, stripped, atol)
            merged[key] = value
    for i, state in enumerate(stripped[1:], start=2):
        extra = next((k for k in state if k not in first), None)
        if extra is not None:
            raise CheckpointError(f"file {i} ({task_names[i - 1]}): key {extra} is not in file 1", extra)
    return merged


# ---------------------------------------------------------------------- gates and report
@dataclass(frozen=True)
class ExpertGates:
    """UFO's gate, per task and layer, between the shared FFN and the task's own expert.

    Attributes:
        tasks: Task names: the order of the first axis.
        logits: ``tasks x layers x 2`` logits (``expert_weight``: shared, specific).
    """

    tasks: tuple[str, ...]
    logits: Tensor

    def p_specific(self) -> Tensor:
        """``tasks x layers``: the probability that training's hard Gumbel gate picks the task's
        expert, ``softmax(logits)[..., 1]`` (whatever the temperature ``tau``)."""
        return torch.softmax(self.logits.double(), dim=-1)[..., 1].float()

    def paths(self) -> dict[str, list[str]]:
        """Task -> per layer ``"shared"`` or ``"task"``: the FFN UFO's evaluation forward runs,
        that of the larger logit (a tie: the task's, as ``argsort`` and UFO's extraction tool
        break it)."""
        specific = (self.logits[..., 1] >= self.logits[..., 0]).tolist()
        return {
            t: ["task" if s else "shared" for s in row] for t, row in zip(self.tasks, specific, strict=True)
        }


@dataclass
class ImportReport:
    """What :func:`convert_ufo_state_dict` did.

    Attributes:
        definition: The space definition the converted state fits.
        gates: The gate logits of the checkpoint (gpnas' supernet has no gate parameters).
        mapping: ``(UFO key(s), gpnas keys, transform)`` per use of the checkpoint's keys.
        skipped: UFO key -> why it was left out (training-only parameters).
        notes: Other things the conversion did (zero qkv biases, a shared stem part copied ...).
    """

    definition: SpaceDefinition
    gates: ExpertGates
    mapping: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def eval_arch(self, space: UFOSpace, task: str) -> str:
        """Arch string (in ``space``) of the path UFO's evaluation forward runs for ``task``:
        every layer with the most heads and the widest FFN, the FFN its gate picks."""
        layers = []
        for path in self.gates.paths()[task]:
            choice = []
            for dim in space.dimensions:
                values = list(dim.values)
                choice.append(values.index(path) if dim.name == "ffn_path" else values.index(max(values)))
            layers.append(tuple(choice))
        return space.format(Subnet(space.name, len(layers), tuple(layers)))


# ---------------------------------------------------------------------- conversion
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
        self, state: Mapping[str, np.ndarray], layout: _Layout, space: UFOSpace, bn_eps: float
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
        block = _BLOCK.fullmatch(key)
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
        m = _HEAD.fullmatch(key)
        if m is None or m.group(1) not in self.tasks:
            raise CheckpointError(f"unknown key {key}: not the head of a task of {list(self.tasks)}", key)
        task, rest = m.groups()
        if rest == "weight":  # EmbeddingHead's margin classifier [features, classes]: training only
            conv = self.state.get(f"heads.{task}.bottleneck.0.weight")
            features = int(conv.shape[0]) if conv is not None and conv.ndim == 4 else self.layout.embed_dim
            if array.ndim != 2 or array.shape[0] != features:
                raise CheckpointError(
                    f"{key}: shape {_shape(array)} does not fit task {task}'s head "
                    f"(expected [{features}, classes])",
                    key,
                )
            self.skipped[key] = (
                "the margin classifier of training (EmbeddingHead.weight); evaluation does not use it"
            )
        elif _HEAD_PART.fullmatch(rest):
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
        if _shape(array) != want:
            hint = (
                "; one training rank's file holds one task's expert: give one file per task"
                if _shape(array) == [1, 2]
                else ""
            )
            raise CheckpointError(
                f"{key}: shape {_shape(array)} does not fit: expected {want} (tasks x 2){hint}", key
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
        _floating(key, array)
        if isinstance(rule, int):
            self._gate_key(key, array, rule)
            return
        for target in rule.targets:
            if target not in self.expected:
                raise CheckpointError(
                    f"unknown key {key}: space {self.space.name!r}'s supernet has no {target}", key
                )
            want = rule.ufo_shape(self.expected[target])
            if _shape(array) != want:
                raise CheckpointError(
                    f"{key}: shape {_shape(array)} does not fit {target} (expected {want} in UFO's layout)",
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
        if _shape(array) != list(expected):
            raise CheckpointError(
                f"{key}: shape {_shape(array)} does not fit task {task}'s head (expected {list(expected)})",
                key,
            )
        _floating(key, array)
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
        gamma, beta, mean, var = (take(bn + name, [width]) for name in _BN_FIELDS)
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


def _check_space(space: UFOSpace, layout: _Layout) -> None:
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
    state = _strip_wrapper(state)
    if space is not None:
        if not isinstance(space, UFOSpace):
            raise ValueError(f"space {getattr(space, 'name', space)!r} is not a UFO space")
        head_dim = space.geometry.head_dim
        task_names = list(space.tasks) if task_names is None else task_names
    layout = _parse_layout(state, task_names, head_dim)
    if space is None:
        definition = _ufo_definition(
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


__all__ = [
    "DEFAULT_HEAD_DIM",
    "UFO_BN_EPS",
    "UFO_NORM_EPS",
    "CheckpointError",
    "ExpertGates",
    "ImportReport",
    "convert_ufo_state_dict",
    "import_ufo_checkpoint",
    "merge_rank_states",
    "read_pdparams",
    "ufo_space_of",
]
