"""Database operations (the "crud" layer). Functions take a Session and never commit on their own:
the caller's transaction makes each request all-or-nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias

from sqlalchemy import Row, Select, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .domain import ACTIVE_JOB_STATUSES, JobStatus, Metric
from .errors import ConflictError, InvalidError, NotFoundError, UnauthorizedError
from .levels import check_shift, long_run_level, rescale_factor
from .models import ApiToken, Campaign, Device, Front, Job, Measurement, PredictorVersion, SpaceRow, utcnow
from .outliers import impossible
from .schemas import (
    JOB_ID_PREFIX,
    DeviceCreate,
    DeviceLevel,
    LevelShiftPublic,
    MeasurementCreate,
    ResultRequest,
    TokenStatus,
    canonical_arch,
)

# --------------------------------------------------------------------------------------- devices


def get_device(session: Session, name: str) -> Device:
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        raise NotFoundError(f"unknown device {name!r}; register it with POST /v1/devices")
    return device


def list_devices(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.name)))


def create_device(session: Session, body: DeviceCreate) -> Device:
    if session.scalar(select(Device.id).where(Device.name == body.name)) is not None:
        raise ConflictError(f"device {body.name!r} already exists")
    device = Device(name=body.name, profiler=body.profiler, settings=body.settings)
    session.add(device)
    session.flush()
    return device


# ---------------------------------------------------------------------------------------- spaces


def get_space_row(session: Session, name: str, lock: bool = False) -> SpaceRow | None:
    """The stored definition of the space ``name``, or None (presets are never stored).

    Args:
        session: The session to read with.
        name: The space's name.
        lock: Lock the row until the transaction ends (PostgreSQL ``FOR UPDATE``; a SQLite write
            session holds the database's single write lock already), so that two processes adding
            tasks to one space do not lose one of them.
    """
    stmt = select(SpaceRow).where(SpaceRow.name == name)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def space_names(session: Session) -> list[str]:
    return list(session.scalars(select(SpaceRow.name).order_by(SpaceRow.name)))


def create_space_row(session: Session, name: str, definition: str) -> SpaceRow:
    """Store a new space's definition (validated, as JSON text).

    Raises:
        ConflictError: A space of that name, ignoring case, is stored already (naming the field).
    """
    # Ignoring case: names that differ only in case would be two spaces to the database, but a
    # user who types either one means the same space.
    existing = session.scalar(select(SpaceRow.name).where(func.lower(SpaceRow.name) == name.lower()))
    if existing is not None:
        also = "" if existing == name else f" ({name!r} differs from it only in case)"
        raise ConflictError(f"space {existing!r} is registered already{also}", ["body", "name"])
    row = SpaceRow(name=name, definition=definition, version=1)
    session.add(row)
    session.flush()
    return row


def update_space_definition(session: Session, row: SpaceRow, definition: str) -> SpaceRow:
    """Replace ``row``'s definition (read with ``lock=True``) and count the change."""
    row.definition = definition
    row.version += 1
    row.updated_at = utcnow()
    session.flush()
    return row


# ---------------------------------------------------------------------------------------- tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    device: str | None = None,
    label: str | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token, hashed.

    Args:
        session: The write session (flushed, not committed).
        device: Restrict the token to this device's jobs and latencies; None: unrestricted.
        label: Who or what the token is for, shown by the listings.
        expires_at: When the token stops working (timezone-aware); None: never.

    Returns:
        The stored row and the secret in clear, which cannot be recovered later.
    """
    secret = "gpnas_" + secrets.token_urlsafe(32)
    token = ApiToken(token_hash=hash_token(secret), device=device, label=label, expires_at=expires_at)
    session.add(token)
    session.flush()
    return token, secret


def token_status(token: ApiToken, now: dt.datetime | None = None) -> TokenStatus:
    """Whether ``token`` is "active", "expired" or "revoked" at ``now`` (default: the current time).

    A revocation is reported even after the expiry: it is the deliberate act an admin looks for.
    """
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def get_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFoundError(f"unknown token id {token_id}")
    return token


def revoke_token(session: Session, token_id: int, now: dt.datetime | None = None) -> ApiToken:
    """Revoke a token for good; revoking it again keeps the first ``revoked_at``.

    Raises:
        NotFoundError: No token has this id.
    """
    token = get_token(session, token_id)
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
        session.flush()
    return token


def find_token(session: Session, secret: str) -> ApiToken | None:
    """The row of ``secret`` whatever its status; :func:`authenticate` checks that it is usable."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))


def authenticate(session: Session, secret: str, now: dt.datetime | None = None) -> ApiToken:
    """The active token whose secret is ``secret``.

    Args:
        session: Any session (nothing is written).
        secret: The Bearer token the caller sent.
        now: The time expiry is judged at (default: the current time); tests inject it.

    Raises:
        UnauthorizedError: The token is unknown, revoked or expired, saying which.
    """
    token = find_token(session, secret)
    if token is None:
        raise UnauthorizedError("unknown token")
    status = token_status(token, now)
    if status == "revoked":
        raise UnauthorizedError("this token was revoked; ask an admin for a new one (gpnas token create)")
    if status == "expired":
        raise UnauthorizedError("this token expired; ask an admin for a new one (gpnas token create)")
    return token


# ---------------------------------------------------------------------------------- measurements

_COMPARED = (
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
        InvalidError: An item names an unregistered device (nothing is written).
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
            if _content(item) != tuple(getattr(stored[cid], k) for k in _COMPARED):
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
    return tuple(getattr(m, k) for k in _COMPARED)


def _measurement_filter(stmt: Select[Any], **filters: str | None) -> Select[Any]:
    for key, value in filters.items():
        if value is not None:
            stmt = stmt.where(getattr(Measurement, key) == value)
    return stmt


# Retracted measurements keep their rows (the audit trail) but count for nothing else.
_LIVE = Measurement.retracted_at.is_(None)


def list_measurements(
    session: Session, limit: int, offset: int, include_retracted: bool = False, **filters: str | None
) -> tuple[int, list[Measurement]]:
    """A page of measurements matching ``filters``, oldest first, and how many match in all."""
    live = () if include_retracted else (_LIVE,)
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


class MeasuredTarget(NamedTuple):
    """A (space, metric, target) with live measurements, as :func:`measured_targets` lists it."""

    space: str
    metric: str
    target: str
    n_subnets: int
    version: DataVersion


def _target_column(metric: str) -> Any:
    return Measurement.device if metric == Metric.LATENCY else Measurement.task


def _of_target(space: str, metric: str, target: str) -> tuple[Any, ...]:
    """The conditions selecting a target's live measurements."""
    return Measurement.space == space, Measurement.metric == metric, _target_column(metric) == target, _LIVE


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
        .where(*_of_target(space, metric, target))
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
    session: Session, space: str, metric: str, exclude: str | None = None
) -> tuple[list[str], list[str], list[list[float]]]:
    """Every target of ``metric`` in ``space`` (but ``exclude``) as one matrix, for transfer.

    Like :func:`training_data`, it leaves out retracted measurements and impossible values and
    rescales latencies to their device's long-run level.

    Returns:
        ``(archs, targets, rows)``: the archs measured on any of the targets, the target names,
        and per arch one value per target (the mean of its measurements; NaN where unmeasured).
    """
    column = _target_column(metric)
    stmt = (
        select(*_FIT_COLUMNS, column.label("target"))
        .where(Measurement.space == space, Measurement.metric == metric, _LIVE)
        .order_by(Measurement.arch, Measurement.id)
    )
    if exclude is not None:
        stmt = stmt.where(column != exclude)
    levels = long_run_levels(session, space) if metric == Metric.LATENCY else {}
    rows = _rescaled(session.execute(stmt).all(), levels)
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


# ---------------------------------------------------------------------------------------- levels


class BatchLevel(NamedTuple):
    """One latency batch's reference level, as stored with its measurements.

    A batch is told apart by its level: all its measurements carry the same ``reference_ms`` (the
    median of its reference's times, a float), and two batches of a device with exactly the same
    median are one more vote for that level either way.
    """

    space: str
    device: str
    reference_arch: str
    reference_ms: float
    measurements: int


def batch_levels(session: Session, space: str | None = None, device: str | None = None) -> list[BatchLevel]:
    """The reference levels of the live latency batches of ``space`` and ``device`` (all when None)."""
    stmt = (
        select(
            Measurement.space,
            Measurement.device,
            Measurement.reference_arch,
            Measurement.reference_ms,
            func.count(Measurement.id),
        )
        .where(Measurement.metric == Metric.LATENCY, Measurement.reference_ms.is_not(None), _LIVE)
        .group_by(Measurement.space, Measurement.device, Measurement.reference_arch, Measurement.reference_ms)
    )
    if space is not None:
        stmt = stmt.where(Measurement.space == space)
    if device is not None:
        stmt = stmt.where(Measurement.device == device)
    # Latencies always name a device, a level its reference (schemas check both), and the query
    # keeps rows with a level only: the conversions only narrow the types.
    return [
        BatchLevel(space_, str(device_), str(arch), float(level or 0.0), int(n))
        for space_, device_, arch, level, n in session.execute(stmt.order_by(*stmt.selected_columns[:4]))
    ]


def _levels_by_device(batches: Sequence[BatchLevel]) -> dict[tuple[str, str], list[BatchLevel]]:
    """``batches`` grouped by (device, reference arch): levels of different references differ."""
    grouped: dict[tuple[str, str], list[BatchLevel]] = {}
    for b in batches:
        grouped.setdefault((b.device, b.reference_arch), []).append(b)
    return grouped


def long_run_levels(session: Session, space: str, device: str | None = None) -> dict[tuple[str, str], float]:
    """The long-run reference level of ``device`` (every device when None) per (device, reference
    arch): the median of its batches' levels.

    A running median over every live batch, recomputed whenever fits read the data: the service
    rescales when it reads, so all of a device's values are always on one level, whatever batches
    came since, and that level converges on the machine's usual one rather than staying wherever
    its first batch happened to be. One batch in a burst of load moves a median by one rank.
    """
    out: dict[tuple[str, str], float] = {}
    for key, batches in _levels_by_device(batch_levels(session, space, device)).items():
        level = long_run_level(b.reference_ms for b in batches)
        if level is not None:
            out[key] = level
    return out


def _shift_from(batch: BatchLevel, long_run: float | None, threshold: float) -> LevelShiftPublic | None:
    """``batch`` against the long-run level ``long_run``, if it moved beyond ``threshold``."""
    moved = check_shift(batch.reference_arch, batch.reference_ms, long_run, threshold)
    if moved is None:
        return None
    return LevelShiftPublic(
        space=batch.space,
        device=batch.device,
        reference_arch=moved.reference_arch,
        batch_ms=moved.batch_ms,
        long_run_ms=moved.long_run_ms,
        shift=moved.shift,
        measurements=batch.measurements,
    )


def level_shifts(
    session: Session, items: Sequence[MeasurementCreate], threshold: float
) -> list[LevelShiftPublic]:
    """The batches among ``items`` (stored already) whose reference level lies beyond ``threshold``
    from their device's long-run level, the median of the device's other batches' levels.

    Compared with the *other* batches, so that a batch does not pull the level it is judged by,
    and a re-posted batch is judged as it was the first time.
    """
    posted: dict[tuple[str, str, str, float], int] = {}
    for m in items:
        if m.device is not None and m.reference_arch is not None and m.reference_ms is not None:
            key = (m.space, m.device, m.reference_arch, m.reference_ms)
            posted[key] = posted.get(key, 0) + 1
    stored: dict[tuple[str, str], dict[tuple[str, str], list[BatchLevel]]] = {}
    out = []
    for (space, device, arch, level), count in posted.items():
        if (space, device) not in stored:
            stored[(space, device)] = _levels_by_device(batch_levels(session, space, device))
        others = stored[(space, device)].get((device, arch), [])
        long_run = long_run_level(b.reference_ms for b in others if b.reference_ms != level)
        moved = _shift_from(BatchLevel(space, device, arch, level, count), long_run, threshold)
        if moved is not None:
            out.append(moved)
    return out


def device_levels(session: Session, device: str, threshold: float) -> list[DeviceLevel]:
    """A device's long-run levels (per space and reference arch), each with its batches that lie
    beyond ``threshold`` from it.

    Judged against the level of all batches, the one fits rescale to: against the others' median
    (as at ingest) the good batches of a device with few batches would look shifted too, pulled
    apart by the one bad batch among the others.
    """
    by_space: dict[tuple[str, str], list[BatchLevel]] = {}
    for b in batch_levels(session, device=device):
        by_space.setdefault((b.space, b.reference_arch), []).append(b)
    out = []
    for (space, arch), batches in by_space.items():
        level = long_run_level(b.reference_ms for b in batches)
        assert level is not None, "a group has at least one batch"
        shifted = [s for b in batches if (s := _shift_from(b, level, threshold)) is not None]
        out.append(
            DeviceLevel(
                space=space, reference_arch=arch, long_run_ms=level, batches=len(batches), shifted=shifted
            )
        )
    return out


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
        .where(_LIVE)
        .group_by(Measurement.space, Measurement.metric, target)
    )
    if space is not None:
        stmt = stmt.where(Measurement.space == space)
    return [
        MeasuredTarget(r[0], r[1], r[2], int(r[3]), DataVersion(int(r[4]), int(r[5])))
        for r in session.execute(stmt.order_by(*stmt.selected_columns[:3]))
    ]


