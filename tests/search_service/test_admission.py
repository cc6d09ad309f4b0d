"""The bounded queue of heavy work (search_service.admission): budgets, a full queue, shared runs,
abandoned requests dropped, and cheap reads that never wait behind heavy work on a real server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import make_settings

from search_service import create_app
from search_service.admission import Admission, ClientDisconnectedError
from search_service.errors import TooManyRequestsError, UnavailableError
from search_service.services import deployments
from search_service.testing import serving


class Gone:
    """A connection whose client has (or has not yet) gone away."""

    def __init__(self) -> None:
        self.gone = False

    async def is_disconnected(self) -> bool:
        return self.gone


def _admission(**overrides: Any) -> Admission:
    values: dict[str, Any] = dict(concurrency=1, queue_size=2, per_token=3, anonymous=1, queue_wait_s=60.0)
    values.update(overrides)
    return Admission(**values)


def _blocker() -> tuple[threading.Event, list[str], Callable[[str], Callable[[], str]]]:
    """An event that releases the work, the names of the works that ran, and a work factory."""
    release = threading.Event()
    ran: list[str] = []

    def work(name: str) -> Callable[[], str]:
        def run() -> str:
            ran.append(name)
            assert release.wait(10)
            return name

        return run

    return release, ran, work


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_budgets_and_a_full_queue_answer_at_once_with_retry_after() -> None:
    async def main() -> None:
        admission = _admission()
        release, ran, work = _blocker()
        running = asyncio.create_task(admission.run("token 1", work("a")))
        await _until(lambda: ran == ["a"])
        queued = [asyncio.create_task(admission.run("token 1", work(n))) for n in "bc"]
        await _until(lambda: admission.stats().queued == 2)
        # The token's third request in flight is its last: a fourth is refused, not parked.
        with pytest.raises(TooManyRequestsError, match="3 heavy requests in flight") as over_budget:
            await admission.run("token 1", work("d"))
        assert "Retry-After" in (over_budget.value.headers() or {})
        # Another caller finds the queue full (2 waiting, the one slot busy): 503, not a wait.
        with pytest.raises(UnavailableError, match="2 heavy requests are waiting") as full:
            await admission.run("token 2", work("e"))
        assert full.value.status_code == 503 and full.value.retry_after_s is not None
        release.set()
        assert await running == "a" and [await q for q in queued] == ["b", "c"]
        assert admission.stats().refused == 2
        admission.close()

    asyncio.run(main())


def test_requests_for_the_same_work_share_one_run() -> None:
    async def main() -> None:
        admission = _admission()
        release, ran, work = _blocker()
        first = asyncio.create_task(admission.run("token 1", work("x"), key="same"))
        second = asyncio.create_task(admission.run("token 2", work("y"), key="same"))
        await _until(lambda: ran == ["x"])
        release.set()
        assert (await first, await second) == ("x", "x")
        assert ran == ["x"]
        admission.close()

    asyncio.run(main())


def test_work_nobody_waits_for_is_dropped_before_it_runs() -> None:
    async def main() -> None:
        admission = _admission(queue_size=5)
        release, ran, work = _blocker()
        running = asyncio.create_task(admission.run("token 1", work("a")))
        await _until(lambda: ran == ["a"])
        client = Gone()
        abandoned = asyncio.create_task(admission.run("token 2", work("b"), connection=client))
        shared = Gone()
        kept = [
            asyncio.create_task(admission.run(f"token {i}", work(f"c{i}"), key="c", connection=c))
            for i, c in ((3, shared), (4, Gone()))
        ]
        await _until(lambda: admission.stats().queued == 2)
        client.gone = shared.gone = True
        with pytest.raises(ClientDisconnectedError):
            await abandoned
        with pytest.raises(ClientDisconnectedError):
            await kept[0]
        # "b" had no other waiter: dropped. "c" still has one: it stays and runs.
        assert admission.stats().queued == 1 and admission.stats().dropped == 1
        release.set()
        assert await running == "a" and await kept[1] == "c3"
        assert ran == ["a", "c3"]
        admission.close()

    asyncio.run(main())


def test_work_that_never_starts_is_answered_503_after_the_queue_wait() -> None:
    now = [0.0]

    async def main() -> None:
        admission = _admission(queue_wait_s=30.0, clock=lambda: now[0])
        release, ran, work = _blocker()
        running = asyncio.create_task(admission.run("token 1", work("a")))
        await _until(lambda: ran == ["a"])
        stuck = asyncio.create_task(admission.run("token 2", work("b")))
        await asyncio.sleep(0.3)
        assert not stuck.done()
        now[0] = 31.0
        with pytest.raises(UnavailableError, match="waited 30 s without starting"):
            await stuck
        assert admission.stats().dropped == 1
        release.set()
        await running
        assert ran == ["a"]
        admission.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- on a real server
@pytest.fixture
def blocked_server(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A uvicorn server whose deployment searches block until released (no predictors needed)."""
    path = tmp_path / "gpnas.db"
    path.write_bytes(sqlite_template.read_bytes())
    settings = make_settings(
        f"sqlite:///{path}", auth=True, heavy_concurrency=2, heavy_queue=200, heavy_anonymous=200
    )
    app = create_app(settings)
    release = threading.Event()
    started: list[str] = []

    def search(body: Any, key: str) -> int:
        started.append(key)
        release.wait(30)
        raise UnavailableError("released")

    monkeypatch.setattr(deployments, "predictor_versions", lambda session, body: {"n": len(started)})
    monkeypatch.setattr(app.state.refitter.runner, "deployment", search)
    with serving(app) as url:
        try:
            yield url, app, release, started
        finally:
            release.set()  # before the server stops: its threads wait on it


