"""Reliability against a real uvicorn server process: concurrent ingest with retries stored exactly
once, an agent dying mid-job, and the server killed with SIGKILL during ingest."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_helpers import measurements
from sqlalchemy import func, select

from profilers import LocalConfig
from search_service.agent import DeviceAgent
from search_service.client import Conflict, GpnasClient
from search_service.core import make_engine
from search_service.models import Job, Measurement
from search_service.schemas import CampaignCreate, DeviceCreate, ResultRequest
from search_service.testing import free_port, gpnas_command, wait_until_healthy
from supernet import get_space

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def server(
    db_url: str, port: int | None = None, **environment: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``gpnas serve`` on ``db_url`` in a child process (``environment``: more variables); yields
    its base URL and the process."""
    port = port or free_port()
    env = {
        **os.environ,
        "GPNAS_DATABASE_URL": db_url,
        "GPNAS_AUTH": "off",
        "GPNAS_REFIT_WORKER": "off",
        **environment,
    }
    process = subprocess.Popen(
        gpnas_command("serve", "--port", str(port), "--log-level", "warning"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def stderr_tail() -> str:
        # Read only once it exited: a live server's stderr stays open and the read would block.
        return process.stderr.read().decode()[-2000:] if process.poll() is not None else ""  # type: ignore[union-attr]

    try:
        wait_until_healthy(url, process=process, explain=stderr_tail)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


def _count(db_url: str, *where: Any) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Measurement).where(*where)) or 0
    finally:
        engine.dispose()


def _register(
    url: str, name: str = "dev1", profiler: str = "torch-cpu", settings: dict | None = None
) -> None:
    with GpnasClient(url) as api:
        api.create_device(DeviceCreate(name=name, profiler=profiler, settings=settings or {}))


def test_concurrent_clients_with_retries_store_each_measurement_once(db_url: str) -> None:
    """8 clients x 500 measurements, batches of 50; some first tries time out client-side (the
    server may or may not have stored them) and every batch is re-sent at least once."""
    clients, per_client, batch = 8, 500, 50
    with server(db_url) as (url, _):
        _register(url)
        data = [measurements(per_client, seed=100 + c) for c in range(clients)]
        inserted = [0] * clients
        errors: list[str] = []

        def client(c: int) -> None:
            rng = random.Random(c)
            with httpx.Client(base_url=url, timeout=60) as http:
                for start in range(0, per_client, batch):
                    body = {"measurements": data[c][start : start + batch]}
                    if rng.random() < 0.3:
                        # A lost answer: the client cannot know whether this was stored.
                        with contextlib.suppress(httpx.TimeoutException):
                            http.post("/v1/measurements", json=body, timeout=0.005)
                    for _ in range(2):  # the retry, then a duplicate re-send
                        for attempt in range(20):
                            response = http.post("/v1/measurements", json=body)
                            if response.status_code == 200:
                                inserted[c] += response.json()["inserted"]
                                break
                            time.sleep(0.05 * (attempt + 1))
                        else:
                            errors.append(f"client {c}: {response.status_code} {response.text}")

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    total = clients * per_client
    assert _count(db_url) == total
    engine = make_engine(db_url)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count(func.distinct(Measurement.client_id)))) == total
    engine.dispose()
    # Answers that did arrive never counted a row twice (lost first tries may hide some inserts).
    assert sum(inserted) <= total


def test_concurrent_overlapping_batches_never_deadlock(db_url: str) -> None:
    """20 writers post batches that share ids, each batch in its own random order: on PostgreSQL,
    inserting in batch order made writers wait on each other's ids (44 deadlocks, answered 503,
    in 20 s before client-id ordering); every batch must now succeed at the first try."""
    writers, batches, batch = 20, 8, 40
    pool = measurements(200, seed=7)
    with server(db_url) as (url, _):
        _register(url)
        statuses: list[int] = []
        posted: set[str] = set()
        lock = threading.Lock()

        def writer(w: int) -> None:
            rng = random.Random(w)
            with httpx.Client(base_url=url, timeout=120) as http:
                for _ in range(batches):
                    items = rng.sample(pool, batch)
                    status = http.post("/v1/measurements", json={"measurements": items}).status_code
                    with lock:
                        statuses.append(status)
                        posted.update(m["id"] for m in items)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(set(statuses)) == [200], {s: statuses.count(s) for s in set(statuses)}
    assert _count(db_url) == len(posted)  # each shared id stored once


