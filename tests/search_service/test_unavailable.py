"""Answers that are the server's or the client's fault, never a 500: caps too large for a
parameter count (422 naming the field), and 503 with Retry-After when the database's pool is
exhausted, the broker does not answer or the database lacks the schema."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from psycopg import sql
from service_helpers import RIDGE, SPACE, make_settings, measurements, post_scored_tasks, register
from sqlalchemy import select, text

from search_service import create_app
from search_service.core import head_revision, make_engine, upgrade
from search_service.domain import WorkKind, WorkStatus
from search_service.models import Base, WorkItem
from search_service.schemas import MAX_WEIGHT_MB
from search_service.work import WorkContext, schedule

T = TypeVar("T")
PG_URL = os.environ.get("GPNAS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GPNAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def test_caps_too_large_for_a_parameter_count_are_422_naming_the_field(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url, **RIDGE)), raise_server_exceptions=False) as client:
        register(client)
        post_scored_tasks(client, ["market1501"], n=12)
        assert client.post("/v1/refit", json={}).json()["errors"] == []
        body = {"space": SPACE, "device": "dev1", "tasks": [{"task": "market1501"}]}
        for dtype in ("float32", "int8"):
            # The largest cap admitted still answers (a count that fits 64 bits).
            largest = body | {"max_weight_mb": MAX_WEIGHT_MB, "dtype": dtype}
            fits = client.post("/v1/deployments/query", json=largest)
            assert fits.status_code == 200, fits.text
        for huge in (3.7e13, 1e300):
            answer = client.post("/v1/deployments/query", json=body | {"max_weight_mb": huge})
            assert answer.status_code == 422, answer.text
            assert answer.json()["detail"][0]["loc"] == ["body", "max_weight_mb"]
        top = client.post("/v1/deployments/query", json=body | {"max_params": 2**63 - 1})
        assert top.status_code == 200, top.text
        over = client.post("/v1/deployments/query", json=body | {"max_params": 2**63})
        assert over.status_code == 422 and over.json()["detail"][0]["loc"] == ["body", "max_params"]


def test_an_exhausted_connection_pool_is_503_with_retry_after_not_a_hang(db_url: str) -> None:
    settings = make_settings(db_url, db_pool_timeout_s=0.5)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        # Every connection the pool may open, held elsewhere (other requests, stuck).
        held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
        try:
            started = time.monotonic()
            answer = client.get("/v1/devices")
            waited = time.monotonic() - started
        finally:
            for connection in held:
                connection.close()
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert "connection" in answer.json()["detail"]
        assert waited < 10.0  # the pool's 0.5 s, not SQLAlchemy's default 30 s
        assert client.get("/v1/devices").status_code == 200


class _Broker:
    """A stand-in broker address on 127.0.0.1 that ``behaviour`` describes: ``refuses``
    connections (nothing listens), ``resets`` them as soon as they open, ``never answers`` (accepts
    and stays silent), or relays them to a real broker at ``relay_to`` while :attr:`up` (and
    resets them while not: :meth:`cut` also drops the relayed ones)."""

    def __init__(self, behaviour: str, relay_to: tuple[str, int] | None = None) -> None:
        self.behaviour, self.relay_to = behaviour, relay_to
        self.up = relay_to is not None
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        if behaviour == "refuses":
            self._listener.close()
            return
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.behaviour == "never answers":
                self._open.append(conn)
            elif self.behaviour == "resets" or not self.up or self.relay_to is None:
                _reset(conn)
            else:
                upstream = socket.create_connection(self.relay_to)
                self._open += [conn, upstream]
                for a, b in ((conn, upstream), (upstream, conn)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        self.up = False
        for conn in self._open:
            _reset(conn)
        self._open.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()


def _reset(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    _reset(sink)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "gpnas.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
@pytest.mark.parametrize("behaviour", ["refuses", "resets", "never answers"])
def test_work_the_broker_does_not_take_is_503_within_seconds_and_stays_due(
    sqlite_url: str, scheme: str, behaviour: str
) -> None:
    broker = _Broker(behaviour)
    url = (
        f"redis://127.0.0.1:{broker.port}/0"
        if scheme == "redis"
        else f"amqp://guest:secret@127.0.0.1:{broker.port}//"
    )
    settings = make_settings(sqlite_url, broker_url=url, **RIDGE)
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            register(client)
            assert client.post("/v1/measurements", json={"measurements": measurements(6)}).status_code == 200
            ctx: WorkContext = client.app.state.refitter.ctx  # type: ignore[attr-defined]
            for name, call in (
                ("refit", lambda: client.post("/v1/refit", json={})),
                (
                    "campaign",
                    lambda: client.post("/v1/campaigns", json={"space": SPACE, "device": "dev1", "n": 2}),
                ),
            ):
                started = time.monotonic()
                answer = call()
                took = time.monotonic() - started
                print(
                    f"{scheme} broker that {behaviour}: {name} answered {answer.status_code} in {took:.2f} s"
                )
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] == "5"
                assert f"127.0.0.1:{broker.port}" in answer.json()["detail"] and "secret" not in answer.text
                assert took < 3 * settings.broker_timeout_s + 2
            # Nothing is left marked as dispatched: the next pass sends the fit again, at once.
            with ctx.read_sessions() as session:
                statuses = session.scalars(select(WorkItem.status)).all()
            assert statuses and WorkStatus.QUEUED not in statuses
            assert [o.kind for o in schedule(ctx)] == [WorkKind.FIT]
    finally:
        broker.close()


def test_work_posted_while_the_broker_was_down_is_sent_on_the_first_pass_after_it_is_back(
    sqlite_url: str,
) -> None:
    real = redis.Redis.from_url(REDIS_URL)
    host, port = (
        real.connection_pool.connection_kwargs["host"],
        real.connection_pool.connection_kwargs["port"],
    )
    broker = _Broker("relay", relay_to=(host, port))
    queue = f"gpnas-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:{broker.port}/{real.connection_pool.connection_kwargs.get('db', 0)}"
    settings = make_settings(
        sqlite_url, broker_url=url, task_queue=queue, refit_worker=True, refit_poll_s=0.2, refit_delay_s=0.0
    )
    try:
        with TestClient(create_app(settings)) as client:
            broker.cut()
            register(client)
            assert client.post("/v1/measurements", json={"measurements": measurements(6)}).status_code == 200
            ctx: WorkContext = client.app.state.refitter.ctx  # type: ignore[attr-defined]
            # The background pass ordered the fit, the broker refused it: the item says so.
            item = _wait(lambda: _fit_item(ctx, WorkStatus.ERROR), 20)
            assert item.error is not None and "did not take the work" in item.error
            assert real.llen(queue) == 0
            broker.up = True
            started = time.monotonic()
            _wait(lambda: real.llen(queue) > 0, 20)
            print(f"fit sent {time.monotonic() - started:.2f} s after the broker came back")
            assert _fit_item(ctx, WorkStatus.QUEUED) is not None
            assert real.llen(queue) == 1
    finally:
        broker.close()
        real.delete(queue)
        real.close()


def _fit_item(ctx: WorkContext, status: WorkStatus) -> WorkItem | None:
    with ctx.read_sessions() as session:
        return session.scalar(
            select(WorkItem).where(WorkItem.kind == WorkKind.FIT, WorkItem.status == status)
        )


def _wait(condition: Callable[[], T | None], timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_a_new_deployment_query_is_503_when_the_broker_does_not_take_it(sqlite_url: str) -> None:
    # Predictors fitted in process first: the query then needs a worker only for its search.
    with TestClient(create_app(make_settings(sqlite_url, **RIDGE))) as client:
        register(client)
        post_scored_tasks(client, ["market1501"], n=12)
        assert client.post("/v1/refit", json={}).json()["errors"] == []
    broker = _Broker("never answers")
    settings = make_settings(sqlite_url, broker_url=f"redis://127.0.0.1:{broker.port}/0")
    try:
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            body = {"space": SPACE, "device": "dev1", "tasks": [{"task": "market1501"}]}
            answer = client.post("/v1/deployments/query", json=body)
            assert answer.status_code == 503, answer.text
            assert "Retry-After" in answer.headers and f"127.0.0.1:{broker.port}" in answer.text
            ctx: WorkContext = client.app.state.refitter.ctx  # type: ignore[attr-defined]
            with ctx.read_sessions() as session:
                item = session.scalars(select(WorkItem).where(WorkItem.kind == WorkKind.DEPLOYMENT)).one()
            assert item.status == WorkStatus.ERROR
    finally:
        broker.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_db_url(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> Iterator[str]:
    """A migrated database of this test alone (its tables get dropped)."""
    if request.param == "sqlite":
        path = tmp_path / "gpnas.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    name = f"gpnas_test_{uuid.uuid4().hex[:10]}"
    base, _, query = PG_URL.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            upgrade(url)
            yield url
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("dropped", ["every table", "one table"])
def test_a_database_without_the_schema_is_503_naming_the_revisions(own_db_url: str, dropped: str) -> None:
    head = head_revision()
    with TestClient(create_app(make_settings(own_db_url)), raise_server_exceptions=False) as client:
        assert client.get("/healthz").json()["schema_revision"] == head
        # Emptied (or replaced by a new database) while the server runs.
        engine = make_engine(own_db_url)
        cascade = " CASCADE" if engine.dialect.name == "postgresql" else ""
        with engine.begin() as connection:
            if dropped == "every table":
                Base.metadata.drop_all(connection)
                connection.execute(text("DROP TABLE alembic_version"))
            else:
                connection.execute(text("DROP TABLE devices" + cascade))
        engine.dispose()
        health = client.get("/healthz")
        assert health.status_code == 503, health.text
        found = "none" if dropped == "every table" else head
        assert health.json()["schema_revision"] == found and health.json()["expected_revision"] == head
        assert "Retry-After" in health.headers
        for answer in (
            client.get("/v1/devices"),
            client.post("/v1/devices", json={"name": "dev1", "profiler": "torch-cpu", "settings": {}}),
        ):
            assert answer.status_code == 503, answer.text
            assert "Retry-After" in answer.headers
            detail = answer.json()["detail"]
            assert f"database schema is at revision {found}" in detail and f"expected {head}" in detail
            assert ("gpnas db upgrade" in detail) and (dropped == "every table" or "devices" in detail)