def data_version(session: Session, space: str, metric: str, target: str) -> DataVersion:
    """The target's :class:`DataVersion` now (``(0, 0)`` without live measurements)."""
    stmt = select(func.max(Measurement.id), func.count(Measurement.id)).where(
        *_of_target(space, metric, target)
    )
    last_id, count = session.execute(stmt).one()
    return DataVersion(int(last_id or 0), int(count))


def count_measured_subnets(session: Session, space: str, metric: str, target: str) -> int:
    """How many distinct subnets the target has live measurements of."""
    stmt = select(func.count(func.distinct(Measurement.arch))).where(*_of_target(space, metric, target))
    return int(session.scalar(stmt) or 0)


def measured_archs(session: Session, space: str, metric: str, target: str) -> set[str]:
    stmt = select(Measurement.arch).where(*_of_target(space, metric, target))
    return set(session.scalars(stmt.distinct()))


# ------------------------------------------------------------------------------- campaigns, jobs


def create_campaign(
    session: Session,
    space: str,
    device: str,
    task: str | None,
    strategy: str,
    seed: int | None,
    archs: Sequence[str],
) -> Campaign:
    metric = Metric.SCORE if task is not None else Metric.LATENCY
    campaign = Campaign(
        space=space, device=device, task=task, metric=metric, strategy=strategy, n=len(archs), seed=seed
    )
    session.add(campaign)
    session.flush()
    now = utcnow()
    session.add_all(
        Job(
            campaign_id=campaign.id,
            space=space,
            arch=a,
            device=device,
            task=task,
            metric=metric,
            status=JobStatus.QUEUED,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        for a in archs
    )
    session.flush()
    return campaign


def pending_archs(session: Session, space: str, device: str, task: str | None) -> set[str]:
    """Archs already queued or leased for the same measurement (not to be queued twice)."""
    stmt = select(Job.arch).where(
        Job.space == space,
        Job.device == device,
        Job.status.in_(ACTIVE_JOB_STATUSES),
        Job.task.is_(None) if task is None else Job.task == task,
    )
    return set(session.scalars(stmt))


def campaign_counts(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Job.status, func.count()).where(Job.campaign_id == campaign_id).group_by(Job.status)
    )
    return {status: int(n) for status, n in rows}


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign {campaign_id}")
    return campaign


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id)))


