"""Fault suite: a real stack (``gpnas serve``, ``gpnas worker``, PostgreSQL, a private Redis
broker) under agents doing jobs while the API, the worker, PostgreSQL backends and the broker
are killed, and while a flood of abandoned deployment queries arrives.

    python -m benchmarks.faults                          # all scenarios, ~6 minutes
    python -m benchmarks.faults --scenarios quiet,flood  # some of them
    python -m benchmarks.faults --out benchmarks/results/faults.md

What it reports, per scenario (the README's reliability table comes from it):

* acknowledged results lost (a job whose result got a 200 but has no measurement row) and
  duplicated (a job with more than one row): both must be 0;
* answers 500 (or any 5xx but 503) seen by the agents or the probes: must be 0;
* p99 of ``GET /healthz`` and of ``POST /v1/query`` (a cached front) from a probe that asks every
  50 ms, against the quiet baseline (target during the flood: <= 3x);
* how long the front stayed stale: from the fault (or the data that makes it stale) to a front
  built on predictors that include the new data (target after a worker kill: <= 60 s).

Scenarios: ``quiet`` (baseline), ``flood`` (100 distinct anonymous deployment queries in 7 s, each
abandoned after 2 s), ``pg-kill`` (every PostgreSQL backend of the database terminated every 2 s
for 20 s), ``api-kill`` (SIGKILL of the API, restarted at once), ``worker-kill`` (SIGKILL of the
worker while it fits new data, a new worker started at once), ``broker-outage`` (the broker
killed for 20 s while new data arrives, then started again).

The latencies and scores are stand-ins (latency proportional to FLOPs, scores growing with it):
this measures the service's robustness, not its predictors.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from benchmarks import _report
from search_service.core import make_engine, upgrade
from search_service.models import Front, Measurement, PredictorVersion, WorkItem
from search_service.testing import free_port, gpnas_command, wait_until_healthy
from supernet import SearchSpace, Subnet, get_space

ROOT = Path(__file__).resolve().parents[1]
SPACE, DEVICE, TASKS = "ufo-track2", "fault-cpu", ("market1501", "veri")
PROBE_EVERY_S = 0.05
SCENARIOS = ("quiet", "flood", "pg-kill", "api-kill", "worker-kill", "broker-outage")


def _latency_item(space: SearchSpace, sub: Subnet, rng: np.random.Generator) -> dict[str, object]:
    """A new measurement item: the device's stand-in latency of ``sub``."""
    return {
        "id": str(uuid.uuid4()),
        "space": SPACE,
        "arch": space.format(sub),
        "device": DEVICE,
        "metric": "latency_ms",
        "value": _latency(space.flops(sub), rng),
        "std": 0.01,
    }


def _latency(space_flops: float, rng: np.random.Generator) -> float:
    return space_flops / 1e9 * float(rng.uniform(0.98, 1.02))


