"""Pareto utilities on objective matrices where every column is maximised.

Minimised quantities (latency) enter negated. Non-domination uses botorch's
:func:`~botorch.utils.multi_objective.pareto.is_non_dominated` on small inputs. Large inputs
(a search archive of 1e5 points, an enumeration of up to 1e6) use methods that give the same
answer without botorch's ``O(n^2)`` loop: an ``O(n log n)`` sort sweep for two objectives, and
for more a greedy peel whose cost is ``O(n)`` per front point.
"""

from __future__ import annotations

import numpy as np
import torch
from botorch.utils.multi_objective.pareto import is_non_dominated

_LARGE = 1_000  # botorch switches to its Python loop above this size


def _as_matrix(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"objectives must be an n x m matrix, got shape {Y.shape}")
    if not np.isfinite(Y).all():
        raise ValueError("objectives contain NaN or infinite values")
    return Y


def _pareto_mask_2d(Y: np.ndarray, deduplicate: bool) -> np.ndarray:
    # Sort by the first objective descending, ties by the second descending: a point is
    # non-dominated iff its second objective beats every earlier point's (ties with an equal
    # twin are kept unless deduplicating).
    order = np.lexsort((-Y[:, 1], -Y[:, 0]))
    a, b = Y[order, 0], Y[order, 1]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(b)[:-1]))
    same_as_prev = np.concatenate(([False], (a[1:] == a[:-1]) & (b[1:] == b[:-1])))
    keep = b > best_before
    if not deduplicate:
        # An exact twin of a kept point is also non-dominated; twins are adjacent after the sort.
        for i in np.flatnonzero(same_as_prev):
            keep[i] = keep[i - 1]
    mask = np.zeros(len(Y), dtype=bool)
    mask[order] = keep
    return mask


def _pareto_mask_greedy(Y: np.ndarray, deduplicate: bool) -> np.ndarray:
    # Take the remaining row with the largest normalised sum: no remaining row can dominate it
    # (a dominating row has a larger sum; the explicit check guards against rounding). It is on
    # the front; drop every row it weakly dominates, which by transitivity includes every row
    # that any dropped row dominates. One pass per front point.
    span = np.ptp(Y, 0)
    strength = ((Y - Y.min(0)) / np.where(span > 0, span, 1.0)).sum(1)
    mask = np.zeros(len(Y), dtype=bool)
    remaining = np.arange(len(Y))
    while remaining.size:
        Yr = Y[remaining]
        best = int(np.argmax(strength[remaining]))
        while True:
            dominators = np.flatnonzero((Yr >= Yr[best]).all(1) & (Yr > Yr[best]).any(1))
            if dominators.size == 0:
                break
            best = int(dominators[np.argmax(strength[remaining[dominators]])])
        mask[remaining[best]] = True
        if not deduplicate:
            mask[remaining[(Yr == Yr[best]).all(1)]] = True
        remaining = remaining[~(Yr <= Yr[best]).all(1)]
    return mask


def pareto_mask(Y: np.ndarray, deduplicate: bool = True) -> np.ndarray:
    """Which rows of ``Y`` are non-dominated (every column maximised).

    Args:
        Y: Objectives, shape ``n x m``.
        deduplicate: Keep only the first of several identical non-dominated rows.

    Returns:
        Boolean mask, shape ``n``.
    """
    Y = _as_matrix(Y)
    if len(Y) == 0:
        return np.zeros(0, dtype=bool)
    if len(Y) >= _LARGE:
        return _pareto_mask_2d(Y, deduplicate) if Y.shape[1] == 2 else _pareto_mask_greedy(Y, deduplicate)
    return is_non_dominated(torch.from_numpy(Y), deduplicate=deduplicate).numpy()


def non_dominated_sort(Y: np.ndarray) -> np.ndarray:
    """Front index of every row (0 = non-dominated, 1 = non-dominated once front 0 is removed, ...).

    Deb's fast non-dominated sort on a dense ``n x n`` dominance matrix, peeling a front at a time
    by domination counts (NSGA-II sorts a few hundred points per generation).

    Args:
        Y: Objectives, shape ``n x m`` (maximised).

    Returns:
        Integer ranks, shape ``n``; identical rows share a rank.
    """
    Y = _as_matrix(Y)
    # weakly[i, j]: row i is >= row j everywhere, built one column at a time (reducing a length-m
    # last axis of an n x n x m array is several times slower). Row i dominates row j when it is
    # weakly better and j is not weakly better than i (which would make them equal).
    weakly = np.ones((len(Y), len(Y)), dtype=bool)
    for k in range(Y.shape[1]):
        weakly &= Y[:, None, k] >= Y[None, :, k]
    dominates = weakly & ~weakly.T
    count = dominates.sum(0)
    ranks = np.full(len(Y), -1, dtype=np.int64)
    rank = 0
    front = np.flatnonzero(count == 0)
    while front.size:
        ranks[front] = rank
        count = count - dominates[front].sum(0)
        count[front] = -1  # never picked again
        front = np.flatnonzero(count == 0)
        rank += 1
    return ranks


def crowding_distance(Y: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance, computed within each front.

    Args:
        Y: Objectives, shape ``n x m``.
        ranks: Front index of each row, shape ``n`` (from :func:`non_dominated_sort`).

    Returns:
        Distances, shape ``n``; the extremes of every front get ``inf``.
    """
    Y = _as_matrix(Y)
    distance = np.zeros(len(Y))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        if members.size <= 2:
            distance[members] = np.inf
            continue
        for k in range(Y.shape[1]):
            values = Y[members, k]
            order = np.argsort(values, kind="stable")
            span = values[order[-1]] - values[order[0]]
            distance[members[order[0]]] = distance[members[order[-1]]] = np.inf
            if span > 0:
                gaps = (values[order[2:]] - values[order[:-2]]) / span
                distance[members[order[1:-1]]] += gaps
    return distance


def hypervolume(points: np.ndarray, ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` on (score maximised, latency minimised), bounded by ``ref``.

    Args:
        points: ``n x 2`` array of ``(score, latency_ms)``.
        ref: ``(score_ref, latency_ref)``: the worst score and the slowest latency that count.
            Points with score <= ``score_ref`` or latency >= ``latency_ref`` add nothing.

    Returns:
        The hypervolume (area) as a float; 0.0 for no points.
    """
    P = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    score_ref, latency_ref = float(ref[0]), float(ref[1])
    P = P[(P[:, 0] > score_ref) & (P[:, 1] < latency_ref)]
    if len(P) == 0:
        return 0.0
    front = P[pareto_mask(np.column_stack([P[:, 0], -P[:, 1]]))]
    front = front[np.argsort(front[:, 1], kind="stable")]  # latency ascending, so score ascending
    steps = np.diff(np.concatenate(([score_ref], front[:, 0])))
    return float(np.sum(steps * (latency_ref - front[:, 1])))
