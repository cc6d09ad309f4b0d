"""Whole-architecture summary features that complement the per-layer one-hot code.

A linear model on the one-hot code has one weight per (layer, choice); with few measured subnets
those weights are poorly determined. Summaries shared by many layers (depth, how often each choice
occurs, and the choices summed over the first / middle / last third of the layers) are each
estimated from every layer at once, so they carry the coarse trend until enough data pins down the
per-layer weights. On UFO track 2 this raised ridge's mean Kendall tau with 50 measured subnets
from 0.56-0.60 to 0.62-0.63 over three different CV splits and left it unchanged at 320 subnets
(benchmarks/results/predictors.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from supernet import SearchSpace, Subnet

# The layers are summed in this many consecutive blocks (first / middle / last third).
N_BLOCKS = 3


def summary_dim(space: SearchSpace) -> int:
    """Number of columns of :func:`summary_features` for ``space``."""
    depth_cols = len(space.depths) if space.variable_depth else 0
    return depth_cols + sum(len(dim) + N_BLOCKS for dim in space.dimensions)


def summary_features(space: SearchSpace, subnets: Sequence[Subnet]) -> torch.Tensor:
    """Depth one-hot, per-choice counts and per-block choice sums, shape ``n x summary_dim(space)``.

    Columns, in order: one-hot of the depth (only for variable-depth spaces); for each dimension,
    the number of present layers taking each of its choices, then the sum of 1-based choice
    indices over each of :data:`N_BLOCKS` consecutive blocks of layer positions (absent layers
    add 0).
    """
    codes = space.choice_matrix(list(subnets))  # n x max_depth x n_dims, -1 = absent
    parts = []
    if space.variable_depth:
        depths = np.array([s.depth for s in subnets])
        parts.append((depths[:, None] == np.array(space.depths)[None, :]).astype(float))
    blocks = np.array_split(np.arange(space.max_depth), N_BLOCKS)
    for k, dim in enumerate(space.dimensions):
        layer_codes = codes[:, :, k]
        parts.append(np.stack([(layer_codes == c).sum(1) for c in range(len(dim))], 1).astype(float))
        ones_based = np.where(layer_codes >= 0, layer_codes + 1, 0)
        parts.append(np.stack([ones_based[:, b].sum(1) for b in blocks], 1).astype(float))
    return torch.as_tensor(np.concatenate(parts, 1), dtype=torch.float64)


__all__ = ["N_BLOCKS", "summary_dim", "summary_features"]
