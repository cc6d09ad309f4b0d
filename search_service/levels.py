"""A device's long-run reference level, and values rescaled to it.

Every latency batch times a fixed reference subnet in each of its rounds (see
:mod:`profilers._interleave`); the batch's *reference level* is the reference's median time
across those rounds. A subnet's estimate is its median time relative to the round's reference,
times that level, so drift *within* a batch cancels. Drift *between* batches does not: a batch
run in a slow phase of the machine (a busy neighbour, a lower clock) has a higher reference level
and every value of it reads slower by the same factor. Rescaling each value by
``long_run / batch level`` puts all batches of a device on one level, the device's long-run
level, which is what budgets are checked against.

Pure arithmetic, shared by the service (:mod:`search_service.repositories`, which rescales when it
reads) and ``gpnas profile`` (its local level file, which rescales when it writes).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

#: A batch whose reference level lies further than this (relative) from the device's long-run
#: level is reported. A batch's reference median over 7-15 rounds is itself known to about 1% (the
#: rounds' RSE target), so 10% is a change of the machine's phase, not estimation noise; on the
#: shared 2-core machine of benchmarks/results/repeatability_levels.md passes moved 14-122%.
DEFAULT_SHIFT_THRESHOLD = 0.10


def long_run_level(batch_levels: Iterable[float]) -> float | None:
    """The median of the batches' reference levels (one value per batch), or None without any.

    The median, not the mean: one batch in a burst of load moves it at most to the neighbouring
    batch's level.
    """
    levels = list(batch_levels)
    return statistics.median(levels) if levels else None


def shift(batch_level: float, long_run: float) -> float:
    """How far ``batch_level`` lies from ``long_run``, relative: +0.12 is 12% slower."""
    return batch_level / long_run - 1.0


def rescale_factor(batch_level: float | None, long_run: float | None) -> float:
    """What a batch's values are multiplied by to bring them to the long-run level.

    1 where either is unknown: values measured without a reference (imported tables, rows from
    before levels were stored) are used as measured.
    """
    if batch_level is None or long_run is None or batch_level <= 0:
        return 1.0
    return long_run / batch_level


@dataclass(frozen=True)
class LevelShift:
    """A batch whose reference level moved beyond the threshold from the long-run level.

    Attributes:
        reference_arch: The reference subnet.
        batch_ms: The batch's reference level (ms).
        long_run_ms: The long-run level it was compared with (ms).
        shift: ``batch_ms / long_run_ms - 1``.
    """

    reference_arch: str
    batch_ms: float
    long_run_ms: float
    shift: float


def check_shift(
    reference_arch: str, batch_ms: float, long_run_ms: float | None, threshold: float
) -> LevelShift | None:
    """The :class:`LevelShift` of a batch if it moved more than ``threshold``, else None (also
    when there is no long-run level yet: the first batch defines it)."""
    if long_run_ms is None:
        return None
    moved = shift(batch_ms, long_run_ms)
    if abs(moved) <= threshold:
        return None
    return LevelShift(reference_arch, batch_ms, long_run_ms, moved)
