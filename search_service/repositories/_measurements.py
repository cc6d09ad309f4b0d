"""Measurements: idempotent inserts, pages, retractions, and what each target has measured."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVarTuple

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from ..domain import Metric
from ..errors import ConflictError, InvalidError, NotFoundError
from ..models import Device, Measurement, utcnow
from ..schemas import MeasurementCreate
from ..space_checks import known_supernet_versions

Columns = TypeVarTuple("Columns")

#: What a re-posted measurement must repeat to be the same measurement (an id is stored once).
COMPARED_FIELDS = (
    "space",
    "arch",
    "device",
    "task",
    "metric",
    "value",
    "std",
    "repeats",
    "flagged",
    "reference_arch",
    "reference_ms",
    "supernet_version",
)


def _insert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def insert_measurements(
    session: Session, items: Sequence[MeasurementCreate], job_id: int | None = None
) -> tuple[int, int, list[int]]:
    """Insert a validated batch, idempotently per client id.

    Returns:
        ``(inserted, duplicate, ids)``: counts, and the database ids of every item of the batch.

    Raises:
        InvalidError: An item names an unregistered device or supernet version (nothing is
            written).
        ConflictError: An id is already stored, or repeated in the batch, with different content.
    """
    devices = {m.device for m in items if m.device is not None}
    if devices:
        known = set(session.scalars(select(Device.name).where(Device.name.in_(devices))))
        for i, m in enumerate(items):
            if m.device is not None and m.device not in known:
                raise InvalidError(
                    f"unknown device {m.device!r}; register it first with POST /v1/devices",
                    ["body", "measurements", i, "device"],
                )
    known_supernet_versions(session, items)
    first: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    for i, m in enumerate(items):
        if m.id in first:
            if _content(items[first[m.id]]) != _content(m):
                raise ConflictError(
                    f"id {m.id!r} appears twice in the batch with different content",
                    ["body", "measurements", i, "id"],
                )
            continue
        first[m.id] = i
        row = m.model_dump(exclude={"id"})
        row.update(client_id=m.id, job_id=job_id, created_at=utcnow())
        rows.append(row)
    # Every writer inserts in client-id order: two batches that share ids then wait on those ids'
    # index entries in the same order, whereas in batch order they could wait on each other
    # (a PostgreSQL deadlock, answered as a 503).
    rows.sort(key=lambda row: row["client_id"])
    stmt = _insert(session)(Measurement).on_conflict_do_nothing(index_elements=["client_id"])
    inserted = {cid for (cid,) in session.execute(stmt.returning(Measurement.client_id), rows)}
    existing = [cid for cid in first if cid not in inserted]
    if existing:
        stored = {
            m.client_id: m
            for m in session.scalars(select(Measurement).where(Measurement.client_id.in_(existing)))
        }
        for cid in existing:
            item = items[first[cid]]
            if _content(item) != tuple(getattr(stored[cid], k) for k in COMPARED_FIELDS):
                raise ConflictError(
                    f"id {cid!r} is already stored with different content; measurements are never "
                    "overwritten, use a new id to add a re-measurement",
                    ["body", "measurements", first[cid], "id"],
                )
    ids = dict(
        session.execute(
            select(Measurement.client_id, Measurement.id).where(Measurement.client_id.in_(first))
        ).all()
    )
    return len(inserted), len(items) - len(inserted), [ids[m.id] for m in items]


def _content(m: MeasurementCreate) -> tuple[Any, ...]:
    return tuple(getattr(m, k) for k in COMPARED_FIELDS)


def _measurement_filter(stmt: Select[Any], **filters: str | None) -> Select[Any]:
    for key, value in filters.items():
        if value is not None:
            stmt = stmt.where(getattr(Measurement, key) == value)
    return stmt


# Retracted measurements keep their rows (the audit trail) but count for nothing else.
LIVE = Measurement.retracted_at.is_(None)


def list_measurements(
    session: Session, limit: int, offset: int, include_retracted: bool = False, **filters: str | None
) -> tuple[int, list[Measurement]]:
    """A page of measurements matching ``filters``, oldest first, and how many match in all."""
    live = () if include_retracted else (LIVE,)
    total = session.scalar(_measurement_filter(select(func.count(Measurement.id)).where(*live), **filters))
    page = session.scalars(
        _measurement_filter(select(Measurement).where(*live), **filters)
        .order_by(Measurement.id)
        .limit(limit)
        .offset(offset)
    )
    return total or 0, list(page)


def get_measurement(session: Session, measurement_id: int, lock: bool = False) -> Measurement:
    stmt = select(Measurement).where(Measurement.id == measurement_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    measurement = session.scalar(stmt)
    if measurement is None:
        raise NotFoundError(f"no measurement {measurement_id}")
    return measurement


def retract_measurement(
    session: Session, measurement: Measurement, reason: str | None, now: dt.datetime | None = None
) -> bool:
    """Retract a measurement: its row stays, with when and why, and refits leave it out.

    Args:
        session: The write session (flushed, not committed).
        measurement: The row, from :func:`get_measurement` with ``lock`` (so that of two
            concurrent retractions the second sees the first).
        reason: Why, for the audit trail.
        now: The retraction time (default: the current time).

    Returns:
        Whether this call retracted it: False when it already was (the first time and reason stay).
    """
    if measurement.retracted_at is not None:
        return False
    measurement.retracted_at = now or utcnow()
    measurement.retracted_reason = reason
    session.flush()
    return True


class DataVersion(NamedTuple):
    """What a target's fit depends on: the largest id and the number of its live measurements.

    A new measurement raises the count and a retraction lowers it; when both happen between two
    looks, the new one raises the largest id. So the pair changes whenever the target's data does,
    and a retraction needs no newer id. (One combination escapes it: on PostgreSQL, an insert that
    commits after a higher id did, together with a retraction of another row.) Each predictor
    version stores the pair it was fitted on, as ``last_measurement_id`` and ``n_measurements``.
    """

    last_id: int
    # Not "count": a NamedTuple field of that name would hide tuple.count.
    n_measurements: int


class MeasuredTarget(NamedTuple):
    """A (space, metric, target) with live measurements, as :func:`measured_targets` lists it."""

    space: str
    metric: Metric
    target: str
    n_subnets: int
    version: DataVersion


def target_column(metric: str) -> Any:
    """The column naming a measurement's target: its device for latencies, its task for scores."""
    return Measurement.device if metric == Metric.LATENCY else Measurement.task