def list_jobs(
    session: Session, limit: int, offset: int, campaign_id: int | None, device: str | None, status: str | None
) -> tuple[int, list[Job]]:
    conditions = []
    if campaign_id is not None:
        conditions.append(Job.campaign_id == campaign_id)
    if device is not None:
        conditions.append(Job.device == device)
    if status is not None:
        conditions.append(Job.status == status)
    total = session.scalar(select(func.count(Job.id)).where(*conditions)) or 0
    jobs = session.scalars(select(Job).where(*conditions).order_by(Job.id).limit(limit).offset(offset))
    return total, list(jobs)


def get_job(session: Session, job_id: int, lock: bool = False) -> Job:
    stmt = select(Job).where(Job.id == job_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    job = session.scalar(stmt)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def lease_jobs(
    session: Session, device: str, lease_seconds: int, max_attempts: int, count: int = 1
) -> list[Job]:
    """Lease up to ``count`` of the oldest available jobs of ``device`` (see :func:`lease_job`)."""
    jobs: list[Job] = []
    while len(jobs) < count and (job := lease_job(session, device, lease_seconds, max_attempts)):
        jobs.append(job)
    return jobs


def lease_job(session: Session, device: str, lease_seconds: int, max_attempts: int) -> Job | None:
    """Lease the oldest available job of ``device``: queued, or leased with an expired lease.

    On PostgreSQL, candidate rows are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
    leasers skip each other's rows; on SQLite the caller's ``BEGIN IMMEDIATE`` transaction makes
    this the only writer. Expired jobs already leased ``max_attempts`` times fail for good.
    """
    now = utcnow()
    available = or_(
        Job.status == JobStatus.QUEUED, and_(Job.status == JobStatus.LEASED, Job.lease_expires_at < now)
    )
    while True:
        # One row at a time: locking more would hide them from concurrent leasers (SKIP LOCKED).
        stmt = select(Job).where(Job.device == device, available).order_by(Job.id).limit(1)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        job = session.scalars(stmt).first()
        if job is None:
            return None
        if job.status == JobStatus.LEASED and job.attempts >= max_attempts:
            job.status = JobStatus.FAILED
            job.last_error = (
                f"lease expired after attempt {job.attempts} of {max_attempts}; last error: {job.last_error}"
            )
            job.lease_token = None
            job.updated_at = now
            session.flush()
            continue
        job.status = JobStatus.LEASED
        job.attempts += 1
        job.lease_token = secrets.token_urlsafe(24)
        job.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
        job.updated_at = now
        session.flush()
        return job


def heartbeat(session: Session, job_id: int, token: str, lease_seconds: int) -> Job:
    job = get_job(session, job_id, lock=True)
    if job.status != JobStatus.LEASED or job.lease_token != token:
        raise ConflictError(f"job {job_id}: this lease is no longer held (job is {job.status})")
    job.lease_expires_at = utcnow() + dt.timedelta(seconds=lease_seconds)
    job.updated_at = utcnow()
    session.flush()
    return job


# What a re-posted job result must repeat to be the same result (as for a re-posted measurement).
_RESULT_COMPARED = tuple(k for k in _COMPARED if k in ResultRequest.model_fields)


def complete_job(session: Session, job_id: int, body: ResultRequest) -> Job:
    """Store a job's result once. Re-posting it with the same lease token returns the same job.

    A result whose lease expired is accepted as long as no other agent leased the job since.

    Raises:
        ConflictError: Another agent holds or completed the job, or this lease's result is already
            stored with a different value, std, repeats or flagged (measurements are never
            overwritten).
    """
    job = get_job(session, job_id, lock=True)
    if body.reference_arch is not None:
        if job.metric != Metric.LATENCY:
            raise InvalidError("only a latency has a reference level", ["body", "reference_arch"])
        try:
            body = body.model_copy(update={"reference_arch": canonical_arch(job.space, body.reference_arch)})
        except ValueError as error:
            raise InvalidError(str(error), ["body", "reference_arch"]) from None
    if job.lease_token != body.lease_token:
        if job.status == JobStatus.DONE:
            raise ConflictError(f"job {job_id} was completed under another lease")
        raise ConflictError(f"job {job_id}: this lease is no longer held (job is {job.status})")
    if job.status == JobStatus.DONE:
        stored = session.get(Measurement, job.measurement_id)
        assert stored is not None, "a done job's measurement is never deleted"
        changed = [
            f"{key} {getattr(stored, key)!r} (stored) vs {getattr(body, key)!r} (posted)"
            for key in _RESULT_COMPARED
            if getattr(stored, key) != getattr(body, key)
        ]
        if changed:
            raise ConflictError(
                f"job {job_id} already has a result under this lease, with other content: "
                + ", ".join(changed)
                + "; results are never overwritten (post a re-measurement to /v1/measurements)"
            )
        return job
    if job.metric == Metric.LATENCY and body.value <= 0:
        raise InvalidError("a latency must be positive", ["body", "value"])
    item = MeasurementCreate.model_validate(
        {
            "id": f"{JOB_ID_PREFIX}{job.id}",
            "space": job.space,
            "arch": job.arch,
            "device": job.device if job.metric == Metric.LATENCY else None,
            "task": job.task if job.metric == Metric.SCORE else None,
            "metric": job.metric,
            **body.model_dump(exclude={"lease_token"}),
        },
        context={"job_result": True},
    )
    _, _, (measurement_id,) = insert_measurements(session, [item], job_id=job.id)
    job.status = JobStatus.DONE
    job.measurement_id = measurement_id
    job.updated_at = utcnow()
    session.flush()
    return job


def fail_job(session: Session, job_id: int, token: str, error: str, max_attempts: int) -> Job:
    """Give a leased job back: queued again, or failed for good after ``max_attempts`` leases."""
    job = get_job(session, job_id, lock=True)
    given_back = job.status in (JobStatus.QUEUED, JobStatus.FAILED) and job.lease_token is None
    if job.failed_token == token and given_back:
        return job  # the same failure posted again
    if job.status != JobStatus.LEASED or job.lease_token != token:
        raise ConflictError(f"job {job_id}: this lease is no longer held (job is {job.status})")
    job.status = JobStatus.FAILED if job.attempts >= max_attempts else JobStatus.QUEUED
    job.failed_token = token
    job.lease_token = None
    job.lease_expires_at = None
    job.last_error = error
    job.updated_at = utcnow()
    session.flush()
    return job


# ---------------------------------------------------------------------------- predictors, fronts


def latest_predictor(session: Session, space: str, metric: str, target: str) -> PredictorVersion | None:
    stmt = (
        select(PredictorVersion)
        .where(
            PredictorVersion.space == space,
            PredictorVersion.metric == metric,
            PredictorVersion.target == target,
        )
        .order_by(PredictorVersion.version.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def latest_predictors(session: Session, space: str, metric: str) -> list[PredictorVersion]:
    """The newest version of every target of ``metric`` in ``space``."""
    newest = (
        select(PredictorVersion.target, func.max(PredictorVersion.version).label("v"))
        .where(PredictorVersion.space == space, PredictorVersion.metric == metric)
        .group_by(PredictorVersion.target)
        .subquery()
    )
    stmt = (
        select(PredictorVersion)
        .join(
            newest, and_(PredictorVersion.target == newest.c.target, PredictorVersion.version == newest.c.v)
        )
        .where(PredictorVersion.space == space, PredictorVersion.metric == metric)
        .order_by(PredictorVersion.target)
    )
    return list(session.scalars(stmt))


def latest_front_id(session: Session, space: str, task: str, device: str) -> tuple[int, int] | None:
    """``(id, version)`` of the newest front of (space, task, device), without loading its data."""
    stmt = (
        select(Front.id, Front.version)
        .where(Front.space == space, Front.task == task, Front.device == device)
        .order_by(Front.version.desc())
        .limit(1)
    )
    row = session.execute(stmt).first()
    return None if row is None else (int(row[0]), int(row[1]))


def archs_measured_on_both(
    session: Session, space: str, task: str, device: str, archs: Sequence[str]
) -> set[str]:
    """Those of ``archs`` with a measured score on ``task`` and a measured latency on ``device``
    (retracted measurements do not count)."""
    if not archs:
        return set()
    base = select(Measurement.arch).where(Measurement.space == space, Measurement.arch.in_(archs), _LIVE)
    scored = set(session.scalars(base.where(Measurement.metric == Metric.SCORE, Measurement.task == task)))
    timed = set(
        session.scalars(base.where(Measurement.metric == Metric.LATENCY, Measurement.device == device))
    )
    return scored & timed


def latest_front_key(session: Session, space: str, task: str, device: str) -> tuple[int, int, int] | None:
    """``(version, score_predictor_id, latency_predictor_id)`` of the newest front, or None."""
    stmt = (
        select(Front.version, Front.score_predictor_id, Front.latency_predictor_id)
        .where(Front.space == space, Front.task == task, Front.device == device)
        .order_by(Front.version.desc())
        .limit(1)
    )
    row = session.execute(stmt).first()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def latest_front(session: Session, space: str, task: str, device: str) -> Front | None:
    """The newest front row of (space, task, device), its data included, or None."""
    stmt = (
        select(Front)
        .where(Front.space == space, Front.task == task, Front.device == device)
        .order_by(Front.version.desc())
        .limit(1)
    )
    return session.scalar(stmt)
