"""Scale benchmark: the fronts of 8 tasks x 8 devices computed by 1 and by 2 Celery workers.

One PostgreSQL database (created fresh, dropped at the end) holds ufo-track2 measurements:
the 8 tasks' scores of the 400 labelled subnets of ../shared/data/ufo_track2/train.json (ranks,
higher is better) and the latencies of 200 random subnets on 8 stand-in devices. No real device
timings of this space are in ../shared/data, so each device's latency is an analytic proxy,
``a + b * GMACs + c * M params`` with per-device coefficients (a roofline-like family; it
stands in for profiled chips). Every run starts from no predictors and no fronts and does the
whole workload: 16 full fits, then 64 fronts. Fronts are bounded by evaluations, not time
(``--evaluations``, time limit off), so every configuration does the same work; the benchmark
process only schedules and waits (``Refitter.refit``), as an API process does with a broker.

Configurations: 1 worker process with 1 torch thread, 2 worker processes with 1 thread each, and
1 worker process with 2 torch threads (what one process gets from both cores without Celery).
The projection for 1,000 fronts (50 chips x 20 tasks: 70 fits) on N workers uses the per-task
costs the workers logged and the 2-worker efficiency measured here.

    python -m benchmarks.scale --out benchmarks/results/scale.md          # about 10 min
    python -m benchmarks.scale --tasks 2 --devices 2 --evaluations 1000   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from benchmarks import _report
from search_service import repositories as repo
from search_service.core import Settings, make_engine, make_sessionmaker, upgrade
from search_service.domain import Metric
from search_service.models import Device
from search_service.refit import Refitter
from search_service.schemas import MeasurementCreate
from supernet import get_space

ROOT = Path(__file__).resolve().parents[1]

SPACE = "ufo-track2"
DATA = Path(os.environ.get("GPNAS_TEST_DATA", ROOT.parent / "shared" / "data"))
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BROKER = "redis://127.0.0.1:6379/13"
GPNAS = Path(sys.executable).parent / "gpnas"
# Per-device (ms, ms per GMAC, ms per M params): a spread of compute- and memory-bound chips.
DEVICE_COEFFICIENTS = [
    (1.0, 2.0, 0.05),
    (0.5, 4.0, 0.02),
    (2.0, 1.0, 0.10),
    (0.2, 8.0, 0.01),
    (3.0, 0.5, 0.20),
    (1.5, 3.0, 0.08),
    (0.8, 1.5, 0.30),
    (2.5, 6.0, 0.04),
]


def measurements(n_tasks: int, n_devices: int) -> tuple[list[str], list[str], list[MeasurementCreate]]:
    space = get_space(SPACE)
    records = list(json.loads((DATA / "ufo_track2" / "train.json").read_text()).values())
    tasks = sorted(k.removesuffix("_rank") for k in records[0] if k.endswith("_rank"))[:n_tasks]
    out = []
    for task in tasks:
        for r in records:
            out.append(
                MeasurementCreate(
                    id=str(uuid.uuid4()),
                    space=SPACE,
                    arch=r["arch"],
                    metric=Metric.SCORE,
                    task=task,
                    value=float(r[f"{task}_rank"]),
                )
            )
    devices = [f"chip{j}" for j in range(n_devices)]
    subnets = space.sample(200, seed=0)
    for device, (a, b, c) in zip(devices, DEVICE_COEFFICIENTS, strict=False):
        for s in subnets:
            value = a + b * space.flops(s) / 1e9 + c * space.param_count(s) / 1e6
            out.append(
                MeasurementCreate(
                    id=str(uuid.uuid4()),
                    space=SPACE,
                    arch=space.format(s),
                    metric=Metric.LATENCY,
                    device=device,
                    value=value,
                )
            )
    return tasks, devices, out


@contextmanager
def database() -> Iterator[str]:
    name = f"gpnas_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def load(url: str, devices: list[str], items: list[MeasurementCreate]) -> None:
    engine = make_engine(url)
    with make_sessionmaker(engine, write=True)() as session:
        for d in devices:
            session.add(Device(name=d, profiler="table", settings={}))
        session.flush()
        repo.insert_measurements(session, items)
        session.commit()
    engine.dispose()


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("TRUNCATE fronts, predictor_versions, work_items RESTART IDENTITY CASCADE")


@contextmanager
def workers(env: dict[str, str], n: int, threads: int, logs: Path) -> Iterator[list[Path]]:
    paths = []
    with ExitStack() as stack:
        for i in range(n):
            path = logs / f"worker{i}.log"
            out = stack.enter_context(path.open("wb"))
            process = subprocess.Popen(
                [str(GPNAS), "worker", "--torch-threads", str(threads), "--log-level", "info"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            stack.callback(lambda p=process: (p.terminate(), p.wait(30)))
            paths.append(path)
        deadline = time.monotonic() + 600
        while not all(b"ready." in p.read_bytes() for p in paths):
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        yield paths


_SUCCEEDED = re.compile(rb"Task gpnas\.(fit_target|build_front)\[[^\]]+\] succeeded in ([0-9.]+)s")


def task_costs(paths: list[Path]) -> dict[str, list[float]]:
    costs: dict[str, list[float]] = {"fit_target": [], "build_front": []}
    for path in paths:
        for kind, seconds in _SUCCEEDED.findall(path.read_bytes()):
            costs[kind.decode()].append(float(seconds))
    return costs


@dataclass(frozen=True)
class Row:
    workers: int
    threads: int
    seconds: float
    fits: int
    fronts: int
    fit_s: float
    front_s: float


def run(url: str, settings: Settings, n_workers: int, threads: int, logs: Path) -> Row:
    reset(url)
    env = {
        **os.environ,
        "GPNAS_DATABASE_URL": url,
        "GPNAS_BROKER_URL": settings.broker_url or "",
        "GPNAS_TASK_QUEUE": settings.task_queue,
        "GPNAS_FRONT_MAX_EVALUATIONS": str(settings.front_max_evaluations),
        "GPNAS_FRONT_TIME_LIMIT_S": str(settings.front_time_limit_s),
    }
    engine = make_engine(url)
    refitter = Refitter(make_sessionmaker(engine), make_sessionmaker(engine, write=True), settings)
    with workers(env, n_workers, threads, logs) as paths:
        start = time.perf_counter()
        report = refitter.refit()
        elapsed = time.perf_counter() - start
        time.sleep(0.5)  # the last "succeeded" log lines
        costs = task_costs(paths)
    refitter.stop()
    engine.dispose()
    assert not report.errors, report.errors
    return Row(
        n_workers,
        threads,
        elapsed,
        len(report.predictors),
        len(report.fronts),
        statistics.median(costs["fit_target"]),
        statistics.median(costs["build_front"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--evaluations", type=int, default=3000, help="Subnets evaluated per front.")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tasks, devices, items = measurements(args.tasks, args.devices)
    settings = Settings(
        broker_url=BROKER,
        task_queue=f"gpnas-scale-{uuid.uuid4().hex[:8]}",
        front_max_evaluations=args.evaluations,
        front_time_limit_s=1e6,
        task_wait_s=3600.0,
        refit_worker=False,
    )
    load_before = os.getloadavg()[0]
    rows = []
    with database() as url:
        settings = settings.model_copy(update={"database_url": url})
        load(url, devices, items)
        logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpnas-scale-{uuid.uuid4().hex[:6]}"
        logs.mkdir()
        for n_workers, threads in ((1, 1), (2, 1), (1, 2)):
            row = run(url, settings, n_workers, threads, logs)
            print(row, flush=True)
            rows.append(row)
    one = rows[0].seconds
    speedup = one / rows[1].seconds
    efficiency = speedup / 2
    fit_s = statistics.median([r.fit_s for r in rows[:2]])
    front_s = statistics.median([r.front_s for r in rows[:2]])
    serial = 70 * fit_s + 1000 * front_s
    header = [
        "worker processes",
        "torch threads each",
        "wall time (s)",
        "fits",
        "fronts",
        "median fit (s)",
        "median front (s)",
        "speed-up vs 1",
    ]
    measured = [
        [
            row.workers,
            row.threads,
            f"{row.seconds:.1f}",
            row.fits,
            row.fronts,
            f"{row.fit_s:.2f}",
            f"{row.front_s:.2f}",
            f"{one / row.seconds:.2f}x",
        ]
        for row in rows
    ]
    projected = [
        [n, f"{serial / (n * (efficiency if n > 1 else 1.0)) / 60:.1f} min"] for n in (1, 2, 8, 32, 128)
    ]
    text = _report.document(
        "Scale: fronts on Celery workers",
        _report.command("scale"),
        [
            f"{len(tasks)} tasks x {len(devices)} devices of {SPACE}: {len(tasks) + len(devices)} full fits, "
            f"then {len(tasks) * len(devices)} fronts of {args.evaluations} evaluations each; Redis broker, "
            f"PostgreSQL; {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
            f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after. Latencies are an "
            "analytic proxy per stand-in device (no real timings of this space ship with the data)."
        ],
        _report.table(header, "rrrrrrrr", measured),
        [
            f"Speed-up with 2 worker processes: **{speedup:.2f}x** (target >= 1.7x: "
            f"{'met' if speedup >= 1.7 else 'not met'})."
        ],
        [
            f"Projected, 1,000 fronts (50 chips x 20 tasks, so 70 fits) from the medians above "
            f"({fit_s:.2f} s a fit, {front_s:.2f} s a front, one core each) at the measured 2-worker "
            f"efficiency ({efficiency:.0%}):"
        ],
        _report.table(["workers (one core each)", "projected time"], "rr", projected),
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
