"""Training data: one target's measurements (or every target's) as fits read them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from ..domain import Metric
from ..levels import rescale_factor
from ..models import Measurement
from ..outliers import impossible
from ._levels import long_run_levels
from ._measurements import LIVE, DataVersion, fitted_only, previous_scores, target_column, target_conditions


class Skipped(NamedTuple):
    """A measurement that fits leave out as impossible, and why."""

    id: int
    value: float
    reason: str


class TrainingData(NamedTuple):
    """One target's training set; see :func:`training_data`."""

    archs: list[str]
    values: list[float]
    stds: list[float]
    version: DataVersion
    skipped: list[Skipped]


# (p90 - p10) of a normal distribution is 2.5631 standard deviations.
_P10_P90_SIGMAS = 2.5631
# A larger variance would overflow once summed over an arch's measurements.
_MAX_VARIANCE = 1e300
# A result row of any number of columns (``Row[Any]`` would be a row of exactly one).
_AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"
_FIT_COLUMNS = (
    Measurement.id,
    Measurement.arch,
    Measurement.value,
    Measurement.std,
    Measurement.repeats,
    Measurement.flagged,
    Measurement.drift,
    Measurement.reference_arch,
    Measurement.reference_ms,
)


class _FitRow(NamedTuple):
    """A measurement as fits see it: value and std rescaled to its device's long-run level."""

    id: int
    arch: str
    value: float
    std: float | None
    repeats: int | None
    flagged: bool
    drift: float | None
    measured: float  # the stored value, as sent
    target: str


def _rescaled(
    rows: Sequence[_AnyRow], long_run: dict[tuple[str, str], float], target: str | None = None
) -> list[_FitRow]:
    """``rows`` (:data:`_FIT_COLUMNS`, and a ``target`` column unless ``target`` is given) with each
    batch's value and std multiplied by ``long_run[(target, reference_arch)] / reference_ms``;
    rows without a level (scores, imported tables, rows from before levels were stored) keep
    their values."""
    out = []
    for row in rows:
        name = row.target if target is None else target
        level = long_run.get((name, row.reference_arch)) if row.reference_arch is not None else None
        factor = rescale_factor(row.reference_ms, level)
        std = None if row.std is None else row.std * factor
        value = row.value * factor
        out.append(
            _FitRow(row.id, row.arch, value, std, row.repeats, row.flagged, row.drift, row.value, name)
        )
    return out


def _variance(
    value: float, std: float | None, repeats: int | None, flagged: bool, drift: float | None
) -> float:
    """A measurement's squared standard error (see :func:`training_data`); inf if it overflows."""
    # Products, not ** : a float power raises OverflowError where a product gives inf.
    variance = 0.0
    if std and repeats:
        error = 1.2533 * std
        variance = error * error / repeats
    if flagged and drift:
        spread = drift * value / _P10_P90_SIGMAS
        variance += spread * spread
    return variance


def _usable(rows: Sequence[_FitRow], metric: str) -> tuple[list[tuple[_FitRow, float]], list[Skipped]]:
    """One target's rows that fits may use, each with its variance, and the impossible ones
    (:mod:`.outliers`, or a standard error that overflows) they skip."""
    reasons = impossible([row.value for row in rows], log_scale=metric == Metric.LATENCY)
    kept: list[tuple[_FitRow, float]] = []
    skipped: list[Skipped] = []
    for row, reason in zip(rows, reasons, strict=True):
        variance = _variance(row.value, row.std, row.repeats, row.flagged, row.drift)
        if reason is None and not variance <= _MAX_VARIANCE:
            reason = "its standard error overflows"
        if reason is None:
            kept.append((row, variance))
        else:
            skipped.append(Skipped(row.id, row.measured, reason))
    return kept, skipped


