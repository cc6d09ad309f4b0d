"""search_service.client.GpnasClient: typed calls against the app, typed errors, retries."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from service_helpers import SPACE, measurements, register

from search_service.client import (
    ApiError,
    ClientError,
    Conflict,
    GpnasClient,
    Invalid,
    NotFound,
    ServerUnreachable,
    Unauthorized,
)
from search_service.schemas import (
    CampaignCreate,
    DeviceCreate,
    FailRequest,
    HeartbeatRequest,
    LeaseRequest,
    MeasurementBatch,
    MeasurementCreate,
    QueryRequest,
    RefitRequest,
    ResultRequest,
)


def test_importing_the_client_loads_neither_the_app_nor_the_database() -> None:
    script = (
        "import sys, search_service.client, profilers; "
        "print([m for m in ('fastapi', 'starlette', 'sqlalchemy', 'alembic', 'search_service.main', "
        "'search_service.models', 'search_service.core') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _api(client: TestClient, **options: object) -> GpnasClient:
    return GpnasClient("http://testserver", http=client, **options)  # type: ignore[arg-type]


def test_typed_calls_through_the_job_queue(client: TestClient) -> None:
    api = _api(client)
    assert api.health().status == "ok"
    assert SPACE in {s.name for s in api.list_spaces()}
    assert api.get_space(SPACE).name == SPACE
    device = api.create_device(DeviceCreate(name="dev1", profiler="torch-cpu", settings={"threads": 1}))
    assert (device.name, device.profiler) == ("dev1", "torch-cpu")
    assert api.get_device("dev1") == device and api.list_devices() == [device]
    campaign = api.create_campaign(CampaignCreate(space=SPACE, device="dev1", n=3, seed=0))
    assert campaign.jobs == {"queued": 3} and api.get_campaign(campaign.id) == campaign
    lease = api.lease_jobs(LeaseRequest(device="dev1", count=2, lease_seconds=60))
    assert len(lease.jobs) == 2 and lease.job == lease.jobs[0]
    first, second = lease.jobs
    beat = api.heartbeat_job(first.id, HeartbeatRequest(lease_token=first.lease_token, lease_seconds=120))
    assert beat.lease_expires_at > first.lease_expires_at
    result = ResultRequest(lease_token=first.lease_token, value=4.5, std=0.1, repeats=3, profiler="torch-cpu")
    done = api.post_job_result(first.id, result)
    assert done.status == "done" and api.post_job_result(first.id, result) == done  # idempotent
    with pytest.raises(Conflict) as lost:
        api.post_job_result(first.id, result.model_copy(update={"lease_token": second.lease_token}))
    assert lost.value.status_code == 409 and "lease" in lost.value.message
    failed = api.fail_job(second.id, FailRequest(lease_token=second.lease_token, error="out of memory"))
    assert (failed.status, failed.attempts) == ("queued", 1)
    jobs = api.list_jobs(device="dev1", status="done")
    assert jobs.total == 1 and jobs.jobs[0].id == first.id and api.get_job(first.id).status == "done"
    stored = api.list_measurements(device="dev1")
    assert stored.total == 1 and stored.measurements[0].value == 4.5
    retracted = api.retract_measurement(stored.measurements[0].id, reason="bad run")
    assert retracted.retracted_reason == "bad run"
    assert api.list_measurements(device="dev1").total == 0
    assert api.list_measurements(device="dev1", include_retracted=True).total == 1


def test_measurements_query_pareto_and_refit(client: TestClient) -> None:
    api = _api(client)
    register(client)
    items = [MeasurementCreate(**m) for m in measurements(12) + measurements(12, None, "market1501")]
    assert api.post_measurements(MeasurementBatch(measurements=items)).inserted == 24
    assert api.post_measurements(MeasurementBatch(measurements=items[:2])).duplicate == 2
    ask = QueryRequest(space=SPACE, task="market1501", device="dev1", latency_budget_ms=1e6)
    with pytest.raises(Conflict, match="not computed yet"):
        api.query(ask)
    report = api.refit(RefitRequest(space=SPACE))
    assert report.status == "done" and report.errors == [] and report.fronts
    page = api.pareto(SPACE, "market1501", "dev1", limit=2)
    assert page.limit == 2 and len(page.points) <= 2 and page.total >= len(page.points)
    best = api.query(ask)
    assert best.front_version == page.version and best.predicted.p_feasible > 0
    with pytest.raises(Invalid) as nothing_fits:
        api.query(ask.model_copy(update={"latency_budget_ms": 1e-6}))
    assert nothing_fits.value.status_code == 422 and "latency_budget_ms" in nothing_fits.value.message


def test_error_answers_are_typed(client: TestClient, auth_client: TestClient) -> None:
    api = _api(client)
    with pytest.raises(NotFound) as missing:
        api.get_device("nope")
    assert missing.value.status_code == 404 and str(missing.value).startswith(
        "GET /v1/devices/nope: HTTP 404"
    )
    api.create_device(DeviceCreate(name="dev1", profiler="torch-cpu"))
    with pytest.raises(Conflict):
        api.create_device(DeviceCreate(name="dev1", profiler="torch-cpu"))
    with pytest.raises(Invalid) as invalid:  # the server's checks, beyond the schema's
        api.create_device(DeviceCreate(name="dev2", profiler="no-such-profiler"))
    assert invalid.value.status_code == 422 and isinstance(invalid.value.detail, list)
    with pytest.raises(ValidationError):  # the schema's own checks run before sending
        LeaseRequest(device="dev1", count=0)
    # An auth-required app: no token, then a token it does not know.
    for token in (None, "gpnas_wrong"):
        with pytest.raises(Unauthorized) as refused:
            GpnasClient("http://testserver", token, http=auth_client).create_device(
                DeviceCreate(name="dev3", profiler="torch-cpu")
            )
        assert refused.value.status_code == 401 and isinstance(refused.value, ApiError)


def _mock(answers: list[int | Exception], seen: list[httpx.Request]) -> httpx.Client:
    """A client whose transport answers the statuses (or raises the errors) of ``answers`` in turn."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        body = {"status": "ok", "database": "sqlite", "schema_revision": "x"} if answer < 400 else {}
        return httpx.Response(answer, json={"detail": "busy"} if answer >= 400 else body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def _client(
    answers: list[int | Exception], seen: list[httpx.Request], delays: list[float], **kw
) -> GpnasClient:
    return GpnasClient("http://gpnas.test/", "tok", http=_mock(answers, seen), sleep=delays.append, **kw)


def test_network_errors_429_and_5xx_are_retried_with_growing_jittered_backoff() -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    refused = httpx.ConnectError("refused")
    api = _client([refused, 503, 429, 500, 200], seen, delays, backoff=1.0, max_backoff=5.0)
    assert api.health().status == "ok"
    assert len(seen) == 5 and len(delays) == 4
    assert str(seen[0].url) == "http://gpnas.test/healthz"
    assert all(r.headers["authorization"] == "Bearer tok" for r in seen)
    for attempt, delay in enumerate(delays):  # [50%, 100%] of min(5, 2**attempt)
        assert 0.5 * min(5.0, 2**attempt) <= delay <= min(5.0, 2**attempt)


def test_a_retry_waits_at_least_what_retry_after_asks_up_to_the_longest_backoff() -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    answers = iter([(429, "3"), (503, "120"), (503, "soon"), (200, None)])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, after = next(answers)
        headers = {} if after is None else {"Retry-After": after}
        body = {"status": "ok", "database": "sqlite", "schema_revision": "x"} if status < 400 else {}
        return httpx.Response(status, json=body, headers=headers)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    api = GpnasClient("http://gpnas.test/", http=client, sleep=delays.append, backoff=0.1, max_backoff=30.0)
    assert api.health().status == "ok"
    # 3 s as asked; 120 s capped at max_backoff; an unreadable header falls back to the backoff.
    assert delays[0] == 3.0 and delays[1] == 30.0 and delays[2] <= 0.4


def test_the_retries_run_out_with_server_unreachable() -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    api = _client([httpx.ConnectError("refused"), 502, 503], seen, delays, max_retries=2)
    with pytest.raises(ServerUnreachable) as unreachable:
        api.health()
    error = unreachable.value
    assert (error.attempts, error.status_code, len(delays)) == (3, 503, 2)
    assert "unreachable after 3 attempts (HTTP 503" in str(error) and isinstance(error, ClientError)
    assert not isinstance(error, ApiError)
    # with_retries(0): one attempt, no wait.
    delays.clear()
    with pytest.raises(ServerUnreachable, match="after 1 attempts"):
        _client([httpx.ReadTimeout("slow")], seen, delays).with_retries(0).health()
    assert delays == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, Invalid), (401, Unauthorized), (403, Unauthorized), (404, NotFound), (409, Conflict)]
    + [(413, Invalid), (422, Invalid), (405, ApiError)],
)
def test_client_errors_are_not_retried(status: int, error: type[ApiError]) -> None:
    seen: list[httpx.Request] = []
    delays: list[float] = []
    with pytest.raises(error) as raised:
        _client([status], seen, delays).health()
    assert type(raised.value) is error and raised.value.status_code == status
    assert raised.value.detail == "busy" and len(seen) == 1 and delays == []


def test_bodies_carry_only_the_fields_set_and_paths_are_escaped() -> None:
    seen: list[httpx.Request] = []
    answers: list[Callable[[httpx.Request], httpx.Response]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)(request)

    api = GpnasClient("http://gpnas.test", http=httpx.Client(transport=httpx.MockTransport(handler)))
    lease = {"jobs": [], "job": None}
    answers.append(lambda r: httpx.Response(200, json=lease))
    assert api.lease_jobs(LeaseRequest(device="dev1")).jobs == []
    assert json.loads(seen[-1].content) == {"device": "dev1"} and "authorization" not in seen[-1].headers
    answers.append(lambda r: httpx.Response(200, json={"name": "a:b", "profiler": "p", "settings": None}))
    assert api.get_device("a:b").settings is None
    assert seen[-1].url.raw_path == b"/v1/devices/a%3Ab"
    # An answer that is not the route's schema is an ApiError, not a crash in the caller.
    answers.append(lambda r: httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(ApiError, match="not a valid DevicePublic"):
        api.get_device("x")