def test_agent_dies_mid_job_and_another_completes_it(db_url: str, tmp_path: Path) -> None:
    table = tmp_path / "latency.csv"
    arch = "0123456780123456780123"
    table.write_text(f"arch,chip\n{arch},4.25\n")
    local = LocalConfig(data_dir=tmp_path)  # the agents' and the server's data directory
    with server(db_url, GPNAS_DATA_DIR=str(tmp_path)) as (url, _), GpnasClient(url) as api:
        _register(url, "chip", "table", {"path": table.name, "column": "chip"})
        api.create_campaign(CampaignCreate(space="fbnet", device="chip", n=1, seed=1))
        assert api.list_jobs().jobs[0].arch == arch
        # Agent A: a process that leases the job with a 2 s lease, starts "measuring" and is killed.
        script = (
            "import httpx, sys, time; r = httpx.post(sys.argv[1] + '/v1/jobs/lease', "
            "json={'device': 'chip', 'lease_seconds': 2}); "
            "print(r.json()['job']['lease_token'], flush=True); time.sleep(600)"
        )
        agent_a = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True)
        token_a = agent_a.stdout.readline().strip()  # type: ignore[union-attr]
        assert token_a
        agent_a.send_signal(signal.SIGKILL)
        agent_a.wait(10)
        job = api.list_jobs(device="chip").jobs[0]
        assert job.status == "leased" and job.attempts == 1
        # Agent B (the real device agent) gets nothing until the lease has expired, then does the job.
        agent_b = DeviceAgent(url, "chip", token="unused", local=local, exit_when_idle=True, lease_seconds=30)
        assert agent_b.run().done == 0
        time.sleep(2.2)
        stats = DeviceAgent(
            url, "chip", token="unused", local=local, exit_when_idle=True, lease_seconds=30
        ).run()
        assert (stats.done, stats.failed, stats.lost) == (1, 0, 0)
        with pytest.raises(Conflict):  # the late result of agent A
            api.post_job_result(job.id, ResultRequest(lease_token=token_a, value=9.0))
        done = api.get_job(job.id)
        assert done.status == "done" and done.attempts == 2
    assert _count(db_url, Measurement.job_id == job.id) == 1
    assert _count(db_url) == 1
    engine = make_engine(db_url)
    with engine.connect() as connection:
        value = connection.scalar(select(Measurement.value).where(Measurement.job_id == job.id))
        assert value == pytest.approx(4.25)
        assert connection.scalar(select(Job.measurement_id).where(Job.id == job.id)) is not None
    engine.dispose()


def test_sigkill_during_ingest_keeps_every_acknowledged_measurement(db_url: str) -> None:
    port = free_port()
    acknowledged: list[str] = []
    attempted: list[list[str]] = []
    stop = threading.Event()
    fbnet = get_space("fbnet")
    archs = [fbnet.format(s) for s in fbnet.sample(500, seed=0)]
    with server(db_url, port) as (url, process):
        _register(url)

        def client(c: int) -> None:
            with httpx.Client(base_url=url, timeout=10) as http:
                for seed in range(1000 + 100 * c, 1000 + 100 * (c + 1)):
                    if stop.is_set():
                        return
                    items = [
                        {
                            "id": f"{c}-{uuid.uuid4()}",
                            "space": "fbnet",
                            "arch": archs[(seed + k) % len(archs)],
                        }
                        | {"device": "dev1", "metric": "latency_ms", "value": 1.0 + k}
                        for k in range(50)
                    ]
                    attempted.append([m["id"] for m in items])
                    try:
                        response = http.post("/v1/measurements", json={"measurements": items})
                    except httpx.TransportError:
                        return
                    if response.status_code == 200:
                        acknowledged.extend(m["id"] for m in items)

        threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
        for t in threads:
            t.start()
        while len(acknowledged) < 1000:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        stop.set()
        for t in threads:
            t.join()
    with server(db_url, port) as (url, _), GpnasClient(url) as api:
        assert api.health().status == "ok"
    engine = make_engine(db_url)
    with engine.connect() as connection:
        stored = set(connection.scalars(select(Measurement.client_id)))
    engine.dispose()
    assert len(acknowledged) >= 1000
    assert set(acknowledged) <= stored
    # Batches are atomic: each one that was in flight at the kill is either all there or absent.
    for ids in attempted:
        present = sum(i in stored for i in ids)
        assert present in (0, len(ids))
