"""Latency-budget queries over a front's candidates.

A query asks for the best predicted score subject to ``P(latency <= budget) >= confidence``, i.e.
``mean + z_c * std <= budget`` with ``z_c = Phi^{-1}(confidence)``, optionally under a cap on the
parameter count (``max_params``). The candidates of :func:`~._compute.compute_front` hold the
answer for every confidence in the front's range and every cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import ndtr, ndtri

from supernet.errors import UserError

from ._result import CandidateSet, FrontPoint, check_max_params


class NothingFitsError(UserError):
    """No candidate meets the latency budget at the requested confidence (and the parameter cap).

    Attributes:
        field: The constraint that ruled the candidates out: ``"latency_budget_ms"``, or
            ``"max_params"`` when the cap excludes every candidate, or every one that meets the
            latency budget.
    """

    def __init__(
        self, message: str, field: Literal["latency_budget_ms", "max_params"] = "latency_budget_ms"
    ) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Choice:
    """Answer of :func:`budget_query`.

    Attributes:
        point: The chosen subnet and its predictions.
        p_feasible: ``P(latency <= budget)`` under the latency posterior (Gaussian).
    """

    point: FrontPoint
    p_feasible: float


def check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return confidence


def _p_within(budget: float, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Gaussian ``P(latency <= budget)``; a zero std means a certain latency."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = ndtr((budget - mean) / std)
    return np.where(std > 0, p, (mean <= budget).astype(float))


def budget_query(
    candidates: CandidateSet,
    latency_budget_ms: float,
    confidence: float = 0.9,
    max_params: int | None = None,
) -> Choice:
    """The candidate with the best predicted score among those with ``P(latency <= budget) >= confidence``
    and, when ``max_params`` is given, at most ``max_params`` parameters.

    Ties in score go to the lower predicted latency.

    Args:
        candidates: From :attr:`FrontResult.candidates`.
        latency_budget_ms: The budget, milliseconds (> 0).
        confidence: Required probability of meeting the budget, in (0, 1).
        max_params: Largest parameter count allowed (>= 1), or None for no cap.

    Returns:
        The chosen candidate and its probability of meeting the budget.

    Raises:
        ValueError: On a non-positive budget, a confidence outside (0, 1), a ``max_params`` that
            is not a positive integer, or a cap on candidates without parameter counts.
        NothingFitsError: If no candidate is feasible; the message says which constraint ruled the
            candidates out (its :attr:`~NothingFitsError.field`), naming the fastest candidate or
            the smallest one.
    """
    budget = float(latency_budget_ms)
    if not np.isfinite(budget) or budget <= 0:
        raise ValueError(f"latency_budget_ms must be a positive number, got {latency_budget_ms}")
    confidence = check_confidence(confidence)
    cap = check_max_params(max_params)
    params = None if cap is None else candidates._checked_params("max_params")
    if len(candidates) == 0:
        raise NothingFitsError("there are no candidates to choose from")
    # mean + z * std <= budget is the same test as Phi((budget - mean) / std) >= confidence, without
    # the saturation of Phi far in the tails.
    upper = candidates.latency_ms + ndtri(confidence) * candidates.latency_std
    fits_latency = upper <= budget
    fits_params = np.ones(len(candidates), bool) if params is None else params <= cap
    feasible = fits_latency & fits_params
    if not feasible.any():
        raise _nothing_fits(candidates, budget, confidence, cap, fits_latency, fits_params)
    index = np.flatnonzero(feasible)
    # Highest score first, then lowest latency.
    best = index[np.lexsort((candidates.latency_ms[index], -candidates.score[index]))[0]]
    window = slice(best, best + 1)
    p_best = _p_within(budget, candidates.latency_ms[window], candidates.latency_std[window])
    return Choice(candidates.point(int(best)), float(p_best[0]))


def _nothing_fits(
    candidates: CandidateSet,
    budget: float,
    confidence: float,
    cap: int | None,
    fits_latency: np.ndarray,
    fits_params: np.ndarray,
) -> NothingFitsError:
    """Why no candidate meets both constraints: the latency budget, the parameter cap, or each
    excludes the candidates that the other leaves."""
    latency, std = candidates.latency_ms, candidates.latency_std
    wanted = f"P(latency <= {budget:g} ms) >= {confidence:g}"
    if cap is not None and candidates.params is not None:
        params = candidates.params
        if not fits_params.any():
            smallest = int(np.argmin(params))
            return NothingFitsError(
                f"no candidate has at most {cap:,} parameters (max_params): the smallest, "
                f"{candidates.archs[smallest]}, has {int(params[smallest]):,}",
                "max_params",
            )
        if fits_latency.any():
            within = np.flatnonzero(fits_params)
            fastest = int(within[np.argmin(latency[within])])
            p = _p_within(budget, latency[fastest : fastest + 1], std[fastest : fastest + 1])[0]
            return NothingFitsError(
                f"the parameter cap rules out every subnet with {wanted}: the smallest of them has "
                f"{int(params[fits_latency].min()):,} parameters, more than max_params = {cap:,}; the "
                f"fastest candidate within the cap is predicted at {latency[fastest]:.4g} ± "
                f"{std[fastest]:.2g} ms (P = {p:.3g})",
                "max_params",
            )
    p = _p_within(budget, latency, std)
    most_likely = int(np.argmax(p))
    fastest = int(np.argmin(latency))
    return NothingFitsError(
        f"no subnet has {wanted}; the fastest candidate is predicted at {latency[fastest]:.4g} ± "
        f"{std[fastest]:.2g} ms, and the most likely to fit has P = {p[most_likely]:.3g}"
    )
