"""The rule that marks measured values as impossible, so that refits skip them.

One accepted absurd value (a latency of 1e308 ms from an overflowed timer, a score of 1e300 from a
corrupt table) would otherwise make every fit of its target return non-finite predictions, and its
fronts could never be computed. A value is impossible when it is

* beyond :data:`MAX_MAGNITUDE` in magnitude (a latency: also below its inverse, as the fit takes
  logs), where float64 arithmetic in the fit (variances, second moments) overflows; or
* farther than :data:`K_ROBUST` robust standard deviations from the median of its target's values,
  on the log scale for latencies (as they are fitted) and as they are for scores, once the target
  has :data:`MIN_VALUES` values. The robust standard deviation
  is ``1.4826 * MAD`` (the median absolute deviation; 1.4826 makes it the standard deviation of
  normal data), at least :data:`LOG_FLOOR` on the log scale and ``SCORE_FLOOR * |median|`` for
  scores, so that a few near-identical first values do not make every other value an outlier.

Values that are wrong but possible (a unit mix-up, a busy machine) are beyond any automatic rule:
retract them with ``DELETE /v1/measurements/{id}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Robust standard deviations from the median beyond which a value is impossible. Real data sits
#: far inside: the widest latency table of ``../shared/data`` (nasbench201 on raspi4, whose subnets
#: without convolutions take 0.011 ms against a 26 ms median) reaches 12.2 on the log scale. The
#: limit leaves a wide margin for targets spread wider still (scores of broken subnets), while a
#: 1e308 ms latency lies hundreds of robust standard deviations out.
K_ROBUST = 50.0
#: Fewer values than this say too little about the spread: only :data:`MAX_MAGNITUDE` applies.
MIN_VALUES = 8
#: Beyond this magnitude (for latencies: outside it and its inverse) squares overflow float64.
MAX_MAGNITUDE = 1e150
#: The least robust standard deviation on the log scale: subnets' timings rarely spread less.
LOG_FLOOR = 0.1
#: The least robust standard deviation of scores, relative to their median's magnitude.
SCORE_FLOOR = 0.1
_MAD_TO_STD = 1.4826
_LOG_LIMIT = math.log(MAX_MAGNITUDE)


def impossible(values: Sequence[float], log_scale: bool) -> list[str | None]:
    """Why each of a target's values is impossible (see the module docstring), or None.

    Args:
        values: Every value of one target (a device's latencies or a task's scores), one per
            measurement (not averaged: an average would spread one absurd value over its subnet).
        log_scale: Judge on ``log(value)``, as latencies are fitted; scores are judged as they are.

    Returns:
        One entry per value: None for a possible value, else the reason it is impossible.
    """
    reasons: list[str | None] = [None] * len(values)
    scaled: dict[int, float] = {}
    limit = _LOG_LIMIT if log_scale else MAX_MAGNITUDE
    for i, value in enumerate(values):
        if not math.isfinite(value) or (log_scale and value <= 0):
            reasons[i] = "not a finite positive number" if log_scale else "not a finite number"
            continue
        scale_value = math.log(value) if log_scale else value
        if abs(scale_value) > limit:
            bounds = f"{1 / MAX_MAGNITUDE:g}..{MAX_MAGNITUDE:g}" if log_scale else f"±{MAX_MAGNITUDE:g}"
            reasons[i] = f"outside {bounds}, where a fit overflows"
        else:
            scaled[i] = scale_value
    if len(scaled) < MIN_VALUES:
        return reasons
    g = np.fromiter(scaled.values(), dtype=np.float64)
    median = float(np.median(g))
    floor = LOG_FLOOR if log_scale else SCORE_FLOOR * abs(median)
    spread = max(_MAD_TO_STD * float(np.median(np.abs(g - median))), floor)
    if spread == 0.0:  # most values equal and a median of 0: nothing to measure distances by
        return reasons
    center = math.exp(median) if log_scale else median
    for i, gi in scaled.items():
        z = abs(gi - median) / spread
        if z > K_ROBUST:
            reasons[i] = (
                f"{z:.0f} robust standard deviations from the target's median {center:.4g}"
                f"{' on the log scale' if log_scale else ''} (limit {K_ROBUST:g})"
            )
    return reasons
