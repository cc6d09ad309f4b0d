"""Pydantic v2 request (``*Create`` / ``*Request``) and response (``*Public`` / ``*Response``) models.

Everything a client can send is bounded here (lengths, ranges, finite floats, no NUL characters),
so that the database never sees a value it would reject: bad input is a 422 naming the field.
These are shapes: they hold no server state, so a client process builds them for any space. What
depends on the server's registry (known spaces and tasks, canonical archs) is checked by the
server, in :mod:`search_service.space_checks`.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .domain import JobStatus, Metric

INT32 = 2**31 - 1
JOB_ID_PREFIX = "job-"  # measurement ids of job results: "job-<job id>", so a result is stored once

# Names of devices, tasks, spaces, profilers: printable, no spaces, usable in URLs and file names.
Name = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+-]*$", min_length=1, max_length=128)
]
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _plain_text(value: str) -> str:
    """Reject NUL (PostgreSQL cannot store it) and lone surrogates (not encodable as UTF-8, so
    a stored one would break every later answer that shows it)."""
    found = _UNSTORABLE.search(value)
    if found:
        what = "NUL characters" if found.group() == "\x00" else "lone surrogates (not UTF-8)"
        raise ValueError(f"{what} are not allowed")
    return value


# Free text (errors, versions): any characters but NUL and lone surrogates.
Text = Annotated[str, StringConstraints(max_length=4000), AfterValidator(_plain_text)]
ClientId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", min_length=1, max_length=64)
]


def _json_number(value: Any) -> Any:
    """Refuse a string or a boolean where a number belongs.

    Lax pydantic reads ``"12.5"`` as 12.5 and ``true`` as 1, so a quoted number or a flag sent to
    the wrong field would pass as a number the client never sent. Numbers of any Python type
    pass on (an agent's numpy scalars, ``3.0`` for an integer), unlike pydantic's strict mode.
    """
    if isinstance(value, str | bool):
        kind = "boolean" if isinstance(value, bool) else "string"
        raise ValueError(f"must be a JSON number, not a {kind}")
    return value


#: Marks a field of a request body as a number: see :func:`_json_number` (query parameters,
#: which arrive as text, must not carry it).
JsonNumber = BeforeValidator(_json_number)


def _positive_zero(value: float) -> float:
    """``-0.0`` as ``0.0``: SQLite stores no negative zero, so it would not read back as sent."""
    return value + 0.0


FiniteFloat = Annotated[float, JsonNumber, Field(allow_inf_nan=False), AfterValidator(_positive_zero)]
NonNegFloat = Annotated[float, JsonNumber, Field(allow_inf_nan=False, ge=0.0), AfterValidator(_positive_zero)]
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$", min_length=1, max_length=64)]


DRIFT_HELP = (
    "The measuring batch's drift: (p90 - p10) / median of the reference subnet's times across the "
    "batch's rounds."
)
FLAGGED_HELP = "The batch drifted beyond its profiler's threshold; refits give this value less weight."
REFERENCE_ARCH_HELP = "The reference subnet timed in every round of the measuring batch (latency only)."
REFERENCE_MS_HELP = (
    "The batch's reference level: the reference subnet's median time across the batch's rounds (ms). "
    "The value is stored as sent; fits rescale it by the device's long-run level / this level."
)
PositiveFloat = Annotated[float, JsonNumber, Field(allow_inf_nan=False, gt=0.0)]
ReferenceArch = Annotated[str, StringConstraints(min_length=1, max_length=256)]


def _check_level(reference_arch: str | None, reference_ms: float | None) -> None:
    """ValueError unless a batch's level comes with its reference subnet, or neither is given."""
    if (reference_arch is None) != (reference_ms is None):
        raise ValueError("give both reference_arch and reference_ms (the batch's level), or neither")


MAX_JSON_DEPTH = 16


def _clean_json(value: Any, path: str = "", depth: int = 0) -> Any:
    """``value`` as every backend stores and returns it, or ValueError naming the place.

    Rejected: NaN and infinities; numbers beyond ±2**53 (JSON readers and PostgreSQL's JSONB,
    which keeps numbers as decimals, would not return them as sent: 1e308 comes back as a
    309-digit integer); NUL characters and lone surrogates in keys or strings; nesting deeper
    than :data:`MAX_JSON_DEPTH` levels. ``-0.0`` becomes ``0.0``, which is what comes back.
    """
    where = path or "value"
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: NaN and infinities are not allowed")
        if abs(value) > 2**53:
            raise ValueError(f"{where}: numbers beyond ±2**53 are not allowed")
        return value + 0.0
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise ValueError(f"{where}: numbers beyond ±2**53 are not allowed")
    if isinstance(value, str):
        try:
            return _plain_text(value)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            try:
                _plain_text(key)
            except ValueError as error:
                raise ValueError(f"{where}: in a key, {error}") from None
            out[key] = _clean_json(item, f"{path}.{key}" if path else key, depth + 1)
        return out
    if isinstance(value, list):
        return [_clean_json(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    return value


JSONObject = Annotated[dict[str, Any], AfterValidator(_clean_json)]


# Only the shape: whether this server knows the space is checked server-side
# (search_service.space_checks), so that a client can build requests for any registered space.
SpaceName = Annotated[str, StringConstraints(max_length=64)]


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    schema_revision: str


class SpaceSummary(BaseModel):
    name: str
    tasks: list[str]
    cardinality: str = Field(description="Exact number of subnets, as a decimal string.")
    score_label: str = Field(description="What a score on this space's tasks means (higher is better).")
    preset: bool = Field(
        True, description="Built in (false: registered as data with POST /v1/spaces, can gain tasks)."
    )


class SpaceDetail(SpaceSummary):
    depths: list[int]
    choices: dict[str, list[Any]]


SUPERNET_VERSION_HELP = (
    "The registered version of the space's supernet weights (GET /v1/supernets) a score was "
    "measured with; fits and fronts of a task use one version's scores. Null: a latency, or a "
    "score of unnamed (legacy) weights."
)


class SupernetPublic(BaseModel):
    """A registered supernet checkpoint: one version of a space's weights."""

    model_config = ConfigDict(from_attributes=True)

    space: str
    version: int = Field(description="Counts up from 1 per space; what score measurements name.")
    sha256: str = Field(description="The safetensors file's SHA-256 (hex), under which it is stored.")
    size: int = Field(description="The file's size in bytes.")
    created_at: dt.datetime


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    profiler: Name = Field(description="A profiler registered under the gpnas.profilers entry points.")
    settings: JSONObject = Field(default_factory=dict)


class LevelShiftPublic(BaseModel):
    """A batch whose reference level lies beyond the service's ``level_shift_threshold`` from its
    device's long-run level: at ingest the median of the device's other batches' levels, in the
    device's levels the median of all. Its values are stored as sent and rescaled to the long-run
    level like every other batch's."""

    space: str
    device: str
    reference_arch: str
    batch_ms: float = Field(description="The batch's reference level (ms).")
    long_run_ms: float = Field(description="The device's long-run level it is compared with (ms).")
    shift: float = Field(description="batch_ms / long_run_ms - 1: +0.15 is 15% slower.")
    measurements: int = Field(description="Measurements of the batch (in this request, or stored).")


class DeviceLevel(BaseModel):
    """A device's long-run reference level in a space, for one reference subnet."""

    space: str
    reference_arch: str
    long_run_ms: float = Field(description="Median of the batches' reference levels (ms).")
    batches: int = Field(description="Batches with this reference (one level each).")
    shifted: list[LevelShiftPublic] = Field(
        description="Its batches whose level lies beyond the threshold from long_run_ms."
    )


class DevicePublic(BaseModel):
    name: str
    profiler: str
    settings: dict[str, Any] | None = Field(description="Null for callers without a token.")


_EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)


def _measurement_time(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC (naive means UTC), between 1970 and 3000: every database and JSON reader
    holds that range, whereas e.g. year 1 at +14:00 is not a representable UTC time."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        utc = None
    if utc is None or not _EARLIEST <= utc < _LATEST:
        raise ValueError(f"measured_at must lie between {_EARLIEST.date()} and {_LATEST.date()} (UTC)")
    return utc


class MeasurementCreate(BaseModel):
    """One measured value: a latency on a device, or a score on a task."""

    model_config = ConfigDict(extra="forbid")

    id: ClientId = Field(description="Client-chosen unique id (e.g. a UUID); re-posting it is a no-op.")
    space: SpaceName
    arch: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    device: Name | None = None
    task: Name | None = None
    metric: Metric
    value: FiniteFloat
    std: NonNegFloat | None = None
    repeats: Annotated[int, JsonNumber, Field(ge=1, le=INT32)] | None = None
    profiler: Name | None = None
    profiler_version: Annotated[Text, StringConstraints(max_length=64)] | None = None
    environment: JSONObject | None = None
    drift: NonNegFloat | None = Field(None, description=DRIFT_HELP)
    flagged: bool = Field(False, description=FLAGGED_HELP)
    reference_arch: ReferenceArch | None = Field(None, description=REFERENCE_ARCH_HELP)
    reference_ms: PositiveFloat | None = Field(None, description=REFERENCE_MS_HELP)
    supernet_version: Annotated[int, JsonNumber, Field(ge=1, le=INT32)] | None = Field(
        None, description=SUPERNET_VERSION_HELP
    )
    measured_at: dt.datetime | None = None

    @field_validator("measured_at")
    @classmethod
    def _in_range(cls, value: dt.datetime | None) -> dt.datetime | None:
        return None if value is None else _measurement_time(value)

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str, info: ValidationInfo) -> str:
        if value.startswith(JOB_ID_PREFIX) and not (info.context or {}).get("job_result"):
            raise ValueError(f"ids starting with {JOB_ID_PREFIX!r} are reserved for job results")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MeasurementCreate:
        if (self.device is None) == (self.task is None):
            raise ValueError("give exactly one of device (for a latency) or task (for a score)")
        if self.device is not None and self.metric != Metric.LATENCY:
            raise ValueError("a measurement on a device must have metric 'latency_ms'")
        if self.task is not None and self.metric != Metric.SCORE:
            raise ValueError("a measurement on a task must have metric 'score'")
        if self.metric == Metric.LATENCY and self.value <= 0:
            raise ValueError("a latency must be positive")
        _check_level(self.reference_arch, self.reference_ms)
        if self.reference_arch is not None and self.metric != Metric.LATENCY:
            raise ValueError("only a latency has a reference level (reference_arch, reference_ms)")
        if self.supernet_version is not None and self.metric != Metric.SCORE:
            raise ValueError(
                "a latency does not depend on the weights: only a score names a supernet_version"
            )
        return self


class MeasurementBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    measurements: list[MeasurementCreate] = Field(min_length=1, max_length=10_000)


class MeasurementBatchResponse(BaseModel):
    inserted: int
    duplicate: int
    level_shifts: list[LevelShiftPublic] = Field(
        default_factory=list,
        description="Batches of the request whose reference level moved beyond the threshold.",
    )


class MeasurementPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    client_id: str
    space: str
    arch: str
    device: str | None
    task: str | None
    metric: str
    value: float
    std: float | None
    repeats: int | None
    profiler: str | None
    profiler_version: str | None
    environment: dict[str, Any] | None = Field(description="Null for callers without a token.")
    drift: float | None
    flagged: bool
    reference_arch: str | None = Field(description=REFERENCE_ARCH_HELP)
    reference_ms: float | None = Field(description=REFERENCE_MS_HELP)
    supernet_version: int | None = Field(description=SUPERNET_VERSION_HELP)
    job_id: int | None
    measured_at: dt.datetime | None
    created_at: dt.datetime
    retracted_at: dt.datetime | None = Field(
        description="When it was retracted (DELETE /v1/measurements/{id}); refits leave it out."
    )
    retracted_reason: str | None


class MeasurementPage(BaseModel):
    total: int
    limit: int
    offset: int
    measurements: list[MeasurementPublic]


#: A cap on a subnet's parameter count: a positive integer that fits the counts' int64.
MaxParams = Annotated[int, Field(ge=1, le=2**63 - 1)]
#: :data:`MaxParams` in a request body (``MaxParams`` itself is also a query parameter).
BodyMaxParams = Annotated[MaxParams, JsonNumber]
FrontObjectiveName = Literal["latency", "params"]
_PARAMS_HELP = (
    "Exact parameter count of the subnet as a standalone model for the task (its head included "
    "when the task has one); null only for a space without a parameter count (every preset and "
    "defined space has one)."
)
_MACS_HELP = "Multiply-accumulates of one forward pass of one image (the space's analytic count)."


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space: SpaceName
    task: Name
    device: Name
    latency_budget_ms: Annotated[float, JsonNumber, Field(gt=0.0, allow_inf_nan=False)]
    confidence: Annotated[float, JsonNumber, Field(gt=0.0, lt=1.0)] = 0.9
    max_params: BodyMaxParams | None = Field(
        None, description="Choose only among subnets with at most this many parameters (their `params`)."
    )


class Predicted(BaseModel):
    score: float
    score_std: float
    latency_ms: float
    latency_std: float
    p_feasible: float


class QueryResponse(BaseModel):
    arch: str
    config: dict[str, Any]
    params: int | None = Field(description=_PARAMS_HELP)
    macs: int | None = Field(description=_MACS_HELP)
    predicted: Predicted
    front_version: int
    artifact: ArtifactCreate | None = Field(
        None,
        description="How to get this subnet as a file: POST it as is to `/v1/artifacts` (null for "
        "a space without a supernet).",
    )


class ParetoPoint(BaseModel):
    arch: str
    score: float
    score_std: float
    latency_ms: float
    latency_std: float
    params: int | None = Field(description=_PARAMS_HELP)
    macs: int | None = Field(description=_MACS_HELP)
    measured: bool


class ParetoPage(BaseModel):
    points: list[ParetoPoint]
    total: int
    limit: int
    offset: int
    version: int
    objective: FrontObjectiveName = Field(
        "latency",
        description="What the front trades the score against: `latency` (ordered by predicted "
        "latency) or `params` (ordered by parameter count).",
    )
    max_params: int | None = Field(None, description="The parameter cap the front was restricted to, if any.")


# Selection builds an (n + pool) x (n + pool) covariance: n is bounded so that one request cannot
# ask for gigabytes. Candidates are only parsed and subsampled, so they may be many more.
MAX_CAMPAIGN_SUBNETS = 1000
MAX_CAMPAIGN_CANDIDATES = 100_000


class CampaignCreate(BaseModel):
    """Measure ``n`` subnets on ``device``: their latency, or their score on ``task`` when given."""

    model_config = ConfigDict(extra="forbid")

    space: SpaceName
    device: Name = Field(description="The registered device (agent) that runs the jobs.")
    task: Name | None = Field(None, description="Score this task instead of timing the device.")
    n: Annotated[int, JsonNumber, Field(ge=1, le=MAX_CAMPAIGN_SUBNETS)]
    strategy: Name | None = Field(
        None,
        description="A sampling strategy of predictors.list_strategies(). Default: cost-stratified for a "
        "latency campaign (the picks span the space's analytic cost range, cheapest and costliest "
        "included), random for a score campaign.",
    )
    seed: Annotated[int, JsonNumber, Field(ge=0, le=INT32)] | None = None
    candidates: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(
        None,
        max_length=MAX_CAMPAIGN_CANDIDATES,
        description="Pick only among these archs, e.g. the rows of a table that only the device's agent "
        "can read. Default: any subnet, or a replay device's table when it lies under the server's "
        "GPNAS_DATA_DIR. They are parsed with the selection (off the event loop: 100,000 take seconds).",
    )

    @model_validator(mode="after")
    def _default_strategy(self) -> CampaignCreate:
        self.strategy = self.strategy_name
        return self

    @property
    def strategy_name(self) -> str:
        """The sampling strategy, with its default for the campaign's metric."""
        return self.strategy or ("random" if self.task is not None else "cost-stratified")


class CampaignPublic(BaseModel):
    id: int
    space: str
    device: str
    task: str | None
    metric: str
    strategy: str
    n: int
    seed: int | None
    jobs: dict[str, int] = Field(description="Number of jobs per status.")
    created_at: dt.datetime


MAX_LEASE_JOBS = 64


class LeaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: Name
    lease_seconds: Annotated[int, JsonNumber, Field(ge=1, le=86_400)] = 60
    count: Annotated[int, JsonNumber, Field(ge=1, le=MAX_LEASE_JOBS)] = Field(
        1, description="Lease up to this many jobs of the device at once, to time them as one batch."
    )


class JobLease(BaseModel):
    id: int
    space: str
    arch: str
    device: str | None
    task: str | None
    metric: Metric
    lease_token: str
    lease_expires_at: dt.datetime


class LeaseResponse(BaseModel):
    jobs: list[JobLease] = Field(description="The leased jobs, oldest first (empty: none available).")
    job: JobLease | None = Field(description="The first of ``jobs``, for agents that lease one at a time.")


class HeartbeatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_token: Token
    lease_seconds: Annotated[int, JsonNumber, Field(ge=1, le=86_400)] = 60


class HeartbeatResponse(BaseModel):
    lease_expires_at: dt.datetime


class ResultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_token: Token
    value: FiniteFloat
    std: NonNegFloat | None = None
    repeats: Annotated[int, JsonNumber, Field(ge=1, le=INT32)] | None = None
    profiler: Name | None = None
    profiler_version: Annotated[Text, StringConstraints(max_length=64)] | None = None
    environment: JSONObject | None = None
    drift: NonNegFloat | None = Field(None, description=DRIFT_HELP)
    flagged: bool = Field(False, description=FLAGGED_HELP)
    reference_arch: ReferenceArch | None = Field(None, description=REFERENCE_ARCH_HELP)
    reference_ms: PositiveFloat | None = Field(None, description=REFERENCE_MS_HELP)

    @model_validator(mode="after")
    def _level(self) -> ResultRequest:
        _check_level(self.reference_arch, self.reference_ms)
        return self


class ResultResponse(BaseModel):
    status: Literal[JobStatus.DONE]
    measurement_id: int


class FailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_token: Token
    error: Text = ""


class FailResponse(BaseModel):
    status: Literal[JobStatus.QUEUED, JobStatus.FAILED]
    attempts: int


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    campaign_id: int | None
    space: str
    arch: str
    device: str
    task: str | None
    metric: str
    status: str
    attempts: int
    lease_expires_at: dt.datetime | None
    last_error: str | None = Field(description="Null for callers without a token.")
    measurement_id: int | None


class JobPage(BaseModel):
    total: int
    limit: int
    offset: int
    jobs: list[JobPublic]


class RefitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    space: SpaceName | None = Field(None, description="Only this space (default: all).")
    wait: bool = Field(True, description="Refit now and answer when done; false: wake the worker and return.")


class PredictorVersionPublic(BaseModel):
    space: str
    metric: str
    target: str
    version: int
    kind: str
    n_train: int = Field(
        description="Distinct subnets it was fitted on (values skipped as impossible left out)."
    )


class FrontVersionPublic(BaseModel):
    space: str
    task: str
    device: str
    version: int
    n_points: int


class RefitResponse(BaseModel):
    status: Literal["done", "scheduled"]
    predictors: list[PredictorVersionPublic]
    fronts: list[FrontVersionPublic]
    errors: list[str]
    notes: list[str] = Field(
        default_factory=list, description="What the refit did besides, e.g. impossible values it skipped."
    )


TokenStatus = Literal["active", "expired", "revoked"]
TOKEN_MIN_EXPIRES_S = 60
TOKEN_MAX_EXPIRES_S = 5 * 365 * 86_400  # five years: longer-lived secrets should be rotated instead
TokenLabel = Annotated[Text, StringConstraints(min_length=1, max_length=128)]


class TokenCreate(BaseModel):
    """A new API token: unrestricted, or for one registered device; optionally expiring."""

    model_config = ConfigDict(extra="forbid")

    label: TokenLabel = Field(description="Who or what the token is for (shown by the listing).")
    device: Name | None = Field(
        None, description="A registered device: the token may only lease and post for it."
    )
    expires_in_s: Annotated[int, JsonNumber, Field(ge=TOKEN_MIN_EXPIRES_S, le=TOKEN_MAX_EXPIRES_S)] | None = (
        Field(None, description="Seconds until the token stops working (default: never).")
    )


class TokenPublic(BaseModel):
    """A token as listed: never its secret nor the secret's hash."""

    id: int
    label: str | None
    device: str | None = Field(description="The device it is restricted to; null: unrestricted.")
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    status: TokenStatus


class TokenCreated(BaseModel):
    """A created token, with its secret: the only answer that ever contains it."""

    id: int
    token: str = Field(description="The secret for 'Authorization: Bearer'; it cannot be shown again.")
    label: str | None
    device: str | None
    expires_at: dt.datetime | None
    created_at: dt.datetime


# ---------------------------------------------------------------------- deployments
DeploymentInput = Literal["separate", "shared"]
WeightDtype = Literal["float32", "float16", "bfloat16", "int8"]
MAX_DEPLOYMENT_TASKS = 16
#: The largest ``max_weight_mb`` (10^12 MB, an exabyte): its parameter count at one byte a
#: weight (int8) still fits the counts' int64, as :data:`MaxParams` does.
MAX_WEIGHT_MB = 1e12


class DeploymentTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Name
    weight: Annotated[float, JsonNumber, Field(gt=0.0, allow_inf_nan=False)] = Field(
        1.0, description="Weight of the task's normalised predicted score in the objective."
    )
    latency_budget_ms: Annotated[float, JsonNumber, Field(gt=0.0, allow_inf_nan=False)] | None = Field(
        None, description="The task's latency budget (none: unconstrained)."
    )


class DeploymentQueryRequest(BaseModel):
    """Several tasks on one chip: their paths are chosen together, since the weights they share
    are stored once (and, on a shared input, the layers they share are computed once)."""

    model_config = ConfigDict(extra="forbid")

    space: SpaceName
    device: Name
    tasks: Annotated[list[DeploymentTask], Field(min_length=1, max_length=MAX_DEPLOYMENT_TASKS)]
    max_params: BodyMaxParams | None = Field(
        None, description="Most parameters the deployment may hold, shared weights counted once."
    )
    max_weight_mb: (
        Annotated[float, JsonNumber, Field(gt=0.0, le=MAX_WEIGHT_MB, allow_inf_nan=False)] | None
    ) = Field(
        None,
        description="Most megabytes (10^6 bytes) of weights, stored as `dtype`; at most 10^12 (an "
        "exabyte), so that the parameter count it allows fits 64 bits.",
    )
    dtype: WeightDtype = Field("float32", description="How the weights are stored, for max_weight_mb.")
    confidence: Annotated[float, JsonNumber, Field(gt=0.0, lt=1.0)] = 0.9
    input: DeploymentInput = Field(
        "separate",
        description="`separate`: each task reads its own image; `shared`: one image for every "
        "task, so the layers their paths share are computed once (every task then waits for the "
        "one joint forward, so each budget bounds that).",
    )

    @model_validator(mode="after")
    def _tasks(self) -> DeploymentQueryRequest:
        names = [t.task for t in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"tasks must be distinct; repeated: {', '.join(repeated)}")
        if self.max_params is not None and self.max_weight_mb is not None:
            raise ValueError("give max_params or max_weight_mb, not both")
        return self


class DeploymentPrediction(BaseModel):
    score: float
    score_std: float
    normalised_score: float = Field(
        description="(score - lo) / (hi - lo), lo and hi the task's lowest and highest measured score."
    )
    latency_ms: float = Field(description="The task's latency: its path's, or the joint forward's (shared).")
    latency_std: float
    p_feasible: float = Field(description="P(latency <= the task's budget); 1 without a budget.")


class DeploymentTaskAnswer(BaseModel):
    task: str
    arch: str
    config: dict[str, Any]
    params_alone: int = Field(description="Parameters of this path as its own standalone model.")
    predicted: DeploymentPrediction


class DeploymentQueryResponse(BaseModel):
    space: str
    device: str
    input: DeploymentInput
    tasks: list[DeploymentTaskAnswer]
    params: int = Field(description="Parameters of the deployment: what the tasks share counts once.")
    weight_mb: float = Field(description="Megabytes of its weights stored as `dtype`.")
    dtype: WeightDtype
    independent_params: int = Field(description="The tasks' paths as separate models: sum of params_alone.")
    objective: float = Field(description="Weighted sum of the tasks' normalised predicted scores.")
    method: Literal["exact", "evolution"]
    evaluations: int
    predictor_versions: dict[str, int] = Field(
        description="Ids of the predictor versions used: `score/<task>` and `latency/<device>`."
    )
    artifact: ArtifactCreate | None = Field(
        None, description="How to get this deployment as one file: POST it as is to `/v1/artifacts`."
    )


# ---------------------------------------------------------------------------------- artifacts
ArtifactPrecision = Literal["fp32", "fp16"]
ArchString = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ArtifactWeights(BaseModel):
    """The weights an artifact holds: a registered version of the space's supernet, or random
    weights from a seed. Random weights only when named: there is no default."""

    model_config = ConfigDict(extra="forbid")

    supernet_version: int | None = Field(
        None,
        ge=1,
        le=INT32,
        description="A registered version of the space's supernet (`GET /v1/supernets`).",
    )
    random_seed: int | None = Field(
        None, ge=0, le=INT32, description="Random weights from this seed (for latency work only)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ArtifactWeights:
        if (self.supernet_version is None) == (self.random_seed is None):
            raise ValueError("give exactly one of supernet_version or random_seed")
        return self


class ArtifactCreate(BaseModel):
    """What to build: a subnet (``arch``, and ``task`` for its path and head) or a multi-task
    deployment (``tasks``: ``{task: arch}``, and its ``input``), with named weights, as ONNX."""

    model_config = ConfigDict(extra="forbid")

    space: SpaceName
    arch: ArchString | None = Field(None, description="A subnet's arch string (give arch or tasks).")
    task: Name | None = Field(None, description="The subnet's task: its path and head (subnets only).")
    tasks: Annotated[dict[Name, ArchString], Field(min_length=1, max_length=MAX_DEPLOYMENT_TASKS)] | None = (
        Field(None, description="A deployment: each task's arch string (give arch or tasks).")
    )
    input: DeploymentInput | None = Field(
        None,
        description="A deployment's inputs: `separate` (default; one `images_<task>` per task) or "
        "`shared` (one `images`).",
    )
    weights: ArtifactWeights
    precision: ArtifactPrecision = Field("fp32", description="`fp32`, or `fp16` weights and compute.")

    @model_validator(mode="after")
    def _subnet_or_deployment(self) -> ArtifactCreate:
        if (self.arch is None) == (self.tasks is None):
            raise ValueError("give exactly one of arch (a subnet) or tasks (a deployment)")
        if self.tasks is not None and self.task is not None:
            raise ValueError("task names a subnet's path; a deployment names its tasks in tasks")
        if self.arch is not None and self.input is not None:
            raise ValueError("input applies to deployments (tasks) only")
        if self.tasks is not None and self.input is None:
            self.input = "separate"
        return self


class ArtifactPublic(BaseModel):
    """A stored artifact: a deployable file, by its SHA-256."""

    digest: str = Field(description="The file's SHA-256 (hex), under which it is stored and downloaded.")
    size_bytes: int
    format: Literal["onnx"] = "onnx"
    precision: ArtifactPrecision
    space: str
    arch: str | None
    task: str | None
    tasks: dict[str, str] | None
    input: DeploymentInput | None
    weights: ArtifactWeights
    max_abs_diff: float = Field(
        description="Largest |onnxruntime - torch| of its outputs on a fixed input (batch of 2)."
    )
    url: str = Field(description="Where to download it: `/v1/artifacts/<digest>`.")
    created_at: dt.datetime


class ArtifactPage(BaseModel):
    total: int
    limit: int
    offset: int
    artifacts: list[ArtifactPublic]
