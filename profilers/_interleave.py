"""Interleaved, reference-normalised timing of a batch of models.

Timing subnets one after another turns a shared machine's drift into the data: a subnet timed
during a slow phase reads slow. Following Google Benchmark's random interleaving of repetitions
and HELP's fixed reference architectures, a batch is timed in *rounds*: every round times each
model once, in a fresh random order, together with one fixed reference model. Drift between
rounds then moves every model of a round alike, and dividing by that round's reference time
cancels it:

    estimate_i = median_r(t_ir / ref_r) * median_r(ref_r)

Rounds whose reference time is a robust outlier (a burst from a neighbour) are dropped. The
reference's spread across rounds is the batch's drift, recorded on every measurement.

The functions here know nothing about models: runners are callables returning milliseconds,
and the clock is injected, so the protocol is tested without real timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ._timing import median_rse, robust_std

Estimator = Literal["normalised", "raw"]
ESTIMATORS: tuple[Estimator, ...] = ("normalised", "raw")
# Modified z-score cut-off of Iglewicz and Hoaglin: |x - median| > 3.5 * 1.4826 * MAD.
_OUTLIER_Z = 3.5


@dataclass(frozen=True)
class RoundTimings:
    """Raw timings of one interleaved chunk (milliseconds).

    Attributes:
        times: ``m x R``: model ``i``'s time in round ``r``.
        reference: ``R``: the reference's time in each round.
        seconds: Wall time spent in the timed rounds.
    """

    times: np.ndarray
    reference: np.ndarray
    seconds: float

    @property
    def rounds(self) -> int:
        return int(self.reference.size)


@dataclass(frozen=True)
class InterleavedEstimate:
    """One model's latency from interleaved rounds.

    Attributes:
        value: The estimate (ms) by the chosen estimator.
        normalised: ``median(t / ref) * median(ref)`` over the kept rounds.
        raw: Median of the model's own times over the kept rounds.
        std: Robust std (``1.4826 * MAD``) of the per-round values the estimator takes the median of.
        rse: Relative standard error of ``value``, ``1.2533 * std / sqrt(rounds) / value``.
        p10: 10th percentile of the per-round values (kept rounds).
        p90: 90th percentile of the per-round values (kept rounds).
        rounds: Rounds used.
        dropped: Rounds dropped because the reference was an outlier in them.
        samples: Raw times of the kept rounds, in round order.
    """

    value: float
    normalised: float
    raw: float
    std: float
    rse: float
    p10: float
    p90: float
    rounds: int
    dropped: int
    samples: tuple[float, ...]


@dataclass(frozen=True)
class ReferenceSummary:
    """How the reference behaved across every round of a batch (the batch's drift).

    Attributes:
        median: Median reference time over all rounds (ms); estimates are scaled to it.
        spread: ``(p90 - p10) / median`` of the reference times over all rounds.
        rounds: Rounds timed (all chunks).
        dropped: Rounds dropped as outliers.
    """

    median: float
    spread: float
    rounds: int
    dropped: int


def outlier_rounds(reference: np.ndarray) -> np.ndarray:
    """Mask of rounds whose reference time is a robust outlier (modified z-score > 3.5).

    Never drops half of the rounds or more: then the "outliers" are the machine's normal state.
    The scale is at least 1% of the median, so that near-identical rounds (a MAD of ~0) do not
    turn a 1% wobble into an outlier.
    """
    centre = float(np.median(reference))
    scale = max(robust_std(reference), 0.01 * centre)
    if scale <= 0:
        return np.zeros(reference.size, dtype=bool)
    z = np.abs(reference - centre) / scale
    mask = z > _OUTLIER_Z
    if 2 * int(mask.sum()) >= reference.size:
        return np.zeros(reference.size, dtype=bool)
    return mask


def _relative_se(per_round: np.ndarray) -> float:
    return median_rse(float(np.median(per_round)), robust_std(per_round), per_round.size)


def time_rounds(
    runners: Sequence[Callable[[], float]],
    reference: Callable[[], float],
    rng: np.random.Generator,
    warmup: int = 3,
    min_rounds: int = 5,
    max_rounds: int = 30,
    target_rse: float = 0.01,
    max_seconds: float = 60.0,
    clock: Callable[[], float] = time.perf_counter,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 10.0,
) -> RoundTimings:
    """Time ``runners`` and ``reference`` in interleaved rounds until every estimate is stable.

    Each runner (and the reference) is called ``warmup`` times untimed, then each round calls
    all of them once in a fresh random order. After ``min_rounds`` rounds the loop stops as soon
    as every runner's reference-normalised estimate has a relative standard error
    ``<= target_rse``, after ``max_rounds`` rounds, or once ``max_seconds`` of wall time have
    been spent in rounds, whichever comes first.

    Args:
        runners: Each runs its model once and returns the duration in milliseconds.
        reference: The reference model's runner, timed in every round.
        rng: Draws each round's order.
        clock: Wall clock (seconds) for the ``max_seconds`` cap.
        progress: Told, at most every ``progress_every_s``, how many rounds are done and at most
            how long the rest takes (a batch on a busy machine can take many minutes).

    Returns:
        The raw :class:`RoundTimings`.

    Raises:
        ValueError: If ``runners`` is empty or the round limits are inconsistent.
    """
    if not runners:
        raise ValueError("an interleaved batch needs at least one model to time")
    if min_rounds < 1 or max_rounds < min_rounds:
        raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {min_rounds} and {max_rounds}")
    everyone = [*runners, reference]
    for _ in range(warmup):
        for run in everyone:
            run()
    rounds: list[np.ndarray] = []
    start = told = clock()
    while len(rounds) < max_rounds:
        row = np.empty(len(everyone))
        for j in rng.permutation(len(everyone)):
            row[j] = float(everyone[j]())
        rounds.append(row)
        if progress is not None and (now := clock()) - told >= progress_every_s:
            told, elapsed = now, now - start
            left = min(elapsed / len(rounds) * (max_rounds - len(rounds)), max(0.0, max_seconds - elapsed))
            progress(
                f"round {len(rounds)} of at most {max_rounds} ({len(runners)} models and the reference): "
                f"{elapsed:.0f} s so far, at most {left:.0f} s left"
            )
        if len(rounds) >= min_rounds:
            block = np.stack(rounds, 1)  # (m + 1) x R
            ratios = block[:-1] / block[-1]
            if max(_relative_se(r) for r in ratios) <= target_rse or clock() - start >= max_seconds:
                break
    block = np.stack(rounds, 1)
    return RoundTimings(times=block[:-1], reference=block[-1], seconds=clock() - start)


def summarise_reference(chunks: Sequence[RoundTimings]) -> ReferenceSummary:
    """The batch's reference statistics over the rounds of all ``chunks``."""
    reference = np.concatenate([c.reference for c in chunks])
    dropped = sum(int(outlier_rounds(c.reference).sum()) for c in chunks)
    median = float(np.median(reference))
    p10, p90 = np.percentile(reference, [10, 90])
    return ReferenceSummary(median, float((p90 - p10) / median), int(reference.size), dropped)


def estimate_rounds(
    chunk: RoundTimings, reference_median: float, estimator: Estimator = "normalised"
) -> list[InterleavedEstimate]:
    """Per-model estimates of one chunk, scaled to the whole batch's ``reference_median``.

    Args:
        chunk: Timings of the chunk.
        reference_median: Median reference time over the whole batch (every chunk), so that
            models timed in different chunks are on one scale.
        estimator: ``normalised`` (median of time / round's reference, times
            ``reference_median``) or ``raw`` (median of the model's own times).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {list(ESTIMATORS)}")
    keep = ~outlier_rounds(chunk.reference)
    times, reference = chunk.times[:, keep], chunk.reference[keep]
    n = int(keep.sum())
    out = []
    for row in times:
        per_round = row / reference * reference_median if estimator == "normalised" else row
        value = float(np.median(per_round))
        std = robust_std(per_round)
        rse = median_rse(value, std, n)
        p10, p90 = np.percentile(per_round, [10, 90])
        out.append(
            InterleavedEstimate(
                value=value,
                normalised=float(np.median(row / reference)) * reference_median,
                raw=float(np.median(row)),
                std=std,
                rse=rse,
                p10=float(p10),
                p90=float(p90),
                rounds=n,
                dropped=chunk.rounds - n,
                samples=tuple(float(v) for v in row),
            )
        )
    return out