def test_a_flood_of_abandoned_deployment_queries_leaves_cheap_reads_answering(blocked_server: Any) -> None:
    """100 distinct anonymous deployment queries, abandoned by their clients after 1 s: before
    admission control each held a threadpool thread for up to task_wait_s and /healthz stalled for
    minutes; now they wait on the event loop, two run, and the rest are dropped as clients leave."""
    url, app, release, started = blocked_server
    body = {"space": "ufo-track2", "device": "dev", "tasks": [{"task": "veri"}]}

    async def flood() -> list[float]:
        async with httpx.AsyncClient(base_url=url, timeout=1.0) as client:

            async def abandoned(i: int) -> None:
                with pytest.raises(httpx.TimeoutException):
                    await client.post("/v1/deployments/query", json=body | {"confidence": 0.5 + i / 1000})

            queries = [asyncio.create_task(abandoned(i)) for i in range(100)]
            health = []
            async with httpx.AsyncClient(base_url=url, timeout=10.0) as reader:
                for _ in range(20):
                    began = time.perf_counter()
                    answer = await reader.get("/healthz")
                    health.append(time.perf_counter() - began)
                    assert answer.status_code == 200, answer.text
                    await asyncio.sleep(0.1)
            await asyncio.gather(*queries)
            return health

    health = asyncio.run(flood())
    assert len(health) == 20  # every /healthz answered while 100 queries waited and left
    admission = app.state.admission
    for _ in range(200):
        if admission.stats().queued == 0:
            break
        time.sleep(0.05)
    # Two ran (the concurrency); the 98 others were dropped when their clients left.
    assert len(started) == 2 and admission.stats().queued == 0 and admission.stats().dropped == 98
    release.set()


def test_anonymous_callers_beyond_their_budget_get_429_not_a_wait(blocked_server: Any) -> None:
    url, app, release, started = blocked_server
    app.state.admission.anonymous = 3
    body = {"space": "ufo-track2", "device": "dev", "tasks": [{"task": "veri"}]}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            first = [
                asyncio.create_task(client.post("/v1/deployments/query", json=body | {"confidence": c}))
                for c in (0.5, 0.6, 0.7)
            ]
            while app.state.admission.stats().queued + app.state.admission.stats().running < 3:
                await asyncio.sleep(0.02)
            refused = await client.post("/v1/deployments/query", json=body | {"confidence": 0.8})
            release.set()
            return [refused, *await asyncio.gather(*first)]

    refused, *answered = asyncio.run(burst())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "anonymous callers" in refused.text
    # The admitted ones ran and answered what their search raised, with its Retry-After.
    assert [a.status_code for a in answered] == [503, 503, 503]
    assert all("Retry-After" in a.headers for a in answered)


def test_an_admission_closed_with_its_app_takes_work_again_when_the_app_restarts() -> None:
    async def main() -> None:
        admission = _admission()
        assert await admission.run("token 1", lambda: 1) == 1
        admission.close()
        assert await admission.run("token 1", lambda: 2) == 2
        admission.close()

    asyncio.run(main())


def test_one_search_at_a_time_in_process_and_more_when_workers_run_them() -> None:
    """In process each search takes a core: a second beside it made /healthz's p99 4.0x quiet
    during a flood (benchmarks/results/faults_embedded.md); with a broker the API only waits."""
    assert make_settings("sqlite://").heavy_slots() == 1
    assert make_settings("sqlite://", broker_url="redis://127.0.0.1:6379/0").heavy_slots() == 4
    assert make_settings("sqlite://", heavy_concurrency=3).heavy_slots() == 3