# ----------------------------------------------------------------------------------- the stack
class Stack:
    """PostgreSQL database, private Redis, one API process and one worker, each restartable."""

    def __init__(self, admin_url: str, tmp: Path, broker: bool = True) -> None:
        self.admin_url, self.tmp = admin_url, tmp
        self.db_name = f"gpnas_faults_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db_name)))
        base = admin_url.rsplit("/", 1)[0]
        self.pg_url = f"{base}/{self.db_name}"
        self.url = self.pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
        upgrade(self.url)
        self.engine = make_engine(self.url)
        self.redis_port = free_port()
        self.api_port = free_port()
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.env = {**os.environ, "GPNAS_DATABASE_URL": self.url, "GPNAS_AUTH": "on"}
        self.env.pop("GPNAS_BROKER_URL", None)
        if broker:
            self.env |= {
                "GPNAS_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "GPNAS_TASK_QUEUE": f"gpnas-faults-{uuid.uuid4().hex[:8]}",
            }
        self.log = (tmp / "stack.log").open("w")
        self.redis: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        if broker:
            self.start_redis()
        out = subprocess.run(
            gpnas_command("token", "create"), env=self.env, check=True, capture_output=True, text=True
        ).stdout
        self.token = out.split()[-1]
        if broker:
            self.start_worker()
        self.start_api()

    def _spawn(self, args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def start_redis(self) -> None:
        self.redis = self._spawn(
            ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"]
        )
        _wait_port(self.redis_port, 10)

    def log_tail(self) -> str:
        """The last lines the stack's processes logged."""
        self.log.flush()
        return (self.tmp / "stack.log").read_text()[-2000:]

    def start_api(self) -> None:
        self.api = self._spawn(gpnas_command("serve", "--port", str(self.api_port), "--log-level", "warning"))
        # The log's tail, not its path: the temporary folder is gone once the error propagates.
        wait_until_healthy(self.base, process=self.api, explain=self.log_tail)

    def start_worker(self) -> None:
        self.worker = self._spawn(gpnas_command("worker", "--log-level", "warning"))

    @staticmethod
    def kill(process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def terminate_backends(self) -> int:
        """Terminate every PostgreSQL backend of the stack's database; how many."""
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.db_name,),
            ).fetchall()
        return len(rows)

    def close(self) -> None:
        for process in (self.api, self.worker):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    self.kill(process)
        self.kill(self.redis)
        self.engine.dispose()
        self.log.close()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.db_name))
            )

    # -------------------------------------------------------------------- what the database says
    def newest_front(self, task: str) -> tuple[int, int] | None:
        """(front id, id of the latency predictor it was built on) of (task, DEVICE)."""
        with Session(self.engine) as session:
            row = session.execute(
                select(Front.id, Front.latency_predictor_id)
                .where(Front.space == SPACE, Front.task == task, Front.device == DEVICE)
                .order_by(Front.id.desc())
                .limit(1)
            ).first()
        return None if row is None else (row[0], row[1])

    def fitted_on(self, predictor_id: int) -> int:
        """The number of live measurements the predictor version was fitted on."""
        with Session(self.engine) as session:
            row = session.get(PredictorVersion, predictor_id)
            assert row is not None
            return int(row.n_measurements or 0)

    def live_latencies(self) -> int:
        with Session(self.engine) as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(Measurement)
                    .where(Measurement.device == DEVICE, Measurement.retracted_at.is_(None))
                )
                or 0
            )

    def fit_running(self) -> bool:
        with Session(self.engine) as session:
            return bool(
                session.scalar(
                    select(func.count())
                    .select_from(WorkItem)
                    .where(WorkItem.kind == "fit", WorkItem.status == "running")
                )
            )

    def rows_per_job(self, job_ids: list[int]) -> dict[int, int]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(Measurement.job_id, func.count())
                .where(Measurement.job_id.in_(job_ids))
                .group_by(Measurement.job_id)
            ).all()
        return {int(job): int(n) for job, n in rows}


def _wait_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


# ----------------------------------------------------------------------------------- observing
@dataclass
class Sample:
    at: float
    route: str
    status: int  # 0: no answer (connection refused or timed out)
    seconds: float


@dataclass
class Probe:
    """Asks ``/healthz`` and a cached ``/v1/query`` every PROBE_EVERY_S, from its own thread."""

    base: str
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        query = {
            "space": SPACE,
            "task": TASKS[0],
            "device": DEVICE,
            "latency_budget_ms": 1e6,
            "confidence": 0.9,
        }
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                for route, call in (
                    ("healthz", lambda: client.get("/healthz")),
                    ("query", lambda: client.post("/v1/query", json=query)),
                ):
                    began = time.perf_counter()
                    try:
                        status = call().status_code
                    except httpx.HTTPError:
                        status = 0
                    self.samples.append(Sample(time.monotonic(), route, status, time.perf_counter() - began))
                self._stop.wait(PROBE_EVERY_S)

    @contextmanager
    def running(self) -> Iterator[Probe]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


@dataclass
class Agents:
    """``n`` agents leasing the device's jobs and posting a stand-in result for each."""

    stack: Stack
    n: int
    acked: dict[int, int] = field(default_factory=dict)  # job id -> measurement id of the 200
    answers: list[int] = field(default_factory=list)  # every status an agent saw
    _stop: threading.Event = field(default_factory=threading.Event)

    def agent(self, seed: int) -> None:
        space = get_space(SPACE)
        rng = np.random.default_rng(seed)
        headers = {"Authorization": f"Bearer {self.stack.token}"}
        with httpx.Client(base_url=self.stack.base, timeout=30, headers=headers) as client:
            while not self._stop.is_set():
                try:
                    lease = client.post(
                        "/v1/jobs/lease", json={"device": DEVICE, "count": 2, "lease_seconds": 30}
                    )
                except httpx.HTTPError:
                    self._stop.wait(0.5)
                    continue
                self.answers.append(lease.status_code)
                jobs = lease.json().get("jobs", []) if lease.status_code == 200 else []
                if not jobs:
                    self._stop.wait(0.5)
                    continue
                for job in jobs:
                    value = _latency(space.flops(space.parse(job["arch"])), rng)
                    body = {"lease_token": job["lease_token"], "value": value, "std": 0.01}
                    for _ in range(20):  # a result is worth retrying until it is acknowledged
                        try:
                            answer = client.post(f"/v1/jobs/{job['id']}/result", json=body)
                        except httpx.HTTPError:
                            time.sleep(0.5)
                            continue
                        self.answers.append(answer.status_code)
                        if answer.status_code == 200:
                            self.acked[job["id"]] = answer.json()["measurement_id"]
                            break
                        if answer.status_code not in (502, 503, 504):
                            break  # a 4xx (lease lost) is not retried; a 500 is counted
                        time.sleep(0.5)

    @contextmanager
    def running(self) -> Iterator[Agents]:
        threads = [threading.Thread(target=self.agent, args=(i,), daemon=True) for i in range(self.n)]
        for t in threads:
            t.start()
        try:
            yield self
        finally:
            self._stop.set()
            for t in threads:
                t.join(60)


