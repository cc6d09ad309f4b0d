"""Distances between embeddings, computed a block of queries at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Distance = Literal["cosine", "euclidean"]
DISTANCES: tuple[Distance, ...] = ("cosine", "euclidean")
#: Distance entries per block of queries (about 100 MB of temporaries for re-id ranking).
CHUNK_ELEMENTS = 1 << 21


def check_distance(distance: Distance) -> Distance:
    """``distance`` itself, once known to be one of :data:`DISTANCES`.

    Raises:
        ValueError: Another name, listing the known ones.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {list(DISTANCES)}, got {distance!r}")
    return distance


def distance_matrix(a: Tensor, b: Tensor, distance: Distance = "cosine") -> Tensor:
    """Distances between the rows of ``a`` (``m x d``) and of ``b`` (``n x d``): ``m x n``.

    ``cosine``: ``1 - cos`` of the L2-normalised embeddings (UFO's re-id evaluator,
    ``utils/compute_dist.py``; in [0, 2]). ``euclidean``: the Euclidean distance (the released
    code ranks by its square, which orders the same).
    """
    check_distance(distance)
    if distance == "cosine":
        return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return squared.clamp_min_(0.0).sqrt_()


def pair_distances(a: Tensor, b: Tensor, distance: Distance = "cosine") -> Tensor:
    """Distance between ``a[i]`` and ``b[i]`` for every row ``i``: ``n`` values."""
    check_distance(distance)
    if distance == "cosine":
        return 1.0 - (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)
    result: Tensor = (a - b).norm(dim=1)
    return result


def as_float(x: Tensor | np.ndarray) -> Tensor:
    """Embeddings as a floating tensor (float64 stays float64, everything else float32)."""
    tensor = torch.as_tensor(x)
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def distance_blocks(
    q: Tensor, g: Tensor, distance: Distance, chunk_elements: int
) -> Iterable[tuple[int, int, Tensor]]:
    """``(start, stop, distance_matrix(q[start:stop], g))`` for consecutive blocks of queries of
    about ``chunk_elements`` entries each; the gallery is normalised (or its norms taken) once."""
    check_distance(distance)
    step = max(1, chunk_elements // max(g.shape[0], 1))
    if distance == "cosine":
        q, g_t = F.normalize(q, dim=1), F.normalize(g, dim=1).T.contiguous()
    else:
        g_t, g_sq = g.T.contiguous(), (g * g).sum(1)[None, :]
    for start in range(0, q.shape[0], step):
        stop = min(start + step, q.shape[0])
        block = q[start:stop] @ g_t
        if distance == "cosine":
            block.neg_().add_(1.0)
        else:
            qb = q[start:stop]
            block.mul_(-2.0).add_((qb * qb).sum(1)[:, None]).add_(g_sq).clamp_min_(0.0).sqrt_()
        yield start, stop, block
