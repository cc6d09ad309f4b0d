"""The UFO weight-sharing supernet and the dense subnets extracted from it.

:class:`UFOSupernet` holds the largest weights of a :class:`~supernet.UFOSpace`: per layer a
pre-norm ViT block whose attention and FFN are sliced to the heads and width a subnet chooses.
For the UFO 2.0 multipath space every layer also holds one FFN expert per task, and every task
with an output width has its own head. :meth:`UFOSupernet.extract` copies one path's slices into
a :class:`SubnetViT` made of plain ``Conv2d`` / ``Linear`` / ``LayerNorm`` modules: the model one
deploys (and exports to ONNX), with exactly :meth:`UFOSpace.param_count` parameters.

Both models run the same functional code (:func:`_attention`, :func:`_ffn`, :func:`_embed`) so
the supernet path and the extracted subnet agree to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._registry import get_space
from ._space import Subnet
from ._ufo import DEFAULT_NORM_EPS, UFOSpace, ViTGeometry

if TYPE_CHECKING:
    from ._deployment import Deployment, DeploymentViT


@dataclass(frozen=True)
class LayerSpec:
    """The choices of one active layer, resolved to shapes.

    Attributes:
        num_heads: Attention heads ``h``; the layer has ``h * head_dim`` q/k/v channels.
        ffn_hidden: FFN hidden width.
        ffn_path: ``"shared"`` or ``"task"`` (the task's own FFN expert).
    """

    num_heads: int
    ffn_hidden: int
    ffn_path: str = "shared"


# ---------------------------------------------------------------------- shared functional code
def _embed(x: Tensor, patch_embed: nn.Conv2d, cls_token: Tensor, pos_embed: Tensor) -> Tensor:
    """Images ``B x C x S x S`` -> tokens ``B x T x E`` (class token first, position added)."""
    tokens = patch_embed(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
    return tokens + pos_embed


def _attention(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor,
    proj_weight: Tensor,
    proj_bias: Tensor,
    num_heads: int,
    head_dim: int,
) -> Tensor:
    """Multi-head self-attention of ``x`` (``B x T x E``) -> ``B x T x E``.

    ``qkv_weight`` is ``3 * num_heads * head_dim x E`` laid out as ``[q | k | v]``, each part
    head-major; ``proj_weight`` is ``E x num_heads * head_dim``.
    """
    b, t, _ = x.shape
    qkv = F.linear(x, qkv_weight, qkv_bias).reshape(b, t, 3, num_heads, head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B x h x T x d
    out = F.scaled_dot_product_attention(q, k, v)
    return F.linear(out.transpose(1, 2).reshape(b, t, num_heads * head_dim), proj_weight, proj_bias)


def _ffn(x: Tensor, fc1_weight: Tensor, fc1_bias: Tensor, fc2_weight: Tensor, fc2_bias: Tensor) -> Tensor:
    """Linear / GELU / Linear on ``B x T x E`` tokens."""
    return F.linear(F.gelu(F.linear(x, fc1_weight, fc1_bias)), fc2_weight, fc2_bias)


class _Stem(nn.Module):
    """Patch embedding, class token and position embedding: one per task when the space says so."""

    def __init__(self, g: ViTGeometry) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(g.in_chans, g.embed_dim, g.patch_size, stride=g.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, g.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, g.num_tokens, g.embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        return _embed(x, self.patch_embed, self.cls_token, self.pos_embed)


StemParts = tuple[nn.Conv2d, Tensor, Tensor]


def _stem_parts(model: nn.Module, per_task: bool, task: str | None) -> StemParts:
    """``(patch_embed, cls_token, pos_embed)`` of ``task``: its own stem (``model.stems[task]``) or
    the model's shared one (``model.patch_embed`` ...)."""
    # ModuleDict is not generic: its values are the _Stem modules built with the model.
    owner = cast(nn.ModuleDict, model.stems)[task] if per_task and task is not None else model
    return cast(StemParts, (owner.patch_embed, owner.cls_token, owner.pos_embed))


def _copy_stem(target: StemParts, source: StemParts) -> None:
    target[0].load_state_dict(source[0].state_dict())
    target[1].copy_(source[1])
    target[2].copy_(source[2])


def _copy_(targets: Sequence[Tensor], sources: Sequence[Tensor]) -> None:
    """Copy each source tensor into the same-shaped target parameter, in place."""
    for target, source in zip(targets, sources, strict=True):
        target.copy_(source)


def _init_weights(module: nn.Module) -> None:
    """ViT initialisation: truncated normal (std 0.02) weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------- extracted dense subnet
class _Attention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.qkv = nn.Linear(embed_dim, 3 * num_heads * head_dim)
        self.proj = nn.Linear(num_heads * head_dim, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return _attention(
            x, self.qkv.weight, self.qkv.bias, self.proj.weight, self.proj.bias, self.num_heads, self.head_dim
        )


class _FFN(nn.Module):
    def __init__(self, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return _ffn(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)


class _Block(nn.Module):
    def __init__(
        self, embed_dim: int, num_heads: int, head_dim: int, hidden: int, eps: float = DEFAULT_NORM_EPS
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps)
        self.attn = _Attention(embed_dim, num_heads, head_dim)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps)
        self.ffn = _FFN(embed_dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        result: Tensor = x + self.ffn(self.norm2(x))
        return result


class SubnetViT(nn.Module):
    """A standalone dense ViT: one subnet's path, as returned by :meth:`UFOSupernet.extract`.

    Args:
        geometry: ViT shapes (embedding width, patch and image size, head width, channels).
        layers: One :class:`LayerSpec` per active layer (``ffn_path`` is informational here:
            the block holds whichever FFN the path chose).
        head_outputs: Width of the task head, or ``None`` to output the embedding.

    Attributes:
        geometry: The ``geometry`` argument.
        arch: Canonical arch string of the subnet, set by :meth:`UFOSupernet.extract`.
        task: Task whose path and head were extracted, or ``None``.
    """

    def __init__(
        self, geometry: ViTGeometry, layers: Sequence[LayerSpec], head_outputs: int | None = None
    ) -> None:
        super().__init__()
        g = geometry
        self.geometry = g
        self.arch: str | None = None
        self.task: str | None = None
        self.patch_embed = nn.Conv2d(g.in_chans, g.embed_dim, g.patch_size, stride=g.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, g.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, g.num_tokens, g.embed_dim))
        self.blocks = nn.ModuleList(
            _Block(g.embed_dim, spec.num_heads, g.head_dim, spec.ffn_hidden, g.norm_eps) for spec in layers
        )
        self.norm = nn.LayerNorm(g.embed_dim, eps=g.norm_eps)
        self.head = nn.Linear(g.embed_dim, head_outputs) if head_outputs else None

    def forward(self, x: Tensor) -> Tensor:
        """Images ``B x in_chans x image_size x image_size`` -> ``B x out`` (``out`` = head width or E)."""
        x = _embed(x, self.patch_embed, self.cls_token, self.pos_embed)
        for block in self.blocks:
            x = block(x)
        out = self.norm(x)[:, 0]
        result: Tensor = self.head(out) if self.head is not None else out
        return result


# ---------------------------------------------------------------------- the supernet
class _SuperAttention(nn.Module):
    def __init__(self, embed_dim: int, max_heads: int, head_dim: int) -> None:
        super().__init__()
        self.max_heads, self.head_dim = max_heads, head_dim
        self.qkv = nn.Linear(embed_dim, 3 * max_heads * head_dim)
        self.proj = nn.Linear(max_heads * head_dim, embed_dim)

    def sliced(self, num_heads: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(qkv_weight, qkv_bias, proj_weight, proj_bias)`` of the first ``num_heads`` heads.

        q, k and v are each cut to their first ``num_heads * head_dim`` channels, so the slice keeps
        the ``[q | k | v]`` layout that :func:`_attention` expects.
        """
        a, e = num_heads * self.head_dim, self.qkv.in_features
        qkv_w = self.qkv.weight.view(3, self.max_heads * self.head_dim, e)[:, :a].reshape(3 * a, e)
        qkv_b = self.qkv.bias.view(3, -1)[:, :a].reshape(3 * a)
        return qkv_w, qkv_b, self.proj.weight[:, :a], self.proj.bias

    def forward(self, x: Tensor, num_heads: int) -> Tensor:
        return _attention(x, *self.sliced(num_heads), num_heads, self.head_dim)


class _SuperFFN(nn.Module):
    def __init__(self, embed_dim: int, max_hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, max_hidden)
        self.fc2 = nn.Linear(max_hidden, embed_dim)

    def sliced(self, hidden: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(fc1_weight, fc1_bias, fc2_weight, fc2_bias)`` of the first ``hidden`` units."""
        return self.fc1.weight[:hidden], self.fc1.bias[:hidden], self.fc2.weight[:, :hidden], self.fc2.bias

    def forward(self, x: Tensor, hidden: int) -> Tensor:
        return _ffn(x, *self.sliced(hidden))


class _SuperBlock(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        max_heads: int,
        head_dim: int,
        max_hidden: int,
        experts: Sequence[str],
        eps: float = DEFAULT_NORM_EPS,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps)
        self.attn = _SuperAttention(embed_dim, max_heads, head_dim)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps)
        self.ffn = _SuperFFN(embed_dim, max_hidden)
        self.experts = nn.ModuleDict({task: _SuperFFN(embed_dim, max_hidden) for task in experts})

    def ffn_for(self, spec: LayerSpec, task: str | None) -> _SuperFFN:
        if spec.ffn_path != "task":
            return self.ffn
        if task is None:  # resolve_path refuses this before any forward or extraction
            raise ValueError("the task's FFN expert needs a task")
        # ModuleDict is not generic: its values are the _SuperFFN experts built in __init__.
        return cast(_SuperFFN, self.experts[task])

    def forward(self, x: Tensor, spec: LayerSpec, task: str | None) -> Tensor:
        x = x + self.attn(self.norm1(x), spec.num_heads)
        result: Tensor = x + self.ffn_for(spec, task)(self.norm2(x), spec.ffn_hidden)
        return result


def ufo_space(space: UFOSpace | str, **overrides: Any) -> UFOSpace:
    """The UFO space (or preset name) ``space``, with some :class:`ViTGeometry` fields replaced.

    Raises:
        ValueError: If the space is unknown or not a UFO space, or an override is not a valid
            geometry field.
    """
    resolved = get_space(space) if isinstance(space, str) else space
    if not isinstance(resolved, UFOSpace):
        raise ValueError(f"space {getattr(resolved, 'name', resolved)!r} has no supernet; only UFO spaces do")
    return resolved.with_geometry(**overrides) if overrides else resolved


def resolve_path(
    space: UFOSpace, sub: Subnet | str, task: str | None = None
) -> tuple[Subnet, list[LayerSpec]]:
    """Check ``sub`` (a :class:`Subnet` or arch string) and ``task``; return the subnet and its layers.

    Cheap (no weights involved), so callers can reject bad input before building a supernet.

    Raises:
        ValueError: If ``sub`` is not a subnet of ``space``, ``task`` is unknown, or the space
            routes FFNs per task (has an ``ffn_path`` dimension) and ``task`` is missing.
    """
    sub = space.parse(sub) if isinstance(sub, str) else space.validate(sub)
    space.check_task(task)
    if task is None and any(dim.name == "ffn_path" for dim in space.dimensions):
        raise ValueError(
            f"space {space.name!r} routes FFNs per task, so a task is required; known: {space.tasks}"
        )
    if task is None and space.per_task_stem:
        raise ValueError(
            f"space {space.name!r} has a stem per task, so a task is required; known: {space.tasks}"
        )
    g = space.geometry
    specs = [
        LayerSpec(int(v["num_heads"]), g.ffn_hidden(v["mlp_ratio"]), v.get("ffn_path", "shared"))
        for v in space.layer_values(sub)
    ]
    return sub, specs


class UFOSupernet(nn.Module):
    """Weight-sharing ViT supernet of a UFO space; a subnet's forward uses slices of its weights.

    Holds ``max_depth`` blocks with the largest attention (``max(num_heads)`` heads) and FFN
    (``max(mlp_ratio)``), a shared FFN per layer plus, if the space has an ``ffn_path``
    dimension, one FFN expert per task, and a ``Linear(E, width)`` head per task whose output
    width is not ``None``.

    Args:
        space: The UFO space, with the geometry the weights should have.
        device: Where the weights live; ``"meta"`` builds the module with every shape but no
            storage (and no initialisation), e.g. to list a large supernet's parameter shapes.

    Attributes:
        space: ``space``; its ``geometry`` gives every shape.
        multipath: Whether layers choose between the shared FFN and a task expert (the forward
            then needs a task).
    """

    def __init__(self, space: UFOSpace, *, device: str | torch.device = "cpu") -> None:
        super().__init__()
        if not isinstance(space, UFOSpace):
            raise ValueError(f"a supernet needs a UFO space, got {getattr(space, 'name', space)!r}")
        dims = {dim.name: dim for dim in space.dimensions}
        self.space = space
        self.multipath = "ffn_path" in dims
        g = space.geometry
        max_heads = max(dims["num_heads"].values)
        max_hidden = max(g.ffn_hidden(r) for r in dims["mlp_ratio"].values)
        experts = space.tasks if self.multipath else []
        # Build on the meta device, then allocate once and initialise: nn.Linear's own
        # initialisation would otherwise run on every (large) weight before ours replaces it.
        with torch.device("meta"):
            if space.per_task_stem:
                self.stems = nn.ModuleDict({task: _Stem(g) for task in space.tasks})
            else:  # the attribute names of checkpoints saved before stems could be per task
                self.patch_embed = nn.Conv2d(g.in_chans, g.embed_dim, g.patch_size, stride=g.patch_size)
                self.cls_token = nn.Parameter(torch.empty(1, 1, g.embed_dim))
                self.pos_embed = nn.Parameter(torch.empty(1, g.num_tokens, g.embed_dim))
            self.blocks = nn.ModuleList(
                _SuperBlock(g.embed_dim, max_heads, g.head_dim, max_hidden, experts, g.norm_eps)
                for _ in range(space.max_depth)
            )
            self.norm = nn.LayerNorm(g.embed_dim, eps=g.norm_eps)
            self.heads = nn.ModuleDict(
                {task: nn.Linear(g.embed_dim, out) for task, out in space.task_outputs.items() if out}
            )
        if torch.device(device).type != "meta":
            self.to_empty(device=device)
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-initialise every weight (ViT scheme: truncated normal, std 0.02)."""
        self.apply(_init_weights)
        for task in self.space.tasks if self.space.per_task_stem else [None]:
            _, cls_token, pos_embed = self.stem_parts(task)
            nn.init.trunc_normal_(cls_token, std=0.02)
            nn.init.trunc_normal_(pos_embed, std=0.02)

    def stem_parts(self, task: str | None) -> StemParts:
        """``(patch_embed, cls_token, pos_embed)`` that ``task``'s path starts with: its own
        when the space has a stem per task (then ``task`` must be one of its tasks), else the
        shared one."""
        return _stem_parts(self, self.space.per_task_stem, task)

    def resolve(self, sub: Subnet | str, task: str | None = None) -> tuple[Subnet, list[LayerSpec]]:
        """:func:`resolve_path` on this supernet's space."""
        return resolve_path(self.space, sub, task)

    def _head(self, task: str | None) -> nn.Linear | None:
        # ModuleDict is not generic: its values are the nn.Linear heads built in __init__.
        return cast(nn.Linear, self.heads[task]) if task is not None and task in self.heads else None

    def forward(self, x: Tensor, sub: Subnet | str, task: str | None = None) -> Tensor:
        """Run ``sub``'s path on images ``x`` (``B x in_chans x image_size x image_size``).

        Returns:
            ``B x width`` task-head outputs if ``task`` has a head, else the ``B x E`` embedding
            (the final-normed class token).
        """
        _, specs = self.resolve(sub, task)
        g = self.space.geometry
        expected = (g.in_chans, g.image_size, g.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"input must be B x {' x '.join(map(str, expected))}, got {tuple(x.shape)}")
        x = _embed(x, *self.stem_parts(task))
        for block, spec in zip(self.blocks, specs, strict=False):
            x = block(x, spec, task)
        out = self.norm(x)[:, 0]
        head = self._head(task)
        result: Tensor = head(out) if head is not None else out
        return result

    # ------------------------------------------------------------------ extraction
    @torch.no_grad()
    def extract(self, sub: Subnet | str, task: str | None = None) -> SubnetViT:
        """A standalone dense copy of ``sub``'s path (and ``task``'s head, if it has one).

        The result shares no storage with the supernet; its parameter count is
        ``space.param_count(sub, task)`` and its output equals ``self(x, sub, task)``.
        """
        sub, specs = self.resolve(sub, task)
        head = self._head(task)
        param = next(self.parameters())
        with torch.device("meta"):
            dense = SubnetViT(self.space.geometry, specs, head.out_features if head is not None else None)
        dense.to_empty(device=param.device).to(param.dtype)
        dense.arch, dense.task = self.space.format(sub), task
        _copy_stem((dense.patch_embed, dense.cls_token, dense.pos_embed), self.stem_parts(task))
        # ModuleList is not generic: these hold the _Block / _SuperBlock modules built in __init__.
        targets = cast("Iterable[_Block]", dense.blocks)
        blocks = cast("Iterable[_SuperBlock]", self.blocks)
        for target, block, spec in zip(targets, blocks, specs, strict=False):
            target.norm1.load_state_dict(block.norm1.state_dict())
            target.norm2.load_state_dict(block.norm2.state_dict())
            attn, ffn = target.attn, target.ffn
            _copy_(
                (attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias),
                block.attn.sliced(spec.num_heads),
            )
            _copy_(
                (ffn.fc1.weight, ffn.fc1.bias, ffn.fc2.weight, ffn.fc2.bias),
                block.ffn_for(spec, task).sliced(spec.ffn_hidden),
            )
        dense.norm.load_state_dict(self.norm.state_dict())
        if head is not None and dense.head is not None:  # dense has a head exactly when head exists
            dense.head.load_state_dict(head.state_dict())
        return dense.train(self.training)

    def extract_deployment(self, dep: Deployment | Mapping[str, Subnet | str]) -> DeploymentViT:
        """One standalone model of several tasks' paths, holding their shared weights once
        (see :func:`supernet.extract_deployment`)."""
        from ._deployment import extract_deployment

        return extract_deployment(self, dep)

    def extra_repr(self) -> str:
        return f"space={self.space.name!r}, geometry={self.space.geometry}"


def build_supernet(space: UFOSpace | str, *, seed: int | None = None, **overrides: Any) -> UFOSupernet:
    """Build the supernet of a UFO space (or preset name), optionally with another geometry.

    Args:
        space: A :class:`UFOSpace` or the name of a UFO preset (``ufo-track2``, ``ufo2-multipath``).
        seed: If given, initialise the weights from this seed without touching the global RNG.
        **overrides: :class:`ViTGeometry` fields to replace (``embed_dim``, ``patch_size``,
            ``image_size``, ``head_dim``, ``in_chans``), e.g. a tiny geometry for tests.

    Returns:
        The supernet; ``net.space`` is ``space`` with the overridden geometry.

    Raises:
        ValueError: If the space is unknown or not a UFO space, or an override is not a geometry field.
    """
    space = ufo_space(space, **overrides)
    if seed is None:
        return UFOSupernet(space)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UFOSupernet(space)