@dataclass
class Result:
    scenario: str
    seconds: float
    acked: int
    lost: int
    duplicated: int
    errors_500: int
    healthz_p99_ms: float | None
    healthz_max_ms: float | None
    query_p99_ms: float | None
    unanswered: int
    stale_s: float | None = None
    note: str = ""


def _percentile_ms(samples: list[Sample], route: str, q: float) -> float | None:
    """The q-th percentile (ms) of the answered probes of ``route``."""
    values = [s.seconds for s in samples if s.route == route and s.status and s.status < 500]
    return None if not values else float(np.percentile(values, q)) * 1e3


# ----------------------------------------------------------------------------------- scenarios
def _seed(stack: Stack, n: int) -> None:
    """The device, n latencies and n scores per task, fitted and searched once (refit?wait)."""
    space = get_space(SPACE)
    rng = np.random.default_rng(0)
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.base, timeout=600, headers=headers) as client:
        answer = client.post("/v1/devices", json={"name": DEVICE, "profiler": "torch-cpu", "settings": {}})
        assert answer.status_code == 201, answer.text
        items = []
        for sub in space.sample(n, seed=0):
            arch, flops = space.format(sub), space.flops(sub)
            items.append(_latency_item(space, sub, rng))
            for i, task in enumerate(TASKS):
                score = (50.0 + 10 * i) * math.log(flops / 1e9) + float(rng.normal(0, 0.5))
                items.append(
                    {
                        "id": str(uuid.uuid4()),
                        "space": SPACE,
                        "arch": arch,
                        "task": task,
                        "metric": "score",
                        "value": score,
                    }
                )
        assert client.post("/v1/measurements", json={"measurements": items}).status_code == 200
        answer = client.post("/v1/refit", json={"wait": True})
        assert answer.status_code == 200, answer.text


def _campaign(stack: Stack, n: int, seed: int) -> int:
    headers = {"Authorization": f"Bearer {stack.token}"}
    answer = httpx.post(
        f"{stack.base}/v1/campaigns",
        json={"space": SPACE, "device": DEVICE, "n": n, "seed": seed, "strategy": "random"},
        headers=headers,
        timeout=120,
    )
    return answer.status_code


def _stale_until_fresh(stack: Stack, since: float, n_live: int, timeout_s: float) -> float | None:
    """Seconds from ``since`` until every task's newest front is built on a latency predictor
    fitted on at least ``n_live`` measurements (None: not within ``timeout_s``)."""
    deadline = since + timeout_s
    while time.monotonic() < deadline:
        fronts = [stack.newest_front(task) for task in TASKS]
        if all(f is not None and stack.fitted_on(f[1]) >= n_live for f in fronts):
            return time.monotonic() - since
        time.sleep(0.25)
    return None


def _post_latencies(stack: Stack, n: int, seed: int) -> int:
    """n new latencies of the device (the ingest needs no broker); the live count after."""
    space = get_space(SPACE)
    rng = np.random.default_rng(seed)
    items = [_latency_item(space, sub, rng) for sub in space.sample(n, seed=seed)]
    headers = {"Authorization": f"Bearer {stack.token}"}
    for _ in range(20):
        try:
            answer = httpx.post(
                f"{stack.base}/v1/measurements", json={"measurements": items}, headers=headers, timeout=60
            )
            if answer.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return stack.live_latencies()