def previous_scores(session: Session, space: str, task: str) -> tuple[str, tuple[Any, ...]] | None:
    """The scores of ``task`` measured with the weights before those its fits use, for a fit of
    the newer version to borrow from: the newest older version with live scores, else the
    unversioned ones. None when its fits use unversioned scores or nothing older is scored.

    Returns:
        A column name for them (``<task>@v<N>`` or ``<task>@unversioned``) and the conditions
        selecting them.
    """
    current = session.scalar(_newest_scored_version(space, task))
    if current is None:
        return None
    scores = (Measurement.space == space, Measurement.task == task, Measurement.metric == Metric.SCORE, LIVE)
    older = session.scalar(
        select(func.max(Measurement.supernet_version)).where(*scores, Measurement.supernet_version < current)
    )
    if older is not None:
        return f"{task}@v{older}", (*scores, Measurement.supernet_version == older)
    unversioned = (*scores, Measurement.supernet_version.is_(None))
    if session.scalar(select(Measurement.id).where(*unversioned).limit(1)) is None:
        return None
    return f"{task}@unversioned", unversioned


def _newest_scored_version(space: str, task: str) -> Select[int | None]:
    """The newest supernet version ``task`` has live scores of (None: only unversioned scores)."""
    return select(func.max(Measurement.supernet_version)).where(
        Measurement.space == space, Measurement.task == task, Measurement.metric == Metric.SCORE, LIVE
    )


