"""Work lost with its worker runs again within seconds: a worker stamps the work item's heartbeat
while it runs the work, and running work whose heartbeat stopped is dispatched again after
``heartbeat_timeout_s`` (not ``dispatch_timeout_s``, nor Redis' hour-long visibility timeout).

Times are injected (``now``, ``clock``) where a test asserts them; the real kill at the end
measures only that the work ran again well within a minute."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from service_helpers import RIDGE, SPACE, make_settings, measurements, register, work_context
from sqlalchemy import select
from test_workers import BROKERS, kill, worker

from search_service import create_app
from search_service.core import Settings, make_engine, make_sessionmaker
from search_service.domain import WorkKind, WorkStatus
from search_service.errors import InvalidError
from search_service.models import WorkItem
from search_service.schemas import CampaignCreate
from search_service.work import CeleryRunner, WorkContext, items, schedule
from search_service.work._celery import Heartbeat

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
GPNAS_REDIS = BROKERS["redis"]


def _s(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _item(status: WorkStatus, heartbeat_s: float | None) -> WorkItem:
    return WorkItem(
        key="k",
        kind=WorkKind.FIT,
        space=SPACE,
        status=status,
        dispatched_at=T0,
        heartbeat_at=None if heartbeat_s is None else _s(heartbeat_s),
    )


def test_running_work_is_due_once_its_heartbeat_is_older_than_the_timeout() -> None:
    running = _item(WorkStatus.RUNNING, heartbeat_s=100)
    assert not items.due(running, _s(120), 900, heartbeat_timeout_s=20)
    assert items.due(running, _s(121), 900, heartbeat_timeout_s=20)
    # Without a heartbeat timeout (or a stamp) only the dispatch timeout counts, as before.
    assert not items.due(running, _s(121), 900)
    assert not items.due(_item(WorkStatus.RUNNING, None), _s(899), 900, heartbeat_timeout_s=20)
    assert items.due(_item(WorkStatus.RUNNING, None), _s(901), 900, heartbeat_timeout_s=20)
    # A beating worker still gets no more than the dispatch timeout.
    assert items.due(_item(WorkStatus.RUNNING, heartbeat_s=900), _s(901), 900, heartbeat_timeout_s=20)
    # Taken by a worker that died before marking it running: stamped, still queued.
    assert items.due(_item(WorkStatus.QUEUED, heartbeat_s=0), _s(21), 900, heartbeat_timeout_s=20)
    # Done and failed work never is.
    for status in (WorkStatus.DONE, WorkStatus.FAILED):
        assert not items.due(_item(status, heartbeat_s=0), _s(10**6), 900, heartbeat_timeout_s=20)


@pytest.fixture
def ctx(db_url: str) -> Iterator[WorkContext]:
    """A database with device dev1 and 6 latencies (one fit due), no broker."""
    settings = make_settings(db_url, heartbeat_timeout_s=20.0, dispatch_timeout_s=900.0, **RIDGE)
    with TestClient(create_app(settings)) as client:
        register(client)
        assert client.post("/v1/measurements", json={"measurements": measurements(6)}).status_code == 200
    with work_context(settings) as ctx:
        yield ctx


def _row(ctx: WorkContext, key: str) -> WorkItem:
    with ctx.read_sessions() as session:
        item = items.get(session, key)
    assert item is not None
    return item


def test_a_pass_dispatches_work_whose_worker_stopped_beating_again(ctx: WorkContext) -> None:
    [order] = schedule(ctx, now=_s(0))
    assert order.kind is WorkKind.FIT
    # A worker takes it, marks it running and beats (at 0 s, injected), then is killed.
    with ctx.write_sessions() as session:
        items.started(session, order.key, order.kind, order.space)
        session.commit()
    with Heartbeat(ctx, order.key, interval_s=3600, clock=lambda: _s(0)) as heartbeat:
        assert heartbeat.beats == 1
    assert _row(ctx, order.key).heartbeat_at == _s(0)
    assert schedule(ctx, now=_s(20)) == []  # within the timeout: its worker may be busy
    [again] = schedule(ctx, now=_s(21))
    assert again == order
    item = _row(ctx, order.key)
    # Dispatched anew: queued, its stamp cleared until a worker takes it.
    assert item.status == WorkStatus.QUEUED and item.heartbeat_at is None and item.dispatched_at == _s(21)
    assert schedule(ctx, now=_s(100)) == []  # no stamp: only the dispatch timeout counts


def test_a_heartbeat_stamps_until_left_and_clears_its_stamp_when_the_task_raised(ctx: WorkContext) -> None:
    [order] = schedule(ctx, now=_s(0))
    ticks = iter(range(1, 10**6))
    stamped: list[dt.datetime] = []

    def clock() -> dt.datetime:
        stamped.append(_s(next(ticks)))
        return stamped[-1]

    with Heartbeat(ctx, order.key, interval_s=0.01, clock=clock) as heartbeat:
        deadline = time.monotonic() + 30
        while heartbeat.beats < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert _row(ctx, order.key).heartbeat_at == stamped[-1]
    with pytest.raises(ZeroDivisionError), Heartbeat(ctx, order.key, interval_s=3600, clock=clock):
        _ = 1 / 0
    # The worker is alive and Celery retries (or gives up): no stale stamp to act on.
    assert _row(ctx, order.key).heartbeat_at is None


def test_an_api_process_waiting_for_a_request_sends_it_again_when_its_worker_stops_beating(
    pg_url: str,
) -> None:
    queue = f"gpnas-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(pg_url, broker_url=GPNAS_REDIS, task_queue=queue, heartbeat_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        register(client)
    engine = make_engine(pg_url)
    ctx = WorkContext(make_sessionmaker(engine), make_sessionmaker(engine, write=True), settings)
    broker = redis.Redis.from_url(GPNAS_REDIS)
    runner = CeleryRunner(ctx)
    failure: list[BaseException] = []

    def request() -> None:
        try:
            runner.campaign(CampaignCreate(space=SPACE, device="dev1", n=2))
        except BaseException as error:
            failure.append(error)

    waiting = threading.Thread(target=request)
    try:
        waiting.start()
        _until(lambda: broker.llen(queue) == 1)
        # No worker runs here: play one that took the task, beat once and was killed.
        with ctx.write_sessions() as session:
            [item] = session.scalars(select(WorkItem).where(WorkItem.kind == WorkKind.CAMPAIGN)).all()
            item.status, item.attempts, item.heartbeat_at = WorkStatus.RUNNING, 1, _s(0)
            session.commit()
        _until(lambda: broker.llen(queue) == 2)  # sent again
        assert _row(ctx, item.key).status == WorkStatus.QUEUED
        # The second worker records a client error: the waiting request raises it.
        with ctx.write_sessions() as session:
            items.finished(
                session,
                item.key,
                WorkKind.CAMPAIGN,
                SPACE,
                WorkStatus.FAILED,
                error=json.dumps({"status": 422, "message": "planned elsewhere", "loc": None}),
            )
            session.commit()
        waiting.join(30)
        assert not waiting.is_alive()
        assert len(failure) == 1 and isinstance(failure[0], InvalidError), failure
    finally:
        waiting.join(30)
        runner.close()
        broker.delete(queue)
        broker.close()
        engine.dispose()


def _until(condition: Callable[[], object], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    assert settings.broker_url is not None
    return {
        **os.environ,
        "GPNAS_DATABASE_URL": settings.database_url,
        "GPNAS_BROKER_URL": settings.broker_url,
        "GPNAS_TASK_QUEUE": settings.task_queue,
        "GPNAS_PREDICTOR_LATENCY": "ridge",
        "GPNAS_PREDICTOR_SCORE": "ridge",
        "GPNAS_FRONT_MAX_EVALUATIONS": "100000000",
        "GPNAS_HEARTBEAT_INTERVAL_S": "0.5",
        **extra,
    }


@pytest.mark.slow
def test_a_front_lost_with_a_killed_worker_runs_again_within_seconds(pg_url: str, tmp_path: Path) -> None:
    """A worker is SIGKILLed in the middle of a front search on a Redis broker, which would
    deliver the task again only after an hour (the default visibility timeout, kept here): with
    heartbeats the API's next pass sends it again, and a second worker finishes it."""
    queue = f"gpnas-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        pg_url,
        broker_url=GPNAS_REDIS,
        task_queue=queue,
        refit_worker=True,
        refit_poll_s=0.5,
        refit_delay_s=0.0,
        heartbeat_timeout_s=2.0,
        **RIDGE,
    )
    log = tmp_path / "worker.log"
    with TestClient(create_app(settings)) as client:
        ctx: WorkContext = client.app.state.refitter.ctx  # type: ignore[attr-defined]
        register(client)
        # The first worker's searches run a minute: it is killed in the middle of one.
        with worker(_worker_env(settings, GPNAS_FRONT_TIME_LIMIT_S="60"), tmp_path / "first.log") as first:
            data = measurements(12) + measurements(12, device=None, task="market1501", seed=1)
            assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200
            _until(lambda: _front_status(ctx) == WorkStatus.RUNNING, 120)
            with worker(_worker_env(settings, GPNAS_FRONT_TIME_LIMIT_S="2"), log):
                killed = time.monotonic()
                kill(first)
                _until(lambda: _front_status(ctx) == WorkStatus.DONE, 60)
                rerun_s = time.monotonic() - killed
        with ctx.read_sessions() as session:
            item = session.scalars(select(WorkItem).where(WorkItem.kind == WorkKind.FRONT)).one()
    print(f"front done {rerun_s:.1f} s after its worker was killed")
    assert item.attempts == 2
    assert rerun_s < 30.0, log.read_text()


def _front_status(ctx: WorkContext) -> WorkStatus | None:
    with ctx.read_sessions() as session:
        return session.scalar(select(WorkItem.status).where(WorkItem.kind == WorkKind.FRONT))
