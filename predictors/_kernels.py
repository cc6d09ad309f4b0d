"""Kernels for per-layer categorical architecture encodings.

Every GP-NAS kernel here is ``linear(one-hot) + scale * k(x, x')``: the linear part is GP-NAS's
linear mean with a Gaussian prior on its weights, integrated out (so it is fitted by marginal
likelihood with the rest instead of by a separate least-squares step), and ``k`` models the
interactions between layers that a linear model cannot.
"""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.constraints import GreaterThan, Positive
from gpytorch.kernels import Kernel, LinearKernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.priors import GammaPrior

from supernet import SearchSpace

KERNELS = ("linear", "rbf", "hamming", "ordinal-ard", "matern-ordinal", "hamming+ordinal")


class GroupHammingKernel(Kernel):
    """Exponentiated weighted Hamming distance on one-hot groups.

    ``k(x, x') = exp(-sum_g w_g [x_g != x'_g])`` where group ``g`` is one (layer, dimension) of the
    one-hot code (absent layers are their own category). With one weight per dimension name
    (``per="dimension"``) the kernel has few hyperparameters; ``per="group"`` gives every layer
    position its own weights.

    Args:
        group_of_column: Shape ``d``: the group index of each one-hot column.
        n_groups: Number of groups with their own weight.
    """

    has_lengthscale = False

    def __init__(self, group_of_column: torch.Tensor, n_groups: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("group_of_column", group_of_column.long())
        self.register_parameter("raw_weight", torch.nn.Parameter(torch.full((n_groups,), -1.0)))
        self.register_constraint("raw_weight", Positive())

    @property
    def weight(self) -> torch.Tensor:
        return self.raw_weight_constraint.transform(self.raw_weight)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params) -> torch.Tensor:
        # A mismatch in a one-hot group moves two columns by 1, so |x - x'|^2 / 2 counts mismatches.
        scale = (0.5 * self.weight[self.group_of_column]).sqrt().to(x1)
        a, b = x1 * scale, x2 * scale
        if diag:
            return torch.exp(-((a - b) ** 2).sum(-1))
        sq = (
            (a**2).sum(-1, keepdim=True)
            + (b**2).sum(-1, keepdim=True).transpose(-1, -2)
            - 2 * a @ b.transpose(-1, -2)
        )
        return torch.exp(-sq.clamp_min(0.0))


def onehot_groups(space: SearchSpace, per: str) -> tuple[torch.Tensor, int]:
    """Group index of each one-hot column: one group per (layer, dimension) or per dimension."""
    absent = 1 if space.variable_depth else 0
    groups = []
    for layer in range(space.max_depth):
        for k, dim in enumerate(space.dimensions):
            g = layer * len(space.dimensions) + k if per == "group" else k
            groups += [g] * (len(dim) + absent)
    n_groups = space.max_depth * len(space.dimensions) if per == "group" else len(space.dimensions)
    return torch.tensor(groups), n_groups


def build_kernel(name: str, space: SearchSpace) -> Kernel:
    """The kernel ``name`` over ``onehot+ordinal`` features of ``space``.

    Args:
        name: One of :data:`KERNELS`.
        space: Fixes the column layout: the first ``encoding_dim("onehot")`` columns are one-hot,
            the rest ordinal.
    """
    d_onehot = space.encoding_dim("onehot")
    d_ordinal = space.encoding_dim("ordinal")
    onehot = tuple(range(d_onehot))
    ordinal = tuple(range(d_onehot, d_onehot + d_ordinal))
    linear = LinearKernel(active_dims=onehot, variance_prior=GammaPrior(2.0, 20.0))
    linear.variance = 0.05
    if name == "linear":
        return linear
    if name == "rbf":
        inner: Kernel = RBFKernel(active_dims=onehot, lengthscale_constraint=GreaterThan(0.5))
        inner.lengthscale = 4.0
    elif name == "hamming":
        groups, n_groups = onehot_groups(space, "dimension")
        inner = GroupHammingKernel(groups, n_groups, active_dims=onehot)
    elif name in ("ordinal-ard", "matern-ordinal"):
        cls = RBFKernel if name == "ordinal-ard" else MaternKernel
        inner = cls(ard_num_dims=d_ordinal, active_dims=ordinal, lengthscale_constraint=GreaterThan(0.05))
        inner.lengthscale = 2.0
    elif name == "hamming+ordinal":
        groups, n_groups = onehot_groups(space, "dimension")
        ham = ScaleKernel(GroupHammingKernel(groups, n_groups, active_dims=onehot))
        ordk = RBFKernel(
            ard_num_dims=d_ordinal, active_dims=ordinal, lengthscale_constraint=GreaterThan(0.05)
        )
        ordk.lengthscale = 2.0
        return linear + ham + ScaleKernel(ordk)
    else:
        raise ValueError(f"unknown kernel {name!r}; known: {', '.join(KERNELS)}")
    return linear + ScaleKernel(inner)


def new_likelihood() -> gpytorch.likelihoods.GaussianLikelihood:
    """Gaussian noise with a floor, so a noiseless-looking fit keeps a well-conditioned matrix."""
    return gpytorch.likelihoods.GaussianLikelihood(noise_constraint=GreaterThan(1e-4))
