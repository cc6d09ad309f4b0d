"""SQLAlchemy 2 ORM models. The schema changes only through the Alembic migrations in ``migrations/``."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .domain import JobStatus, Metric, WorkKind, WorkStatus

# Stable constraint names, so that migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# none_as_null: a missing environment is SQL NULL, not the JSON value null.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


E = TypeVar("E", bound=StrEnum)


class StrEnumType(TypeDecorator[E]):
    """A :class:`~enum.StrEnum` stored as its value in a ``VARCHAR(16)``, read back as the member.

    The column stays the plain string column the migrations created (Alembic sees no change, no
    data moves); what changes is that a row holds ``Metric.LATENCY``, not ``"latency_ms"``, and
    that writing a value the enum does not know fails instead of storing it.
    """

    impl = String(16)
    cache_ok = True

    def __init__(self, enum: type[E]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Any) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> E | None:
        return None if value is None else self.enum(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Device(Base):
    """A chip + runtime + settings, measured by the named profiler."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    profiler: Mapped[str] = mapped_column(String(128))
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A Bearer token, stored as its SHA-256; ``device`` restricts it to one device's jobs."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    device: Mapped[str | None] = mapped_column(String(128), nullable=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Measurement(Base):
    """One measured value. Its value is never updated (re-measuring adds a row); a retraction
    only sets ``retracted_at`` and ``retracted_reason``, and refits then leave it out. A latency
    timed with a reference keeps its batch's level (``reference_arch``, ``reference_ms``)."""

    __tablename__ = "measurements"
    __table_args__ = (
        Index("ix_measurements_space_device_metric", "space", "device", "metric", "id"),
        Index("ix_measurements_space_task_metric", "space", "task", "metric", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    space: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(256))
    device: Mapped[str | None] = mapped_column(ForeignKey("devices.name"), nullable=True)
    task: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metric: Mapped[Metric] = mapped_column(StrEnumType(Metric))
    value: Mapped[float] = mapped_column(Float)
    std: Mapped[float | None] = mapped_column(Float, nullable=True)
    repeats: Mapped[int | None] = mapped_column(Integer, nullable=True)
    profiler: Mapped[str | None] = mapped_column(String(128), nullable=True)
    profiler_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    drift: Mapped[float | None] = mapped_column(Float, nullable=True)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The batch's reference level: the reference subnet timed in every round and its median time
    # (ms). ``value`` stays as measured; fits rescale it to the device's long-run level.
    reference_arch: Mapped[str | None] = mapped_column(String(256), nullable=True)
    reference_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The registered supernet version (supernet_versions.version of the space) a score was
    # measured with; None for a latency (weights do not change it) and for legacy scores.
    supernet_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    measured_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retracted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    retracted_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Campaign(Base):
    """A request to measure ``n`` subnets chosen by a sampling strategy; it owns its jobs."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(ForeignKey("devices.name"))
    task: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metric: Mapped[Metric] = mapped_column(StrEnumType(Metric))
    strategy: Mapped[str] = mapped_column(String(64))
    n: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    """One subnet to measure on a device, leased by agents (status queued/leased/done/failed)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_device_status", "device", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), nullable=True)
    space: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(256))
    device: Mapped[str] = mapped_column(ForeignKey("devices.name"))
    task: Mapped[str | None] = mapped_column(String(64), nullable=True)
    metric: Mapped[Metric] = mapped_column(StrEnumType(Metric))
    status: Mapped[JobStatus] = mapped_column(StrEnumType(JobStatus), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failed_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    measurement_id: Mapped[int | None] = mapped_column(ForeignKey("measurements.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PredictorVersion(Base):
    """A fitted predictor for one (space, metric, target) — target a device or a task — as bytes."""

    __tablename__ = "predictor_versions"
    __table_args__ = (
        UniqueConstraint("space", "metric", "target", "version", name="uq_predictor_versions_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    metric: Mapped[Metric] = mapped_column(StrEnumType(Metric))
    target: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(64))
    n_train: Mapped[int] = mapped_column(Integer)
    last_measurement_id: Mapped[int] = mapped_column(Integer)
    # With last_measurement_id, the target's data version it was fitted on (null before 0003).
    n_measurements: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The full fit whose hyperparameters this version keeps, its posterior conditioned on newer
    # data (null: a full fit itself, hyperparameters included).
    update_of: Mapped[int | None] = mapped_column(ForeignKey("predictor_versions.id"), nullable=True)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Front(Base):
    """A computed Pareto front (and candidate archive) for (space, task, device), one row per version."""

    __tablename__ = "fronts"
    __table_args__ = (UniqueConstraint("space", "task", "device", "version", name="uq_fronts_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    score_predictor_id: Mapped[int] = mapped_column(ForeignKey("predictor_versions.id"))
    latency_predictor_id: Mapped[int] = mapped_column(ForeignKey("predictor_versions.id"))
    n_points: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WorkItem(Base):
    """One unit of background work (a fit of a target's data version, or a front of a pair of
    predictor versions), so that it is dispatched once, not by every process that notices it, and
    its failure is known to every API process.

    ``key`` names the work and what it is computed from: ``fit/<space>/<metric>/<target>/<last
    measurement id>/<live measurements>`` or ``front/<space>/<task>/<device>/<score predictor
    id>/<latency predictor id>``.
    """

    __tablename__ = "work_items"
    __table_args__ = (Index("ix_work_items_space_kind", "space", "kind", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[WorkKind] = mapped_column(StrEnumType(WorkKind))
    space: Mapped[str] = mapped_column(String(64))
    status: Mapped[WorkStatus] = mapped_column(StrEnumType(WorkStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The predictor version or front it stored (or found stored: the work was already done).
    result_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dispatched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Stamped every heartbeat_interval_s by the worker running it; None until a worker runs it (or
    # when it runs in process). Running work whose stamp is stale lost its worker.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SpaceRow(Base):
    """A search space defined as data (``POST /v1/spaces``, ``gpnas spaces add``); presets are built
    in and never stored. Every process finds it through the space source the service installs
    (:mod:`search_service.services.spaces`).

    ``definition`` is the :class:`supernet.SpaceDefinition` as JSON text, not a JSON column:
    PostgreSQL's JSONB reorders object keys, and the order of the ``choices`` is the order of a
    subnet's per-layer indices. Only tasks are ever added to it
    (``version`` counts the changes, 1 when registered): subnets, arch strings and encodings do not
    depend on the tasks, so what is stored under the space stays valid.
    """

    __tablename__ = "spaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    definition: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SupernetVersion(Base):
    """A registered supernet checkpoint of a space (``POST /v1/supernets``, ``gpnas supernets add``):
    a safetensors file stored once by its sha256 under the server's data directory. ``version``
    counts up per space from 1; the same bytes registered again for a space are the same version.
    """

    __tablename__ = "supernet_versions"
    __table_args__ = (
        UniqueConstraint("space", "version", name="uq_supernet_versions_space_version"),
        UniqueConstraint("space", "sha256", name="uq_supernet_versions_space_sha256"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    space: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeploymentAnswerRow(Base):
    """The stored answer of a deployment query: the response JSON, under the key of the request
    and of the predictor versions it was computed from (:mod:`search_service.services.deployments`)."""

    __tablename__ = "deployment_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    space: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(128))
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ArtifactRow(Base):
    """A built deployable file (``POST /v1/artifacts``): stored once by its SHA-256 at
    ``<data_dir>/artifacts/<digest>.onnx``, under the key of the request that built it (its
    space, arch or tasks, input, weights and precision), so that an equal request finds it."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_key: Mapped[str] = mapped_column(String(64), unique=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    space: Mapped[str] = mapped_column(String(64))
    # The canonical ArtifactCreate JSON (archs in their space's spelling).
    request: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    max_abs_diff: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
