"""Training paths through the supernet and the gated forward that runs them.

A :class:`TrainPath` is what one sandwich-rule forward runs: a depth and per active layer the heads,
the width of the shared FFN, the width of the task's expert and which FFN the layer uses (the
shared one, the task's, or ``gate``: both, mixed by the task's straight-through gate). Spaces with
an ``ffn_path`` choice train gated (UFO 2.0's ``set_sample_config`` samples the common and the
specific expert's widths separately); spaces without one (track-2 style) and a chip stage run one
FFN per layer, exactly the forward of ``UFOSupernet(x, sub, task)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from torch import Tensor

from .._space import Subnet
from .._supernet import UFOSupernet, _embed, _SuperBlock, resolve_path
from .._ufo import UFOSpace

FfnChoice = Literal["shared", "task", "gate"]
_FFN_CHOICES = ("shared", "task", "gate")


@dataclass(frozen=True)
class TrainPath:
    """One path of a training step; the tuples have one entry per active layer.

    Attributes:
        num_heads: Attention heads per layer.
        shared_hidden: Hidden width of the shared FFN per layer.
        expert_hidden: Hidden width of the task's expert per layer (used by ``task`` and ``gate``).
        ffn: ``shared``, ``task`` or ``gate`` per layer.
    """

    num_heads: tuple[int, ...]
    shared_hidden: tuple[int, ...]
    expert_hidden: tuple[int, ...]
    ffn: tuple[FfnChoice, ...]

    def __post_init__(self) -> None:
        n = len(self.num_heads)
        if n == 0 or not len(self.shared_hidden) == len(self.expert_hidden) == len(self.ffn) == n:
            raise ValueError("a training path needs one heads, width and FFN choice per active layer")
        if any(choice not in _FFN_CHOICES for choice in self.ffn):
            raise ValueError(f"FFN choices must be among {_FFN_CHOICES}, got {self.ffn}")

    @property
    def depth(self) -> int:
        return len(self.num_heads)

    @property
    def gated(self) -> bool:
        return "gate" in self.ffn

    @classmethod
    def of_subnet(cls, space: UFOSpace, sub: Subnet | str, task: str | None = None) -> TrainPath:
        """The path of a subnet of ``space`` (one FFN per layer, as the subnet chose)."""
        _, specs = resolve_path(space, sub, task)
        return cls(
            tuple(s.num_heads for s in specs),
            tuple(s.ffn_hidden for s in specs),
            tuple(s.ffn_hidden for s in specs),
            tuple(cast(FfnChoice, s.ffn_path) for s in specs),
        )


def _values(space: UFOSpace, name: str) -> tuple[float | int, ...]:
    for dim in space.dimensions:
        if dim.name == name:
            return tuple(dim.values)
    raise ValueError(f"space {space.name!r} has no {name!r} choice")


class PathSampler:
    """Largest, smallest and uniformly random :class:`TrainPath` objects of a UFO space.

    Args:
        space: The space.
        gated: Train gated (every layer ``gate``, shared and expert widths drawn separately); the
            space must have an ``ffn_path`` choice.
        ffn_paths: Without ``gated``: the FFN of each of the ``max_depth`` layers (``shared`` or
            ``task``; a chip stage fixes them to the gates' argmax). Default: all ``shared``.
    """

    def __init__(
        self, space: UFOSpace, *, gated: bool = False, ffn_paths: Sequence[str] | None = None
    ) -> None:
        self.space = space
        has_paths = any(d.name == "ffn_path" for d in space.dimensions)
        if gated and not has_paths:
            raise ValueError(f"space {space.name!r} has no ffn_path choice, so it trains without gates")
        if ffn_paths is not None:
            if gated:
                raise ValueError("a gated path takes no fixed ffn_paths")
            if len(ffn_paths) != space.max_depth or any(p not in ("shared", "task") for p in ffn_paths):
                raise ValueError(
                    f"ffn_paths must be {space.max_depth} of 'shared'/'task', got {list(ffn_paths)}"
                )
            if "task" in ffn_paths and not has_paths:
                raise ValueError(f"space {space.name!r} has no task experts (no ffn_path choice)")
        self.gated = gated
        fixed = list(ffn_paths) if ffn_paths is not None else ["shared"] * space.max_depth
        self.ffn: list[FfnChoice] = ["gate"] * space.max_depth if gated else cast(list[FfnChoice], fixed)
        g = space.geometry
        self.depths = tuple(space.depths)
        self.heads = tuple(sorted(int(h) for h in _values(space, "num_heads")))
        self.hidden = tuple(sorted({g.ffn_hidden(float(r)) for r in _values(space, "mlp_ratio")}))

    def _path(
        self, depth: int, heads: Iterable[int], shared: Iterable[int], expert: Iterable[int]
    ) -> TrainPath:
        heads, shared, expert = tuple(heads), tuple(shared), tuple(expert)
        if not self.gated:  # one FFN per layer: the expert (if used) has the layer's one width
            expert = shared
        return TrainPath(heads, shared, expert, tuple(self.ffn[:depth]))

    def largest(self) -> TrainPath:
        d = self.depths[-1]
        return self._path(d, [self.heads[-1]] * d, [self.hidden[-1]] * d, [self.hidden[-1]] * d)

    def smallest(self) -> TrainPath:
        d = self.depths[0]
        return self._path(d, [self.heads[0]] * d, [self.hidden[0]] * d, [self.hidden[0]] * d)

    def random(self, rng: np.random.Generator) -> TrainPath:
        """Depth uniform over the allowed depths, every other choice uniform per layer.

        Always draws ``max_depth`` values per choice (then keeps the first ``depth``), so the
        number of draws, hence the generator's state after it, does not depend on the depth.
        """
        d = self.depths[int(rng.integers(len(self.depths)))]
        m = self.depths[-1]
        heads = rng.integers(len(self.heads), size=m)[:d]
        shared = rng.integers(len(self.hidden), size=m)[:d]
        expert = rng.integers(len(self.hidden), size=m)[:d]
        return self._path(
            d,
            (self.heads[i] for i in heads),
            (self.hidden[i] for i in shared),
            (self.hidden[i] for i in expert),
        )

    def sandwich(self, rng: np.random.Generator, n_random: int) -> list[TrainPath]:
        """The sandwich rule's paths of one step: largest first, smallest, ``n_random`` random."""
        return [self.largest(), self.smallest(), *(self.random(rng) for _ in range(n_random))]


def gated_forward(
    net: UFOSupernet, x: Tensor, task: str, path: TrainPath, gates: Tensor | None = None
) -> Tensor:
    """Run ``path`` for ``task`` on images ``x`` (``B x C x S x S``).

    Per active layer: attention with the path's heads, then the shared FFN sliced to
    ``shared_hidden``, the task's expert sliced to ``expert_hidden``, or, for ``gate`` layers,
    ``shared * g[:, 0] + expert * g[:, 1]`` with the task's straight-through gate ``g`` of that
    layer (UFO's ``MoeLayer``: both branches run; the one-hot forward keeps one, the soft gradient
    reaches the gate). Layers beyond the depth are skipped.

    Args:
        gates: ``max_depth x B x 2`` one-hot gates (:meth:`TaskGates.sample`), needed when the
            path has ``gate`` layers.

    Returns:
        The task head's ``B x width`` logits, or the ``B x E`` embedding for a task without a head.
    """
    if path.gated and gates is None:
        raise ValueError("a gated path needs the task's gates")
    tokens = _embed(x, *net.stem_parts(task))
    blocks = cast("Sequence[_SuperBlock]", net.blocks)
    for i in range(path.depth):
        block = blocks[i]
        tokens = tokens + block.attn(block.norm1(tokens), path.num_heads[i])
        h = block.norm2(tokens)
        choice = path.ffn[i]
        if choice == "shared":
            tokens = tokens + block.ffn(h, path.shared_hidden[i])
            continue
        expert = block.experts[task](h, path.expert_hidden[i])
        if choice == "task":
            tokens = tokens + expert
            continue
        assert gates is not None
        g = gates[i].to(h.dtype)[:, :, None, None].unbind(1)  # B x 1 x 1 each
        tokens = tokens + block.ffn(h, path.shared_hidden[i]) * g[0] + expert * g[1]
    out = net.norm(tokens)[:, 0]
    result: Tensor = net.heads[task](out) if task in net.heads else out
    return result
