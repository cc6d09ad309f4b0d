"""A typed client of the gpnas HTTP API: one method per route, named after its OpenAPI operation id.

Methods take and return the service's own pydantic schemas (:mod:`search_service.schemas`), so a
request is validated before it is sent and an answer is parsed into the model the route declares.
Network errors, 429 and 5xx answers are retried with exponential backoff and jitter, waiting at
least what a ``Retry-After`` asks for up to the longest backoff (every route is safe to repeat:
measurements are keyed by client id, job results by lease token); other errors raise a typed
:class:`ApiError`.

This module imports only ``httpx``, ``pydantic`` and the schemas: not FastAPI nor SQLAlchemy, so a
device agent or a script can use it without the server's dependencies being loaded.

Example::

    from search_service.client import GpnasClient
    from search_service.schemas import QueryRequest

    with GpnasClient("http://127.0.0.1:8000", token) as gpnas:
        best = gpnas.query(
            QueryRequest(space="ufo-track2", task="market1501", device="cpu", latency_budget_ms=40)
        )
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from supernet import SpaceDefinition, TaskDefinition

from .schemas import (
    ArtifactCreate,
    ArtifactPage,
    ArtifactPublic,
    CampaignCreate,
    CampaignPublic,
    DeploymentQueryRequest,
    DeploymentQueryResponse,
    DeviceCreate,
    DeviceLevel,
    DevicePublic,
    FailRequest,
    FailResponse,
    FrontObjectiveName,
    Health,
    HeartbeatRequest,
    HeartbeatResponse,
    JobPage,
    JobPublic,
    LeaseRequest,
    LeaseResponse,
    MeasurementBatch,
    MeasurementBatchResponse,
    MeasurementPage,
    MeasurementPublic,
    ParetoPage,
    QueryRequest,
    QueryResponse,
    RefitRequest,
    RefitResponse,
    ResultRequest,
    ResultResponse,
    SpaceDetail,
    SpaceSummary,
    SupernetPublic,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)

__all__ = [
    "ApiError",
    "ClientError",
    "Conflict",
    "DigestMismatch",
    "GpnasClient",
    "Invalid",
    "NotFound",
    "ServerUnreachable",
    "Unauthorized",
]

logger = logging.getLogger("gpnas.client")
#: Bytes read from disk at a time when a file is uploaded.
UPLOAD_CHUNK_BYTES = 1 << 20
#: The type of an answer: a response model or a type like ``list[Model]``.
AnswerT = TypeVar("AnswerT")


class ClientError(Exception):
    """Anything :class:`GpnasClient` raises about the service: an error answer or no answer."""


class ApiError(ClientError):
    """The service answered with an error status that retrying does not fix.

    Attributes:
        status_code: The HTTP status.
        detail: The answer's ``detail`` (a message, or FastAPI's list of validation errors), or
            its text when it is not the service's JSON error.
        method: The request's method.
        path: The request's path.
    """

    def __init__(self, status_code: int, detail: Any, *, method: str = "", path: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        self.method = method
        self.path = path
        super().__init__(status_code, detail)

    @property
    def message(self) -> str:
        """``detail`` as one line: validation errors as ``loc: msg`` joined by ``;``."""
        return describe_detail(self.detail)

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method else ""
        return f"{where}HTTP {self.status_code}: {self.message}"


class Unauthorized(ApiError):
    """401 (no or a bad token) or 403 (the token may not do this)."""


class NotFound(ApiError):
    """404: no such device, job, campaign, measurement, space or token."""


class Conflict(ApiError):
    """409: e.g. another agent holds the job, a duplicate name, or a front not computed yet."""


class Invalid(ApiError):
    """400, 413 or 422: the request was malformed, too large or failed validation."""


class DigestMismatch(ClientError):
    """A downloaded file's SHA-256 is not the digest asked for (nothing is kept)."""


