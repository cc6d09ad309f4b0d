"""Alternative per-layer encodings of a subnet (the CVPR 2022 track-2 winners' ideas).

Each is appended to the one-hot code by ``RidgePredictor(encoding=...)``:

* ``joint``: each layer's choice of all dimensions as one categorical (9 values for UFO's
  heads x mlp_ratio, plus absent), so a within-layer interaction gets its own weight;
* ``depth``: the one-hot code again per depth (zero unless the subnet has that depth), so a
  layer's effect may depend on how deep the subnet is;
* ``from-end``: the one-hot code with the layers aligned at the last one (position counted from
  the output), so "the last block" means the same thing at every depth.

On the 400 UFO subnets none beats the plain one-hot code (benchmarks/results/accuracy_models.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from supernet import SearchSpace, Subnet

ENCODINGS = ("onehot", "joint", "depth", "from-end")


def _onehot_codes(codes: np.ndarray, n_values: int) -> np.ndarray:
    """One-hot of integer codes ``n x L`` (-1 = absent, its own category): ``n x L * (n_values + 1)``."""
    n, L = codes.shape
    out = np.zeros((n, L, n_values + 1))
    np.put_along_axis(out, (codes + 1)[:, :, None], 1.0, axis=2)
    return out.reshape(n, -1)


def layer_encoding(space: SearchSpace, subnets: Sequence[Subnet], kind: str) -> torch.Tensor:
    """The extra columns of encoding ``kind`` (see the module docstring); ``n x 0`` for onehot.

    Raises:
        ValueError: If ``kind`` is not one of :data:`ENCODINGS`.
    """
    if kind not in ENCODINGS:
        raise ValueError(f"unknown encoding {kind!r}; expected one of {', '.join(ENCODINGS)}")
    subnets = list(subnets)
    codes = space.choice_matrix(subnets)  # n x max_depth x n_dims, -1 = absent
    n = len(subnets)
    if kind == "onehot":
        return torch.zeros(n, 0, dtype=torch.float64)
    sizes = [len(dim) for dim in space.dimensions]
    if kind == "joint":
        joint = np.zeros(codes.shape[:2], dtype=np.int64)
        for k, size in enumerate(sizes):
            joint = joint * size + codes[:, :, k].clip(min=0)
        joint = np.where(codes[:, :, 0] >= 0, joint, -1)
        return torch.as_tensor(_onehot_codes(joint, int(np.prod(sizes))), dtype=torch.float64)
    per_dim = [_onehot_codes(codes[:, :, k], size) for k, size in enumerate(sizes)]
    if kind == "from-end":
        depths = np.array([s.depth for s in subnets])
        shifted = np.full_like(codes, -1)
        for i, d in enumerate(depths):
            shifted[i, space.max_depth - d :] = codes[i, :d]
        per_dim = [_onehot_codes(shifted[:, :, k], size) for k, size in enumerate(sizes)]
        return torch.as_tensor(np.concatenate(per_dim, 1), dtype=torch.float64)
    # depth: the one-hot code, once per depth, zero for subnets of other depths.
    onehot = np.concatenate(per_dim, 1)
    depths = np.array([s.depth for s in subnets])
    blocks = [onehot * (depths == d)[:, None] for d in space.depths] if space.variable_depth else [onehot]
    return torch.as_tensor(np.concatenate(blocks, 1), dtype=torch.float64)


__all__ = ["ENCODINGS", "layer_encoding"]
