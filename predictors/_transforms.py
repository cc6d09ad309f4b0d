"""Output transforms: fit the GP on a well-behaved scale, report in the original units of ``y``.

``log`` suits latencies (positive, multiplicative errors), ``rankgauss`` suits scores and ranks
(maps the empirical distribution to standard-normal quantiles, so a few extreme scores do not
dominate the marginal likelihood). Predictions go back to original units by moment matching:
exactly for ``log`` (log-normal moments), by Gauss-Hermite quadrature for ``rankgauss``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeGuard

import numpy as np
import torch

TransformName = Literal["identity", "log", "rankgauss"]


def is_transform_name(kind: str) -> TypeGuard[TransformName]:
    """Whether ``kind`` names an output transform."""
    return kind in ("identity", "log", "rankgauss")


# 20 Gauss-Hermite nodes integrate the piecewise-linear inverse map to well below 1e-3 of its range.
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(20)


class OutputTransform:
    """A monotone map ``g`` of ``y`` plus standardisation: ``z = (g(y) - loc) / scale``.

    Args:
        kind: ``identity``, ``log`` or ``rankgauss`` (checked: it may come from user input).
    """

    def __init__(self, kind: str = "identity") -> None:
        if not is_transform_name(kind):
            raise ValueError(f"unknown output transform {kind!r}; expected identity, log or rankgauss")
        self.kind: TransformName = kind
        self.loc = 0.0
        self.scale = 1.0
        # rankgauss only: sorted z-knots and the matching sorted y values (the inverse map).
        self.knots_z: torch.Tensor | None = None
        self.knots_y: torch.Tensor | None = None

    # ------------------------------------------------------------------ forward
    def fit_transform(self, y: torch.Tensor) -> torch.Tensor:
        """Fit on ``y`` (shape ``n``) and return the standardised transformed values (shape ``n``)."""
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if not torch.isfinite(y).all():
            raise ValueError("targets must be finite numbers")
        if self.kind == "log" and (y <= 0).any():
            raise ValueError("the log transform (metric latency_ms) needs positive targets")
        if self.kind == "rankgauss":
            g = self._rankgauss(y)
            order = torch.argsort(y)
            self.knots_y = y[order].clone()
            self.knots_z = g[order].clone()
        else:
            g = self._forward(y)
        self.loc = float(g.mean())
        spread = float(g.std()) if g.numel() > 1 else 0.0
        self.scale = spread if spread > 1e-12 else 1.0
        return (g - self.loc) / self.scale

    def transform(self, y: torch.Tensor) -> torch.Tensor:
        """Map new ``y`` values (shape ``n``) with the fitted transform."""
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if self.kind == "rankgauss":
            assert self.knots_y is not None
            assert self.knots_z is not None
            g = _interp(y, self.knots_y, self.knots_z)
        else:
            g = self._forward(y)
        return (g - self.loc) / self.scale

    def standardised_std(self, y: torch.Tensor, y_std: torch.Tensor) -> torch.Tensor:
        """Standard errors ``y_std`` of values ``y`` (both shape ``n``) on the standardised scale.

        Delta method through the fitted map: ``y_std / (y * scale)`` for ``log``, ``y_std / scale``
        for ``identity``; for ``rankgauss`` the secant of the map over ``y +- y_std``.
        """
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        y_std = torch.as_tensor(y_std, dtype=torch.float64).reshape(-1)
        if self.kind == "log":
            return y_std / y / self.scale
        if self.kind == "identity":
            return y_std / self.scale
        return (self.transform(y + y_std) - self.transform(y - y_std)).abs() / 2

    def _forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.log(y) if self.kind == "log" else y

    @staticmethod
    def _rankgauss(y: torch.Tensor) -> torch.Tensor:
        # Average ranks for ties, then normal quantiles of (rank + 0.5) / n.
        values = y.numpy()
        order = np.argsort(values, kind="mergesort")
        ranks = np.empty(len(values))
        ranks[order] = np.arange(len(values), dtype=float)
        _, inverse = np.unique(values, return_inverse=True)
        sums = np.bincount(inverse, weights=ranks)
        counts = np.bincount(inverse)
        ranks = (sums / counts)[inverse]
        u = (ranks + 0.5) / len(values)
        normal = torch.distributions.Normal(0.0, 1.0)
        scores: torch.Tensor = normal.icdf(torch.as_tensor(u, dtype=torch.float64))
        return scores

    # ------------------------------------------------------------------ backward
    def untransform(self, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std in original units from a Gaussian ``N(mean, std^2)`` on the standardised scale.

        Args:
            mean: Shape ``n``, standardised scale.
            std: Shape ``n``, standardised scale.

        Returns:
            Mean and std of the back-transformed distribution, both shape ``n``.
        """
        mu = mean * self.scale + self.loc
        sigma = std * self.scale
        if self.kind == "identity":
            return mu, sigma
        if self.kind == "log":
            # Log-normal moments.
            out_mean = torch.exp(mu + 0.5 * sigma**2)
            out_std = out_mean * torch.sqrt(torch.expm1(sigma**2))
            return out_mean, out_std
        assert self.knots_z is not None
        assert self.knots_y is not None
        nodes = torch.as_tensor(_GH_NODES, dtype=mu.dtype)
        weights = torch.as_tensor(_GH_WEIGHTS, dtype=mu.dtype) / math.sqrt(math.pi)
        points = mu[:, None] + math.sqrt(2.0) * sigma[:, None] * nodes[None, :]
        values = _interp(points, self.knots_z, self.knots_y, extrapolate=True)
        out_mean = values @ weights
        out_var = ((values - out_mean[:, None]) ** 2) @ weights
        return out_mean, out_var.clamp_min(0.0).sqrt()

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "loc": self.loc,
            "scale": self.scale,
            "knots_z": self.knots_z,
            "knots_y": self.knots_y,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OutputTransform:
        out = cls(state["kind"])
        out.loc, out.scale = state["loc"], state["scale"]
        out.knots_z, out.knots_y = state["knots_z"], state["knots_y"]
        return out


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor, extrapolate: bool = False) -> torch.Tensor:
    """Piecewise-linear interpolation of increasing knots ``(xp, fp)`` at ``x`` (any shape).

    Beyond the knots: constant, or (``extrapolate``) linear with the slope over the outer 10% of
    knots, so predictions beyond the best measured value still order correctly.
    """
    # Collapse duplicate x-knots (ties) to their mean f so the map is a function.
    xp_u, inverse = torch.unique(xp, return_inverse=True)
    fp_u = torch.zeros_like(xp_u).index_add_(0, inverse, fp) / torch.bincount(inverse).to(fp.dtype)
    if xp_u.numel() == 1:
        return torch.full_like(x, float(fp_u[0]))
    flat = x.reshape(-1)
    idx = torch.searchsorted(xp_u, flat).clamp(1, xp_u.numel() - 1)
    x0, x1 = xp_u[idx - 1], xp_u[idx]
    f0, f1 = fp_u[idx - 1], fp_u[idx]
    t = ((flat - x0) / (x1 - x0)).clamp(0.0, 1.0)
    out = f0 + t * (f1 - f0)
    if extrapolate:
        tail = max(1, xp_u.numel() // 10)
        lo_slope = (fp_u[tail] - fp_u[0]) / (xp_u[tail] - xp_u[0])
        hi_slope = (fp_u[-1] - fp_u[-1 - tail]) / (xp_u[-1] - xp_u[-1 - tail])
        out = torch.where(flat < xp_u[0], fp_u[0] + lo_slope * (flat - xp_u[0]), out)
        out = torch.where(flat > xp_u[-1], fp_u[-1] + hi_slope * (flat - xp_u[-1]), out)
    result: torch.Tensor = out.reshape(x.shape)
    return result
