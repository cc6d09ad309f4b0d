"""The space definition that a UFO checkpoint's weights fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._definition import SpaceDefinition
from .._ufo import MultipathSpace
from ._layout import DEFAULT_HEAD_DIM, UFO_NORM_EPS, Layout, parse_layout, strip_wrapper


def _below(largest: float, step: float) -> list[float]:
    """UFO's released search choices: the largest and two steps below it (``num_heads``
    12/11/10, ``mlp_ratio`` 4.0/3.5/3.0, depth 12/11/10), those above 0."""
    return [v for v in (largest, largest - step, largest - 2 * step) if v > 0]


def _choices(
    layout: Layout,
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


def ufo_definition(
    layout: Layout,
    *,
    head_dim: int,
    name: str,
    depths: Sequence[int] | None,
    num_heads: Sequence[int] | None,
    mlp_ratios: Sequence[float] | None,
    metrics: Mapping[str, str] | None,
) -> SpaceDefinition:
    """The space definition of a checkpoint's :class:`Layout`; the arguments as :func:`ufo_space_of`'s.

    Raises:
        ValueError: Metrics of tasks the checkpoint does not have, or choices that do not end at its
            shapes.
    """
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
    layout = parse_layout(strip_wrapper(state), task_names, head_dim)
    return ufo_definition(
        layout,
        head_dim=head_dim,
        name=name,
        depths=depths,
        num_heads=num_heads,
        mlp_ratios=mlp_ratios,
        metrics=metrics,
    )
