"""Kernels for per-layer categorical architecture encodings.

Every GP-NAS kernel here is ``linear(one-hot) + scale * k(x, x')``: the linear part is GP-NAS's
linear mean with a Gaussian prior on its weights, integrated out (so it is fitted by marginal
likelihood with the rest instead of by a separate least-squares step), and ``k`` models the
interactions between layers that a linear model cannot.
"""

from __future__ import annotations

from typing import Any

import gpytorch
import torch
from gpytorch.constraints import GreaterThan, Positive
from gpytorch.kernels import Kernel, LinearKernel, MaternKernel, RBFKernel, ScaleKernel
from gpytorch.priors import GammaPrior

from supernet import SearchSpace

KERNELS = (
    "linear",
    "rbf",
    "hamming",
    "ordinal-ard",
    "matern-ordinal",
    "hamming+ordinal",
    "layer-linear",
    "layer-additive",
    "layer-pairwise",
)


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

    def __init__(self, group_of_column: torch.Tensor, n_groups: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("group_of_column", group_of_column.long())
        self.register_parameter("raw_weight", torch.nn.Parameter(torch.full((n_groups,), -1.0)))
        self.register_constraint("raw_weight", Positive())

    @property
    def weight(self) -> torch.Tensor:
        result: torch.Tensor = self.raw_weight_constraint.transform(self.raw_weight)
        return result

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
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


class GroupLinearKernel(Kernel):
    """Linear kernel on one-hot groups with one learned weight per group (additive per layer).

    ``k(x, x') = sum_g v_g <x_g, x'_g>``: a Bayesian linear model on the one-hot code whose
    weights for group ``g`` (one layer's choice of one dimension, ``per="group"``) have prior
    variance ``v_g``. The marginal likelihood learns how much each layer matters, so layers whose
    choices barely move the target (the last ones on UFO) are shrunk harder than one common ridge
    penalty would.

    Args:
        group_of_column: Shape ``d``: the group index of each one-hot column.
        n_groups: Number of groups with their own weight.
        init: Initial weight of every group.
    """

    has_lengthscale = False

    def __init__(
        self, group_of_column: torch.Tensor, n_groups: int, init: float = 0.05, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.register_buffer("group_of_column", group_of_column.long())
        raw = torch.full((n_groups,), float(torch.log(torch.expm1(torch.tensor(init)))))
        self.register_parameter("raw_weight", torch.nn.Parameter(raw))
        self.register_constraint("raw_weight", Positive())

    @property
    def weight(self) -> torch.Tensor:
        result: torch.Tensor = self.raw_weight_constraint.transform(self.raw_weight)
        return result

    def column_weights(self) -> torch.Tensor:
        """The prior variance of every one-hot column's weight, shape ``d``."""
        return self.weight[self.group_of_column]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
        scale = self.column_weights().sqrt().to(x1)
        a, b = x1 * scale, x2 * scale
        if diag:
            return (a * b).sum(-1)
        return a @ b.transpose(-1, -2)


class LayerPairwiseKernel(Kernel):
    """Second-order additive (ANOVA) kernel over layers: every pair of layers interacts.

    With ``m_l(x, x')`` the number of dimensions on which layer ``l`` of ``x`` and ``x'`` agree
    (weighted per group), ``k = ((sum_l m_l)^2 - sum_l m_l^2) / 2``: the sum over pairs of layers
    of the product of their matches. Unlike an exponentiated Hamming kernel (all layers interact
    at once) this models only pairwise interactions, e.g. between neighbouring blocks.

    Args:
        group_of_column: Shape ``d``: the (layer, dimension) group of each one-hot column.
        layer_of_group: Shape ``n_groups``: the layer of each group.
        weight_of_group: Shape ``n_groups``: which learned weight each group uses (e.g. its
            dimension, so all layers share one weight per dimension).
        n_weights: Number of learned weights.
    """

    has_lengthscale = False

    def __init__(
        self,
        group_of_column: torch.Tensor,
        layer_of_group: torch.Tensor,
        weight_of_group: torch.Tensor,
        n_weights: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.register_buffer("group_of_column", group_of_column.long())
        self.register_buffer("layer_of_group", layer_of_group.long())
        self.register_buffer("weight_of_group", weight_of_group.long())
        self.register_parameter("raw_weight", torch.nn.Parameter(torch.zeros(n_weights)))
        self.register_constraint("raw_weight", Positive())

    @property
    def weight(self) -> torch.Tensor:
        result: torch.Tensor = self.raw_weight_constraint.transform(self.raw_weight)
        return result

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
        n_layers = int(self.layer_of_group.max()) + 1
        # One-hot columns of a layer, as a layer x column 0/1 matrix: m_l = (x1 * w * P_l) . x2.
        layer_of_column = self.layer_of_group[self.group_of_column]
        w = self.weight[self.weight_of_group[self.group_of_column]].to(x1)
        P = (layer_of_column.unsqueeze(0) == torch.arange(n_layers).unsqueeze(1)).to(x1)
        if diag:
            m = ((x1 * x2 * w).unsqueeze(-2) * P).sum(-1)  # ... x n x L
            pairs: torch.Tensor = 0.5 * (m.sum(-1) ** 2 - (m**2).sum(-1))
            return pairs
        a = (x1 * w).unsqueeze(-3) * P.unsqueeze(-2)  # ... x L x n x d
        m = a @ x2.unsqueeze(-3).transpose(-1, -2)  # ... x L x n x m
        pairs = 0.5 * (m.sum(-3) ** 2 - (m**2).sum(-3))
        return pairs


class EmbeddingLinearKernel(Kernel):
    """Linear kernel on a fixed linear embedding of the one-hot code: ``v * F(x) . F(x') / S``.

    ``F(x) = (x - x_mean) @ B + offset`` (``S`` columns) holds related tasks' posterior means
    (see :mod:`predictors._multitask`), so a target can be "some mix of the related tasks"; the
    map is a buffer (saved with the model's state), only ``v`` is learned.

    Args:
        B: ``d x S`` coefficients. x_mean: ``d``. offset: ``S``.
    """

    has_lengthscale = False

    def __init__(self, B: torch.Tensor, x_mean: torch.Tensor, offset: torch.Tensor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("B", B.to(torch.float64))
        self.register_buffer("x_mean", x_mean.to(torch.float64))
        self.register_buffer("offset", offset.to(torch.float64))
        self.register_parameter("raw_variance", torch.nn.Parameter(torch.tensor(0.0)))
        self.register_prior(
            "variance_prior", GammaPrior(2.0, 2.0), lambda m: m.variance, lambda m, v: m._set_variance(v)
        )
        self.register_constraint("raw_variance", Positive())

    @property
    def variance(self) -> torch.Tensor:
        result: torch.Tensor = self.raw_variance_constraint.transform(self.raw_variance)
        return result

    def _set_variance(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value).to(self.raw_variance)
        self.initialize(raw_variance=self.raw_variance_constraint.inverse_transform(value))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = (x - self.x_mean.to(x)) @ self.B.to(x) + self.offset.to(x)
        return result

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
        a, b = self.embed(x1), self.embed(x2)
        scale = self.variance / self.B.shape[1]
        covariance: torch.Tensor = scale * (a * b).sum(-1) if diag else scale * a @ b.transpose(-1, -2)
        return covariance


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


def layer_kernel(space: SearchSpace) -> GroupLinearKernel:
    """:class:`GroupLinearKernel` over the one-hot columns of ``space``, one weight per (layer,
    dimension) group (the ``layer-linear`` kernel)."""
    groups, n_groups = onehot_groups(space, "group")
    return GroupLinearKernel(groups, n_groups, active_dims=tuple(range(space.encoding_dim("onehot"))))


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
    if name.startswith("layer-"):
        # Additive per layer with learned layer weights (GroupLinearKernel) plus, for
        # layer-additive, a Hamming interaction term with its own weight per layer and, for
        # layer-pairwise, the pairwise-layer ANOVA term.
        # The interaction terms share one weight per dimension across layers: with a weight per
        # (layer, dimension) as well, the marginal likelihood overfits 320 UFO subnets (mean
        # Kendall tau 0.757 against 0.777 for the linear part alone, one CV split).
        per_layer = layer_kernel(space)
        if name == "layer-linear":
            return per_layer
        dim_groups, n_dims = onehot_groups(space, "dimension")
        if name == "layer-additive":
            return per_layer + ScaleKernel(GroupHammingKernel(dim_groups, n_dims, active_dims=onehot))
        if name == "layer-pairwise":
            groups, n_groups = onehot_groups(space, "group")
            layer_of_group = torch.arange(n_groups) // len(space.dimensions)
            dim_of_group = torch.arange(n_groups) % len(space.dimensions)
            pairwise = ScaleKernel(
                LayerPairwiseKernel(groups, layer_of_group, dim_of_group, n_dims, active_dims=onehot)
            )
            pairwise.outputscale = 0.01
            return per_layer + pairwise
        raise ValueError(f"unknown kernel {name!r}; known: {', '.join(KERNELS)}")
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
