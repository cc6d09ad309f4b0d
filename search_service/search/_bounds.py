"""Predicted scores kept within the bounds of the score's label (e.g. ranks 0-499 on ufo-track2).

A Gaussian posterior ``N(mean, std^2)`` can reach beyond the values a score can take: a GP that
extrapolates past the best measured rank predicts ranks above 499. The score actually observed
lies within the bounds, so the search reports the moments of the posterior censored to them,
``clip(Y, low, high)``: its mean lies within the bounds, the std shrinks where the posterior
presses against a bound, and its quantiles are the Gaussian quantiles clipped to the bounds.
Of two posteriors with the same std the higher mean keeps the higher censored mean, so the
ranking of subnets is kept, except among posteriors so far beyond a bound that all sit on it.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

# Beyond 40 standard deviations the normal's tail mass and density are 0 in float64; clamping the
# standardised bounds there keeps an absent bound (an infinite one) from making inf * 0 terms.
_FAR = 40.0
_INV_SQRT_2PI = 0.3989422804014327


def bounded_score(
    mean: np.ndarray, std: np.ndarray, bounds: tuple[float | None, float | None]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of ``clip(Y, low, high)`` for ``Y ~ N(mean, std^2)``.

    Args:
        mean: Posterior means, shape ``n``.
        std: Posterior stds (>= 0), shape ``n``.
        bounds: ``(low, high)`` of the score (:attr:`supernet.SearchSpace.score_bounds`); None
            leaves that side unbounded.

    Returns:
        The censored means (within the bounds) and stds, each of shape ``n``; the inputs
        unchanged when neither bound is given.
    """
    low, high = bounds
    if low is None and high is None:
        return mean, std
    lo = -np.inf if low is None else float(low)
    hi = np.inf if high is None else float(high)
    positive = std > 0
    safe_std = np.where(positive, std, 1.0)
    a = np.clip((lo - mean) / safe_std, -_FAR, _FAR)
    b = np.clip((hi - mean) / safe_std, -_FAR, _FAR)
    cdf_a, tail_b = ndtr(a), ndtr(-b)
    pdf_a, pdf_b = _INV_SQRT_2PI * np.exp(-0.5 * a**2), _INV_SQRT_2PI * np.exp(-0.5 * b**2)
    # Moments of clip(Z, a, b) for a standard normal Z: the bounds' masses sit at the bounds.
    first = a * cdf_a + b * tail_b + pdf_a - pdf_b
    second = a**2 * cdf_a + b**2 * tail_b + (1.0 - cdf_a - tail_b) + a * pdf_a - b * pdf_b
    censored_mean = np.clip(mean + std * first, lo, hi)
    censored_std = std * np.sqrt(np.clip(second - first**2, 0.0, 1.0))
    return (
        np.where(positive, censored_mean, np.clip(mean, lo, hi)),
        np.where(positive, censored_std, 0.0),
    )
