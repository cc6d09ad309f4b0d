"""Fits and fronts on real Celery workers (``gpnas worker`` processes) over a real broker (Redis
and RabbitMQ) and PostgreSQL: the API computes nothing itself, a worker killed mid-task loses no
result and duplicates none, and two workers never store the same version twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import SPACE, make_settings, measurements, register
from sqlalchemy import func, select

from search_service import create_app
from search_service.core import make_engine, make_sessionmaker
from search_service.domain import Metric, WorkKind, WorkStatus
from search_service.models import Front, PredictorVersion, WorkItem
from search_service.services import campaigns, deployments
from search_service.work import CeleryRunner, Order, WorkContext, items
from search_service.work import _functions as functions

BROKERS = {
    "redis": os.environ.get("GPNAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "rabbitmq": os.environ.get("GPNAS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
GPNAS = Path(sys.executable).parent / "gpnas"
# Redis re-delivers an unacknowledged task of a dead worker after this long (RabbitMQ at once).
VISIBILITY_S = 3


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    return BROKERS[request.param]


def _env(pg_url: str, broker: str, queue: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "GPNAS_DATABASE_URL": pg_url,
        "GPNAS_BROKER_URL": broker,
        "GPNAS_TASK_QUEUE": queue,
        "GPNAS_BROKER_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
        "GPNAS_FRONT_MAX_EVALUATIONS": "1000000",
        **extra,
    }


@contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``gpnas worker`` process in its own process group, ready to consume; killed at exit."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(GPNAS), "worker", "--torch-threads", "1", "--log-level", "info"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process
    finally:
        kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _count(ctx: WorkContext, model: type[PredictorVersion] | type[Front]) -> int:
    with ctx.read_sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _forbid_local_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every fit and front search in this (the API's) process fail the test."""
    called: list[str] = []

    def refuse(name: str):  # noqa: ANN202
        def _refuse(*_: object, **__: object) -> None:
            called.append(name)
            raise AssertionError(f"the API process ran {name}")

        return _refuse

    monkeypatch.setattr(functions, "compute_front", refuse("compute_front"))
    monkeypatch.setattr(functions, "create_predictor", refuse("create_predictor"))
    monkeypatch.setattr(functions, "_train", refuse("_train"))
    monkeypatch.setattr(campaigns, "plan_campaign", refuse("plan_campaign"))
    monkeypatch.setattr(deployments, "compute_answer", refuse("compute_answer"))
    return called


def test_a_killed_worker_loses_no_result_and_the_api_computes_nothing(
    pg_url: str, broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    called = _forbid_local_work(monkeypatch)
    queue = f"gpnas-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(pg_url, broker_url=broker, task_queue=queue, task_wait_s=120.0)
    # Front searches run 4 s: long enough to be killed in the middle of one.
    env = _env(pg_url, broker, queue, GPNAS_FRONT_TIME_LIMIT_S="4")
    log = tmp_path / "worker.log"
    with TestClient(create_app(settings)) as client:
        register(client)
        data = measurements(12) + measurements(12, device=None, task="market1501", seed=1)
        assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200
        ctx = client.app.state.refitter.ctx  # type: ignore[attr-defined]
        answer: dict[str, object] = {}
        refit = threading.Thread(target=lambda: answer.update(client.post("/v1/refit", json={}).json()))
        with worker(env, log) as first:
            refit.start()
            deadline = time.monotonic() + 60
            while not _running(ctx, WorkKind.FRONT):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            time.sleep(1.0)  # well inside the 4 s search
            kill(first)
        with worker(env, log):
            refit.join(120)
            # Campaign selection runs on the worker too; the API stores nothing it did not plan.
            campaign = client.post(
                "/v1/campaigns", json={"space": SPACE, "device": "dev1", "n": 3, "strategy": "random"}
            )
            assert campaign.status_code == 201, campaign.text
            assert campaign.json()["jobs"]["queued"] == 3
            # And so do deployment queries.
            body = {"space": SPACE, "device": "dev1", "tasks": [{"task": "market1501"}], "max_params": 10**9}
            deployment = client.post("/v1/deployments/query", json=body)
            assert deployment.status_code == 200, deployment.text
            assert deployment.json()["tasks"][0]["task"] == "market1501"
        assert not refit.is_alive()
    assert answer.get("errors") == [], answer
    assert called == []
    assert _count(ctx, PredictorVersion) == 2 and _count(ctx, Front) == 1
    with ctx.read_sessions() as session:
        front_item = session.scalars(select(WorkItem).where(WorkItem.kind == WorkKind.FRONT)).one()
    # Started on the killed worker, then again on the second: one front stored.
    assert front_item.status == WorkStatus.DONE and front_item.attempts == 2


def _running(ctx: WorkContext, kind: WorkKind) -> bool:
    with ctx.read_sessions() as session:
        statuses = session.scalars(select(WorkItem.status).where(WorkItem.kind == kind)).all()
    return WorkStatus.RUNNING in statuses


def test_two_workers_given_the_same_fit_store_it_once(pg_url: str, tmp_path: Path) -> None:
    broker = BROKERS["redis"]
    queue = f"gpnas-test-{uuid.uuid4().hex[:8]}"
    settings = make_settings(pg_url, broker_url=broker, task_queue=queue)
    env = _env(pg_url, broker, queue)
    with TestClient(create_app(settings)) as client:
        register(client)
        assert client.post("/v1/measurements", json={"measurements": measurements(40)}).status_code == 200
    engine = make_engine(pg_url)
    ctx = WorkContext(make_sessionmaker(engine), make_sessionmaker(engine, write=True), settings)
    with ctx.read_sessions() as session:
        from search_service import repositories as repo

        version = repo.data_version(session, SPACE, Metric.LATENCY, "dev1")
    order = Order(
        WorkKind.FIT, items.fit_key(SPACE, Metric.LATENCY, "dev1", version), SPACE, Metric.LATENCY, "dev1"
    )
    runner = CeleryRunner(ctx)
    with worker(env, tmp_path / "a.log"), worker(env, tmp_path / "b.log"):
        # The same order four times, as duplicated deliveries would bring it: both workers fit.
        runner.send([order] * 4)
        deadline = time.monotonic() + 90
        while not _all_done(ctx, 4, tmp_path):
            assert time.monotonic() < deadline, (tmp_path / "a.log").read_text()
            time.sleep(0.2)
    runner.close()
    assert _count(ctx, PredictorVersion) == 1
    engine.dispose()


def _all_done(ctx: WorkContext, n: int, logs: Path) -> bool:
    """Whether ``n`` fit tasks have returned, as the workers' logs say."""
    text = "".join(p.read_text() for p in logs.glob("*.log"))
    return text.count("gpnas.fit_target[") >= 2 * n and text.count("succeeded") >= n
