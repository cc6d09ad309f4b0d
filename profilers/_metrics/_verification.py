"""Pair verification: LFW's k-fold threshold protocol and the ``verification`` metric."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ._data import EvalOutputs
from ._distances import Distance, as_float, pair_distances
from ._protocol import MetricResult, TaskMetric, standard_error


def kfold_indices(n: int, folds: int) -> list[np.ndarray]:
    """The ``folds`` contiguous folds of ``n`` pairs, in order; the first ``n % folds`` one larger.

    ``sklearn.model_selection.KFold(folds, shuffle=False)``'s test folds, which UFO's
    ``face_evaluation.py`` uses: on LFW's ``pairs.txt`` (10 sets of 300 same + 300 different
    pairs, in order) they are the official 10 splits of the unrestricted protocol.
    """
    if folds < 2 or n < folds:
        raise ValueError(f"{folds}-fold evaluation needs folds >= 2 and at least {folds} pairs, got {n}")
    return np.array_split(np.arange(n), folds)


def best_threshold(distances: np.ndarray, same: np.ndarray, thresholds: np.ndarray | None = None) -> float:
    """The threshold ``t`` that maximises the accuracy of "same iff distance < t" on these pairs.

    ``thresholds=None``: the exact optimum over every threshold, found from the sorted distances
    (candidates: the midpoints between consecutive distinct distances, and one below and one above
    them all); the released code scans a grid (``np.arange(0, 4, 0.01)`` on squared distances of
    L2-normalised embeddings), which can only find as good or fewer. Given ``thresholds``: the best
    of those. Either way the smallest of equally good thresholds wins, as ``np.argmax`` does there.
    """
    d, s = np.asarray(distances, dtype=np.float64), np.asarray(same, dtype=bool)
    if thresholds is not None:
        grid = np.asarray(thresholds, dtype=np.float64)
        accuracy = ((d[None, :] < grid[:, None]) == s[None, :]).mean(1)
        return float(grid[int(np.argmax(accuracy))])
    order = np.argsort(d, kind="stable")
    ds, ss = d[order], s[order]
    n = ds.size
    # Predicting "same" for the i closest pairs (i = 0..n) gets same[:i] + different[i:] right.
    same_before = np.concatenate([[0], np.cumsum(ss)])
    different_before = np.concatenate([[0], np.cumsum(~ss)])
    correct = same_before + (different_before[-1] - different_before)
    cut_allowed = np.ones(n + 1, dtype=bool)
    cut_allowed[1:n] = ds[1:] > ds[:-1]  # a cut between equal distances is no threshold
    i = int(np.argmax(np.where(cut_allowed, correct, -1)))
    if i == 0:
        return float(ds[0])  # nothing is below it: every pair "different"
    if i == n:
        return float(np.nextafter(ds[-1], np.inf))  # every pair "same"
    return float((ds[i - 1] + ds[i]) / 2)


def verification_folds(
    distances: np.ndarray | Tensor,
    same: np.ndarray | Tensor,
    folds: int = 10,
    thresholds: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LFW's k-fold protocol on pair distances: per fold, the threshold that is best on the other
    ``folds - 1`` folds (:func:`best_threshold`) and the accuracy it gets on the held-out fold
    (UFO's ``face_evaluation.py``, ``calculate_roc``; predicted same iff distance < threshold).

    Returns:
        ``(accuracy, threshold)``, one entry per fold each.
    """
    d = np.asarray(torch.as_tensor(distances).detach().cpu(), dtype=np.float64)
    s = np.asarray(torch.as_tensor(same).detach().cpu(), dtype=bool)
    if d.shape != s.shape or d.ndim != 1:
        raise ValueError(f"distances and same must be two vectors of one length, got {d.shape} and {s.shape}")
    accuracy, chosen = np.zeros(folds), np.zeros(folds)
    everything = np.arange(d.size)
    for fold, test in enumerate(kfold_indices(d.size, folds)):
        train = np.setdiff1d(everything, test, assume_unique=True)
        chosen[fold] = best_threshold(d[train], s[train], thresholds)
        accuracy[fold] = np.mean((d[test] < chosen[fold]) == s[test])
    return accuracy, chosen


class VerificationMetric(TaskMetric):
    """Pair verification accuracy under LFW's k-fold protocol (:func:`verification_folds`):
    per fold, the threshold best on the other folds is applied to the held-out fold; the value is
    the mean fold accuracy and ``std`` its standard error ``sigma / sqrt(k)`` (``sigma`` with
    ``k - 1`` degrees of freedom), as LFW asks results to be reported.

    Args:
        distance: Default ``cosine``: UFO's face evaluator L2-normalises the embeddings and
            thresholds their squared Euclidean distance, ``2 * (1 - cos)``, which separates pairs
            exactly as the cosine distance does.
        folds: Number of folds (LFW: 10).
    """

    name: ClassVar[str] = "verification"
    requires: tuple[str, ...] = ("pair_outputs", "same")
    uses_distance: ClassVar[bool] = True

    def __init__(self, distance: Distance | None = None, folds: int = 10) -> None:
        super().__init__(distance)
        self.folds = folds

    def compute(self, out: EvalOutputs) -> MetricResult:
        assert out.pair_outputs is not None
        assert out.same is not None
        assert self.distance is not None
        distances = pair_distances(as_float(out.outputs), as_float(out.pair_outputs), self.distance)
        accuracy, thresholds = verification_folds(distances, out.same, self.folds)
        mean = float(accuracy.mean())
        values = {
            "accuracy": mean,
            "accuracy_std": float(np.std(accuracy, ddof=1)),
            "threshold": float(thresholds.mean()),
            "pairs": float(len(out)),
        }
        return MetricResult(mean, standard_error(accuracy), len(out), "accuracy", values)