def _flood(stack: Stack, n: int, within_s: float, abandon_s: float) -> tuple[int, list[int]]:
    """n distinct anonymous deployment queries spread over within_s, each abandoned after
    abandon_s; (abandoned, statuses of those answered in time)."""
    body = {"space": SPACE, "device": DEVICE, "tasks": [{"task": t, "latency_budget_ms": 1e6} for t in TASKS]}

    async def run() -> tuple[int, list[int]]:
        statuses: list[int] = []
        abandoned = 0
        async with httpx.AsyncClient(base_url=stack.base, timeout=abandon_s) as client:

            async def one(i: int) -> None:
                nonlocal abandoned
                await asyncio.sleep(i * within_s / n)
                try:
                    answer = await client.post(
                        "/v1/deployments/query", json=body | {"confidence": 0.5 + i / (2 * n + 1)}
                    )
                    statuses.append(answer.status_code)
                except httpx.TimeoutException:
                    abandoned += 1

            await asyncio.gather(*(one(i) for i in range(n)))
        return abandoned, statuses

    return asyncio.run(run())


def scenario(
    name: str, stack: Stack, agents: int, jobs: int, seed: int, fault: Callable[[], tuple[float | None, str]]
) -> Result:
    """Run ``fault`` while agents work through ``jobs`` new jobs and the probe asks."""
    assert _campaign(stack, jobs, seed) == 201
    probe = Probe(stack.base)
    began = time.monotonic()
    with probe.running(), Agents(stack, agents).running() as workers:
        stale, note = fault()
        # Let the agents finish the campaign (or 60 s more).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers.acked) < jobs:
            time.sleep(0.25)
    rows = stack.rows_per_job(list(workers.acked))
    statuses = workers.answers + [s.status for s in probe.samples]
    return Result(
        scenario=name,
        seconds=time.monotonic() - began,
        acked=len(workers.acked),
        lost=sum(1 for job in workers.acked if rows.get(job, 0) == 0),
        duplicated=sum(1 for n in rows.values() if n > 1),
        errors_500=sum(1 for s in statuses if s >= 500 and s != 503),
        healthz_p99_ms=_percentile_ms(probe.samples, "healthz", 99),
        healthz_max_ms=_percentile_ms(probe.samples, "healthz", 100),
        query_p99_ms=_percentile_ms(probe.samples, "query", 99),
        unanswered=sum(1 for s in probe.samples if s.status == 0),
        stale_s=stale,
        note=note,
    )