def target_conditions(space: str, metric: str, target: str) -> tuple[Any, ...]:
    """The conditions selecting the live measurements a target's fit uses: a device's latencies
    (any weights), or a task's scores of one supernet version, the newest it has scores of, or
    its unversioned (legacy) scores when it has none of a registered version. A task's fits and
    fronts thus never mix weights, and a task scored only without versions fits as before."""
    conditions = (
        Measurement.space == space,
        Measurement.metric == metric,
        target_column(metric) == target,
        LIVE,
    )
    if metric != Metric.SCORE:
        return conditions
    return (
        *conditions,
        Measurement.supernet_version.is_not_distinct_from(
            _newest_scored_version(space, target).scalar_subquery()
        ),
    )


def fitted_only(stmt: Select[*Columns]) -> Select[*Columns]:
    """``stmt`` (on measurements) restricted to the rows fits use, as :func:`target_conditions`
    selects them, for statements over many targets: every latency, and each task's scores of its
    newest scored supernet version (or its unversioned ones)."""
    scores = aliased(Measurement)
    newest = (
        select(scores.space, scores.task, func.max(scores.supernet_version).label("version"))
        .where(scores.metric == Metric.SCORE, scores.retracted_at.is_(None))
        .group_by(scores.space, scores.task)
        .subquery()
    )
    return stmt.outerjoin(
        newest, and_(newest.c.space == Measurement.space, newest.c.task == Measurement.task)
    ).where(
        or_(
            Measurement.metric != Metric.SCORE,
            Measurement.supernet_version.is_not_distinct_from(newest.c.version),
        )
    )


def measured_targets(session: Session, space: str | None = None) -> list[MeasuredTarget]:
    """Every (space, metric, target) with live data, its number of distinct archs and data version."""
    target = func.coalesce(Measurement.device, Measurement.task)
    stmt = (
        select(
            Measurement.space,
            Measurement.metric,
            target,
            func.count(func.distinct(Measurement.arch)),
            func.max(Measurement.id),
            func.count(Measurement.id),
        )
        .where(LIVE)
        .group_by(Measurement.space, Measurement.metric, target)
    )
    stmt = fitted_only(stmt)
    if space is not None:
        stmt = stmt.where(Measurement.space == space)
    return [
        MeasuredTarget(r[0], r[1], r[2], int(r[3]), DataVersion(int(r[4]), int(r[5])))
        for r in session.execute(stmt.order_by(*stmt.selected_columns[:3]))
    ]


def data_version(session: Session, space: str, metric: str, target: str) -> DataVersion:
    """The target's :class:`DataVersion` now (``(0, 0)`` without live measurements)."""
    stmt = select(func.max(Measurement.id), func.count(Measurement.id)).where(
        *target_conditions(space, metric, target)
    )
    last_id, count = session.execute(stmt).one()
    return DataVersion(int(last_id or 0), int(count))


def count_measured_subnets(session: Session, space: str, metric: str, target: str) -> int:
    """How many distinct subnets the target has live measurements of."""
    stmt = select(func.count(func.distinct(Measurement.arch))).where(
        *target_conditions(space, metric, target)
    )
    return int(session.scalar(stmt) or 0)


def measured_archs(session: Session, space: str, metric: str, target: str) -> set[str]:
    stmt = select(Measurement.arch).where(*target_conditions(space, metric, target))
    return set(session.scalars(stmt.distinct()))


def archs_measured_on_both(
    session: Session, space: str, task: str, device: str, archs: Sequence[str]
) -> set[str]:
    """Those of ``archs`` with a measured score on ``task`` (of the weights its fits use, see
    :func:`target_conditions`) and a measured latency on ``device`` (retracted measurements do
    not count)."""
    if not archs:
        return set()
    base = select(Measurement.arch).where(Measurement.space == space, Measurement.arch.in_(archs), LIVE)
    scored = set(session.scalars(base.where(*target_conditions(space, Metric.SCORE, task))))
    timed = set(
        session.scalars(base.where(Measurement.metric == Metric.LATENCY, Measurement.device == device))
    )
    return scored & timed