class ServerUnreachable(ClientError):
    """Every attempt failed with a network error, 429 or 5xx.

    Attributes:
        attempts: Requests sent (``max_retries + 1``).
        last: The last failure, e.g. ``ConnectError: ...`` or ``HTTP 503: ...``.
        status_code: The last answer's status, or ``None`` when the last attempt got no answer.
        method: The request's method.
        path: The request's path.
    """

    def __init__(
        self, method: str, path: str, attempts: int, last: str, status_code: int | None = None
    ) -> None:
        self.method = method
        self.path = path
        self.attempts = attempts
        self.last = last
        self.status_code = status_code
        super().__init__(f"{method} {path}: server unreachable after {attempts} attempts ({last})")


_ERRORS: dict[int, type[ApiError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: Invalid,
    422: Invalid,
}


def describe_detail(detail: Any) -> str:
    """An error answer's ``detail`` as one line (validation errors as ``loc: msg; ...``)."""
    if isinstance(detail, list) and all(isinstance(item, Mapping) for item in detail):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg')}" for item in detail
        )
    return str(detail)


def _error_detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500]
    if isinstance(body, Mapping) and "detail" in body:
        return body["detail"]
    return body


def _retry_after_s(response: httpx.Response) -> float | None:
    """The seconds a ``Retry-After`` header asks for (its delta-seconds form), or None."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


class GpnasClient:
    """The gpnas service's HTTP API, one typed method per route.

    Args:
        base_url: The service's address, e.g. ``http://127.0.0.1:8000``; every request goes to
            ``base_url`` + the route's path.
        token: API token, sent as ``Authorization: Bearer <token>`` (reads work without one
            unless the server says otherwise).
        http: HTTP client to send with (e.g. a test's ``TestClient`` or one with a custom
            transport); its own timeout applies. By default one is created (and closed by
            :meth:`close`).
        timeout: Seconds per request of the client created when ``http`` is not given.
        max_retries: Retries per request on network errors, 429 and 5xx answers before
            :class:`ServerUnreachable`.
        backoff: First retry delay in seconds; doubled per attempt up to ``max_backoff``, each
            delay drawn from [50%, 100%] of that (jitter, so that many clients do not retry in step).
        max_backoff: Longest delay between two attempts, in seconds.
        sleep: Function used to wait between attempts (tests pass a fake).

    Every method raises :class:`Unauthorized` on 401 or 403 (never retried), :class:`NotFound` on
    404, :class:`Conflict` on 409, :class:`Invalid` on 400, 413 or 422, :class:`ApiError` on another
    error status or an answer that is not the route's schema, and :class:`ServerUnreachable` when
    every attempt failed with a network error, 429 or 5xx. Request models validate their fields
    when built (``pydantic.ValidationError``), before anything is sent.

    Raises:
        ValueError: If ``max_retries`` is negative.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
        max_retries: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self._owns_http = http is None
        self.http = http if http is not None else httpx.Client(timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    # ------------------------------------------------------------------ lifecycle
    def with_retries(self, max_retries: int) -> GpnasClient:
        """A client like this one (same connection pool, token, backoff) retrying ``max_retries``
        times, e.g. ``0`` for a heartbeat that is simply sent again at the next beat."""
        return GpnasClient(
            self.base_url,
            self.token,
            http=self.http,
            max_retries=max_retries,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            sleep=self.sleep,
        )

    def close(self) -> None:
        """Close the HTTP client if this object created it (a given ``http`` stays open)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> GpnasClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def request(
        self,
        method: str,
        path: str,
        body: BaseModel | None = None,
        params: Mapping[str, Any] | None = None,
        upload: Path | None = None,
    ) -> httpx.Response:
        """Send one request, retrying network errors, 429 and 5xx answers with backoff.

        Args:
            method: HTTP method.
            path: The route's path with its parameters filled in, e.g. ``/v1/jobs/3/fail``.
            body: Sent as JSON (the fields that were set, so the server's defaults apply to the rest).
            params: Query parameters; ``None`` values are left out.
            upload: A file sent as the body instead (streamed from disk, read again on a retry).

        Returns:
            The answer, with a status below 400.

        Raises:
            ApiError: Or its subclass for the status, on an error answer other than 429 and 5xx.
            ServerUnreachable: When every attempt failed.
        """
        payload = None if body is None else body.model_dump(mode="json", exclude_unset=True)
        query = None if params is None else {k: v for k, v in params.items() if v is not None}
        url = self.base_url + path
        last, last_status, asked = "", None, None
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                if upload is None:
                    response = self.http.request(
                        method, url, json=payload, params=query, headers=self._headers
                    )
                else:
                    response = self._send_file(method, url, query, upload)
            except httpx.TransportError as error:
                last, last_status, asked = f"{type(error).__name__}: {error}", None, None
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status < 500 and status != 429:
                    error_class = _ERRORS.get(status, ApiError)
                    raise error_class(status, _error_detail(response), method=method, path=path)
                last, last_status = f"HTTP {status}: {response.text[:200]}", status
                asked = _retry_after_s(response)
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2)
                if last_status is not None and asked is not None:
                    # A busy server says when to come back (its queue of heavy work, a restart).
                    delay = max(delay, min(asked, self.max_backoff))
                logger.warning("%s %s failed (%s); retry %d in %.1fs", method, path, last, attempt + 1, delay)
                self.sleep(delay)
        raise ServerUnreachable(method, path, attempts, last, last_status)

    def _send_file(
        self, method: str, url: str, query: Mapping[str, Any] | None, upload: Path
    ) -> httpx.Response:
        """One request whose body is the file ``upload``, read in chunks (its size declared, so a
        server refuses one over its limit before it is sent)."""
        headers = {
            **self._headers,
            "Content-Type": "application/octet-stream",
            "Content-Length": str(upload.stat().st_size),
        }
        with upload.open("rb") as file:
            chunks = iter(lambda: file.read(UPLOAD_CHUNK_BYTES), b"")
            return self.http.request(method, url, content=chunks, params=query, headers=headers)

    def _call(
        self,
        answer: type[AnswerT],
        method: str,
        path: str,
        body: BaseModel | None = None,
        params: Mapping[str, Any] | None = None,
        upload: Path | None = None,
    ) -> AnswerT:
        """:meth:`request`, its answer parsed as ``answer`` (a model or a type like ``list[M]``)."""
        response = self.request(method, path, body, params, upload)
        try:
            return _adapter(answer).validate_json(response.content)
        except ValidationError as error:
            detail = f"the answer is not a valid {getattr(answer, '__name__', answer)}: {error}"
            raise ApiError(response.status_code, detail, method=method, path=path) from None

    # ------------------------------------------------------------------ health and spaces
    def health(self) -> Health:
        """``GET /healthz``: the service and its database answer."""
        return self._call(Health, "GET", "/healthz")

    def list_spaces(self) -> list[SpaceSummary]:
        """``GET /v1/spaces``: every search space, the presets and the registered ones."""
        return self._call(list[SpaceSummary], "GET", "/v1/spaces")

    def get_space(self, space: str) -> SpaceDetail:
        """``GET /v1/spaces/{space}``: one space's tasks, depths and choices."""
        return self._call(SpaceDetail, "GET", f"/v1/spaces/{_segment(space)}")

    def get_space_definition(self, space: str) -> SpaceDefinition:
        """``GET /v1/spaces/{space}/definition``: the space as data (what ``create_space`` takes).

        Raises:
            NotFound: If no space has this name.
        """
        return self._call(SpaceDefinition, "GET", f"/v1/spaces/{_segment(space)}/definition")

    def create_space(self, body: SpaceDefinition) -> SpaceDetail:
        """``POST /v1/spaces`` (admin): register a space definition.

        Raises:
            Conflict: The name is a preset's or a registered space's.
        """
        return self._call(SpaceDetail, "POST", "/v1/spaces", body)

    def add_space_task(self, space: str, body: TaskDefinition) -> SpaceDetail:
        """``POST /v1/spaces/{space}/tasks`` (admin): add a task to a registered space.

        Raises:
            NotFound: No space of that name is registered.
            Conflict: The space is a preset or has the task already.
        """
        return self._call(SpaceDetail, "POST", f"/v1/spaces/{_segment(space)}/tasks", body)

    # ------------------------------------------------------------------ supernet weights
    def create_supernet(self, space: str, checkpoint: Path) -> SupernetPublic:
        """``POST /v1/supernets`` (admin): register the safetensors file ``checkpoint`` as the
        next version of ``space``'s supernet weights (the existing version if it is registered).

        Raises:
            Invalid: Not a safetensors file of the space's supernet (the message names the first
                bad key), an unknown space, or a file over the server's limit (413).
        """
        return self._call(SupernetPublic, "POST", "/v1/supernets", params={"space": space}, upload=checkpoint)

    def list_supernets(self, space: str | None = None) -> list[SupernetPublic]:
        """``GET /v1/supernets``: the registered weights (of ``space``, if given)."""
        return self._call(list[SupernetPublic], "GET", "/v1/supernets", params={"space": space})

    # ------------------------------------------------------------------ search
    def query(self, body: QueryRequest) -> QueryResponse:
        """``POST /v1/query``: the best predicted subnet within a latency budget (and the body's
        ``max_params``), with its parameter count and MACs.

        Raises:
            Invalid: When no subnet meets the budget (the detail names the fastest) or the
                parameter cap (the detail's field is ``max_params`` and names the smallest).
            Conflict: When the front is not computed yet (retry shortly).
        """
        return self._call(QueryResponse, "POST", "/v1/query", body)

    def pareto(
        self,
        space: str,
        task: str,
        device: str,
        limit: int = 100,
        offset: int = 0,
        *,
        objective: FrontObjectiveName = "latency",
        max_params: int | None = None,
    ) -> ParetoPage:
        """``GET /v1/pareto``: one page of the predicted front, ordered by latency; with
        ``objective="params"`` the (score, parameters) front, ordered by parameters; with
        ``max_params`` the front of the subnets that have at most that many parameters."""
        params = {
            "space": space,
            "task": task,
            "device": device,
            "limit": limit,
            "offset": offset,
            "objective": objective,
            "max_params": max_params,
        }
        return self._call(ParetoPage, "GET", "/v1/pareto", params=params)

    def query_deployment(self, body: DeploymentQueryRequest) -> DeploymentQueryResponse:
        """``POST /v1/deployments/query``: the paths of several tasks deployed together on one chip,
        under per-task latency budgets and a memory cap (shared weights counted once).

        Raises:
            Invalid: When no deployment meets the budgets (the detail names what the closest misses).
            Conflict: When a predictor is not fitted yet (retry shortly).
        """
        return self._call(DeploymentQueryResponse, "POST", "/v1/deployments/query", body)

    def refit(self, body: RefitRequest | None = None) -> RefitResponse:
        """``POST /v1/refit`` (admin): refit predictors and fronts now (default: every space, wait)."""
        return self._call(RefitResponse, "POST", "/v1/refit", body or RefitRequest())

    # ------------------------------------------------------------------ measurements
    def post_measurements(self, body: MeasurementBatch) -> MeasurementBatchResponse:
        """``POST /v1/measurements``: store a batch, all or nothing (re-posting an id is a duplicate)."""
        return self._call(MeasurementBatchResponse, "POST", "/v1/measurements", body)

    def list_measurements(
        self,
        *,
        space: str | None = None,
        device: str | None = None,
        task: str | None = None,
        metric: str | None = None,
        arch: str | None = None,
        include_retracted: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> MeasurementPage:
        """``GET /v1/measurements``: stored measurements, oldest first, filtered."""
        params = {
            "space": space,
            "device": device,
            "task": task,
            "metric": metric,
            "arch": arch,
            "include_retracted": include_retracted,
            "limit": limit,
            "offset": offset,
        }
        return self._call(MeasurementPage, "GET", "/v1/measurements", params=params)

    def retract_measurement(self, measurement_id: int, reason: str | None = None) -> MeasurementPublic:
        """``DELETE /v1/measurements/{id}``: retract a measurement (kept, left out of refits)."""
        return self._call(
            MeasurementPublic, "DELETE", f"/v1/measurements/{measurement_id}", params={"reason": reason}
        )

    # ------------------------------------------------------------------ devices and campaigns
    def create_device(self, body: DeviceCreate) -> DevicePublic:
        """``POST /v1/devices``: register a device with its profiler and settings."""
        return self._call(DevicePublic, "POST", "/v1/devices", body)

    def list_devices(self) -> list[DevicePublic]:
        """``GET /v1/devices``: every registered device."""
        return self._call(list[DevicePublic], "GET", "/v1/devices")

    def get_device(self, name: str) -> DevicePublic:
        """``GET /v1/devices/{name}``: one device (``settings`` is null without a token).

        Raises:
            NotFound: If no device has this name.
        """
        return self._call(DevicePublic, "GET", f"/v1/devices/{_segment(name)}")

    def get_device_levels(self, name: str) -> list[DeviceLevel]:
        """``GET /v1/devices/{name}/levels``: its long-run reference levels and shifted batches.

        Raises:
            NotFound: If no device has this name.
        """
        return self._call(list[DeviceLevel], "GET", f"/v1/devices/{_segment(name)}/levels")

    def create_campaign(self, body: CampaignCreate) -> CampaignPublic:
        """``POST /v1/campaigns``: choose subnets to measure and queue one job each."""
        return self._call(CampaignPublic, "POST", "/v1/campaigns", body)

    def list_campaigns(self) -> list[CampaignPublic]:
        """``GET /v1/campaigns``: every campaign with its jobs per status."""
        return self._call(list[CampaignPublic], "GET", "/v1/campaigns")

    def get_campaign(self, campaign_id: int) -> CampaignPublic:
        """``GET /v1/campaigns/{id}``: one campaign."""
        return self._call(CampaignPublic, "GET", f"/v1/campaigns/{campaign_id}")

    # ------------------------------------------------------------------ jobs
    def lease_jobs(self, body: LeaseRequest) -> LeaseResponse:
        """``POST /v1/jobs/lease``: lease up to ``count`` jobs of a device (none: an empty list)."""
        return self._call(LeaseResponse, "POST", "/v1/jobs/lease", body)

    def heartbeat_job(self, job_id: int, body: HeartbeatRequest) -> HeartbeatResponse:
        """``POST /v1/jobs/{id}/heartbeat``: extend a held lease.

        Raises:
            Conflict: If the lease is no longer held.
        """
        return self._call(HeartbeatResponse, "POST", f"/v1/jobs/{job_id}/heartbeat", body)

    def post_job_result(self, job_id: int, body: ResultRequest) -> ResultResponse:
        """``POST /v1/jobs/{id}/result``: store the job's measurement (idempotent per lease token).

        Raises:
            Conflict: If another agent holds or completed the job.
        """
        return self._call(ResultResponse, "POST", f"/v1/jobs/{job_id}/result", body)

    def fail_job(self, job_id: int, body: FailRequest) -> FailResponse:
        """``POST /v1/jobs/{id}/fail``: give the job back with an error.

        Raises:
            Conflict: If the lease is no longer held.
        """
        return self._call(FailResponse, "POST", f"/v1/jobs/{job_id}/fail", body)

    def list_jobs(
        self,
        *,
        campaign: int | None = None,
        device: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> JobPage:
        """``GET /v1/jobs``: jobs, filtered by campaign, device or status."""
        params = {"campaign": campaign, "device": device, "status": status, "limit": limit, "offset": offset}
        return self._call(JobPage, "GET", "/v1/jobs", params=params)

    def get_job(self, job_id: int) -> JobPublic:
        """``GET /v1/jobs/{id}``: one job (``last_error`` is null without a token)."""
        return self._call(JobPublic, "GET", f"/v1/jobs/{job_id}")

    # ------------------------------------------------------------------ tokens
    def create_token(self, body: TokenCreate) -> TokenCreated:
        """``POST /v1/tokens`` (admin): a new token; the answer is the only one with its secret."""
        return self._call(TokenCreated, "POST", "/v1/tokens", body)

    def list_tokens(self) -> list[TokenPublic]:
        """``GET /v1/tokens`` (admin): every token, without secrets."""
        return self._call(list[TokenPublic], "GET", "/v1/tokens")

    def revoke_token(self, token_id: int) -> TokenPublic:
        """``DELETE /v1/tokens/{id}`` (admin): revoke a token."""
        return self._call(TokenPublic, "DELETE", f"/v1/tokens/{token_id}")

    # ------------------------------------------------------------------ artifacts
    def create_artifact(self, body: ArtifactCreate) -> ArtifactPublic:
        """``POST /v1/artifacts``: build (or find) the ONNX file of a subnet or a deployment with
        named weights (the ``artifact`` of a query's answer is such a body, ready to send).

        Raises:
            Invalid: An unknown space, arch, task or supernet version, a build that failed (422,
                naming why) or one over the server's ``max_artifact_mb`` (413).
            Unauthorized: No token, or a device token.
        """
        return self._call(ArtifactPublic, "POST", "/v1/artifacts", body)

    def list_artifacts(self, space: str | None = None, limit: int = 100, offset: int = 0) -> ArtifactPage:
        """``GET /v1/artifacts``: a page of the stored artifacts (of ``space``, if given)."""
        params = {"space": space, "limit": limit, "offset": offset}
        return self._call(ArtifactPage, "GET", "/v1/artifacts", params=params)

    def download_artifact(self, digest: str, path: Path) -> Path:
        """``GET /v1/artifacts/{digest}``: stream the file to ``path`` (written beside it first and
        moved into place only once its SHA-256 is ``digest``); ``path``.

        Raises:
            DigestMismatch: The bytes received are not ``digest``'s (``path`` is left untouched).
            NotFound: No artifact has that digest.
            Unauthorized: A device token (or no token where the server asks for one).
            ServerUnreachable: The download failed on the network.
        """
        url = f"{self.base_url}/v1/artifacts/{_segment(digest)}"
        partial = path.with_name(path.name + ".part")
        hasher = hashlib.sha256()
        try:
            with self.http.stream("GET", url, headers=self._headers) as response:
                if response.status_code >= 400:
                    response.read()
                    error_class = _ERRORS.get(response.status_code, ApiError)
                    raise error_class(response.status_code, _error_detail(response), method="GET", path=url)
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes(UPLOAD_CHUNK_BYTES):
                        hasher.update(chunk)
                        file.write(chunk)
            if hasher.hexdigest() != digest:
                raise DigestMismatch(
                    f"the file downloaded from {url} has SHA-256 {hasher.hexdigest()}, not {digest}; "
                    "it was not kept"
                )
            partial.replace(path)
        except httpx.TransportError as error:
            raise ServerUnreachable("GET", url, 1, f"{type(error).__name__}: {error}") from error
        finally:
            partial.unlink(missing_ok=True)
        return path


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(answer: type[AnswerT]) -> TypeAdapter[AnswerT]:
    """The (cached) validator of answers of type ``answer``."""
    adapter = _ADAPTERS.get(answer)
    if adapter is None:
        adapter = _ADAPTERS[answer] = TypeAdapter(answer)
    return adapter


def _segment(value: str) -> str:
    """``value`` as one path segment (``/``, ``?``, ``#`` and ``%`` escaped)."""
    return quote(value, safe="")