def faults(stack: Stack, args: argparse.Namespace) -> dict[str, Callable[[], tuple[float | None, str]]]:
    def quiet() -> tuple[float | None, str]:
        time.sleep(args.phase_s)
        return None, ""

    def flood() -> tuple[float | None, str]:
        abandoned, answered = _flood(stack, 100, 7.0, 2.0)
        time.sleep(max(0.0, args.phase_s - 9.0))
        counts = {s: answered.count(s) for s in sorted(set(answered))}
        return None, f"{abandoned} abandoned; answered in time: {counts}"

    def pg_kill() -> tuple[float | None, str]:
        killed = 0
        end = time.monotonic() + args.phase_s
        while time.monotonic() < end:
            killed += stack.terminate_backends()
            time.sleep(2.0)
        return None, f"{killed} backends terminated"

    def api_kill() -> tuple[float | None, str]:
        time.sleep(3.0)
        stack.kill(stack.api)
        down = time.monotonic()
        stack.start_api()
        time.sleep(args.phase_s)
        return None, f"API back in {time.monotonic() - down - args.phase_s:.1f} s"

    def worker_kill() -> tuple[float | None, str]:
        n_live = _post_latencies(stack, 20, seed=1000 + int(time.time()) % 1000)
        posted = time.monotonic()
        deadline = posted + 60
        while time.monotonic() < deadline and not stack.fit_running():
            time.sleep(0.02)
        caught = stack.fit_running()
        stack.kill(stack.worker)
        killed = time.monotonic()
        stack.start_worker()
        stale = _stale_until_fresh(stack, killed, n_live, args.stale_timeout_s)
        return stale, ("killed mid-fit" if caught else "no fit seen running: killed idle") + (
            f" {killed - posted:.1f} s after the data"
        )

    def broker_outage() -> tuple[float | None, str]:
        stack.kill(stack.redis)
        n_live = _post_latencies(stack, 20, seed=2000 + int(time.time()) % 1000)
        refused = _campaign(stack, 1, seed=99)
        time.sleep(args.phase_s)
        stack.start_redis()
        back = time.monotonic()
        stale = _stale_until_fresh(stack, back, n_live, args.stale_timeout_s)
        return stale, f"campaign during the outage answered {refused}"

    return {
        "quiet": quiet,
        "flood": flood,
        "pg-kill": pg_kill,
        "api-kill": api_kill,
        "worker-kill": worker_kill,
        "broker-outage": broker_outage,
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def report(results: list[Result], args: argparse.Namespace, command: str, started: float) -> str:
    quiet = next((r for r in results if r.scenario == "quiet"), None)
    stack = (
        "one `gpnas serve` running fits, fronts and searches itself (no broker), PostgreSQL"
        if args.no_broker
        else "one `gpnas serve`, one `gpnas worker` (solo pool), PostgreSQL, a private Redis broker"
    )
    header = [
        "scenario",
        "acked results",
        "lost",
        "duplicated",
        "500s",
        "/healthz p99 (max) ms",
        "/v1/query p99 ms",
        "p99 vs quiet",
        "probes unanswered",
        "front stale (s)",
        "note",
    ]
    rows = []
    for r in results:
        ratio = "-"
        if (
            quiet is not None
            and r is not quiet
            and quiet.healthz_p99_ms
            and r.healthz_p99_ms
            and quiet.query_p99_ms
            and r.query_p99_ms
        ):
            ratio = (
                f"{r.healthz_p99_ms / quiet.healthz_p99_ms:.1f}x / {r.query_p99_ms / quiet.query_p99_ms:.1f}x"
            )
        rows.append(
            [
                r.scenario,
                r.acked,
                r.lost,
                r.duplicated,
                r.errors_500,
                f"{_fmt(r.healthz_p99_ms, 1)} ({_fmt(r.healthz_max_ms, 0)})",
                _fmt(r.query_p99_ms, 1),
                ratio,
                r.unanswered,
                _fmt(r.stale_s, 1),
                r.note,
            ]
        )
    setting = (
        f"Run on {platform.node()} ({os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end), {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{time.monotonic() - started:.0f} s. {stack[0].upper()}{stack[1:]}; {args.agents} agents "
        f"doing {args.jobs} jobs per scenario; a probe asking `/healthz` and a cached `/v1/query` "
        "every 50 ms."
    )
    targets = (
        "Targets: 0 lost, 0 duplicated, 0 answers 500; p99 of cheap reads during the flood <= 3x "
        'the quiet p99; a front stale for <= 60 s after a worker kill. "front stale" counts from '
        "the kill (worker) or the broker's return (outage) until every task's front is built on a "
        "latency fit that includes the new data. Probes unanswered: connection refused or timed "
        "out (the API was down)."
    )
    return _report.document(
        "Fault suite: nothing acknowledged is lost, no 500, cheap reads keep answering",
        command,
        [setting],
        _report.table(header, "lllllllllll", rows),
        [targets],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=40, help="Jobs per scenario.")
    parser.add_argument("--seed-subnets", type=int, default=60)
    parser.add_argument("--phase-s", type=float, default=20.0)
    parser.add_argument("--stale-timeout-s", type=float, default=180.0)
    parser.add_argument(
        "--no-broker",
        action="store_true",
        help="The embedded default: fits, fronts and searches run in the API process (no worker, no "
        "Redis); the worker and broker scenarios do not apply.",
    )
    parser.add_argument("--out", type=Path, help="Write the Markdown report here.")
    parser.add_argument("--json", type=Path, help="Write the results as JSON here (the CI test reads it).")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    if args.no_broker and {"worker-kill", "broker-outage"} & set(chosen):
        parser.error("--no-broker runs no worker and no broker: leave out worker-kill and broker-outage")
    if not args.no_broker and shutil.which("redis-server") is None:
        parser.error("redis-server is not installed (the suite runs a private broker to kill)")
    started = time.monotonic()
    command = _report.command("faults")
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(args.admin_url, Path(tmp), broker=not args.no_broker)
        try:
            _seed(stack, args.seed_subnets)
            plans = faults(stack, args)
            results = []
            for i, name in enumerate(chosen):
                print(f"{name} ...", flush=True)
                results.append(scenario(name, stack, args.agents, args.jobs, seed=i, fault=plans[name]))
                print(results[-1], flush=True)
        except BaseException:
            print((Path(tmp) / "stack.log").read_text()[-5000:], file=sys.stderr)
            raise
        finally:
            stack.close()
    text = report(results, args, command.strip(), started)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