def training_data(session: Session, space: str, metric: str, target: str) -> TrainingData:
    """Arch strings, values and standard errors of one target (device for latency, task for score).

    Retracted measurements are left out, and so are impossible values (:func:`_usable`), which
    are returned in ``skipped``. Repeated measurements of an arch are averaged. A measurement's
    standard error is ``1.2533 * std / sqrt(repeats)`` (the median's); for a measurement whose
    batch was flagged for drift, the drift's spread is added as one more error term (its
    ``(p90 - p10)`` taken as 2.56 standard deviations, relative to the value), so refits trust it
    less. Measurements without std or repeats (e.g. imported tables) count 0: the learned noise
    covers them. Latencies timed with a reference are rescaled to the device's long-run level
    first (value and std times ``long_run / reference_ms``, see :func:`long_run_levels`), so that
    a batch timed in a slow phase of the machine does not move its subnets; the stored values
    stay as measured.

    Returns:
        Unique archs (sorted), the mean of their measurements, the standard error of that mean
        in the value's units, the target's :class:`DataVersion` (skipped measurements included:
        they are part of the data looked at, to tell later whether it changed), and the skipped.
    """
    rows = session.execute(
        select(*_FIT_COLUMNS)
        .where(*target_conditions(space, metric, target))
        .order_by(Measurement.arch, Measurement.id)
    ).all()
    levels = long_run_levels(session, space, target) if metric == Metric.LATENCY else {}
    kept, skipped = _usable(_rescaled(rows, levels, target), metric)
    grouped: dict[str, list[tuple[float, float]]] = {}
    for row, variance in kept:
        grouped.setdefault(row.arch, []).append((row.value, variance))
    archs = list(grouped)
    values = [sum(v for v, _ in grouped[a]) / len(grouped[a]) for a in archs]
    stds = [math.sqrt(sum(var for _, var in grouped[a])) / len(grouped[a]) for a in archs]
    version = DataVersion(max((row.id for row in rows), default=0), len(rows))
    return TrainingData(archs, values, stds, version, skipped)


def training_matrix(
    session: Session, space: str, metric: str, exclude: str | None = None, borrowing: str | None = None
) -> tuple[list[str], list[str], list[list[float]]]:
    """Every target of ``metric`` in ``space`` (but ``exclude``) as one matrix, for transfer.

    Like :func:`training_data`, it leaves out retracted measurements and impossible values,
    rescales latencies to their device's long-run level and reads each task's scores of one
    supernet version (:func:`~._measurements.target_conditions`). With ``borrowing`` (the task
    being fitted), that task's scores of its previous weights are one more column
    (:func:`~._measurements.previous_scores`): a related target, so that a new version's fit
    needs few scores of its own.

    Returns:
        ``(archs, targets, rows)``: the archs measured on any of the targets, the target names,
        and per arch one value per target (the mean of its measurements; NaN where unmeasured).
    """
    column = target_column(metric)
    stmt = (
        select(*_FIT_COLUMNS, column.label("target"))
        .where(Measurement.space == space, Measurement.metric == metric, LIVE)
        .order_by(Measurement.arch, Measurement.id)
    )
    if exclude is not None:
        stmt = stmt.where(column != exclude)
    stmt = fitted_only(stmt)
    levels = long_run_levels(session, space) if metric == Metric.LATENCY else {}
    rows = _rescaled(session.execute(stmt).all(), levels)
    previous = previous_scores(session, space, borrowing) if borrowing and metric == Metric.SCORE else None
    if previous is not None:
        name, conditions = previous
        older = session.execute(
            select(*_FIT_COLUMNS).where(*conditions).order_by(Measurement.arch, Measurement.id)
        )
        rows += _rescaled(older.all(), {}, name)
    by_target: dict[str, list[_FitRow]] = {}
    for row in rows:
        by_target.setdefault(row.target, []).append(row)
    # Impossible values are judged within their own target, as that target's fit judges them.
    kept = {row.id for of_target in by_target.values() for row, _ in _usable(of_target, metric)[0]}
    targets = sorted({row.target for row in rows if row.id in kept})
    index = {target: j for j, target in enumerate(targets)}
    cells: dict[str, list[list[float]]] = {}
    for row in rows:
        if row.id in kept:
            cells.setdefault(row.arch, [[] for _ in targets])[index[row.target]].append(row.value)
    means = [[sum(c) / len(c) if c else float("nan") for c in cell] for cell in cells.values()]
    return list(cells), targets, means
