"""``gpnas demo``: the whole GP-NAS loop on this machine, on the embedded SQLite default.

Registers this CPU as a device, loads the shipped UFO track-2 task scores, times a cost-stratified
set of ufo-track2 subnets live in interleaved rounds, fits the predictors, computes the Pareto
fronts and serves them. Every step is idempotent, so a second run reuses what is stored and only
tops up what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from importlib import resources
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UserError
from ._options import DEFAULT_DATABASE_URL, DatabaseUrlOption

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SPACE = "ufo-track2"
DEVICE = "local-cpu"
# A fixed namespace makes the score ids deterministic: re-running the demo inserts nothing twice.
_IDS = uuid.UUID("5d4f5d0e-7a43-4c39-9f0a-2f9b7c0e6a11")


def _shipped_scores() -> list[tuple[str, str, float]]:
    """(arch, task, rank) rows of the shipped copy of ufo_track2/train.json."""
    text = resources.files("search_service").joinpath("demo_data/ufo_track2_train.json").read_text()
    rows = []
    for record in json.loads(text).values():
        for key, value in record.items():
            if key.endswith("_rank"):
                rows.append((record["arch"], key.removesuffix("_rank"), float(value)))
    return rows


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def _demo(
        samples: int = typer.Option(
            30, min=3, help="ufo-track2 subnets to measure on this CPU (spread over the cost range)."
        ),
        threads: int = typer.Option(0, min=0, help="torch threads for profiling (0: all cores)."),
        seed: int = typer.Option(0, help="Seed of the cost-stratified design."),
        host: str = typer.Option("127.0.0.1", help="Interface to serve on."),
        port: int = typer.Option(8000, help="TCP port to serve on."),
        serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the server at the end."),
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Profile, fit, search and serve: end to end on --database-url (default ./gpnas.db)."""
        from predictors import create_strategy
        from profilers import LatencyProfiler, create_profiler
        from search_service import Settings, create_app
        from search_service import repositories as repo
        from search_service.core import make_engine, make_sessionmaker, upgrade
        from search_service.domain import Metric
        from search_service.refit import Refitter
        from search_service.schemas import DeviceCreate, MeasurementCreate
        from search_service.services.measurements import ingest_measurements
        from search_service.work import use_threads
        from supernet import get_space

        if serve:
            # Before anything runs: the demo takes minutes and would only fail at its last step.
            check_port_free(host, port)
        started = time.monotonic()
        settings = Settings(database_url=database_url)
        space = get_space(SPACE)
        typer.echo(f"[1/5] database {settings.database_url}: migrating")
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        reads, writes = make_sessionmaker(engine), make_sessionmaker(engine, write=True)

        # The subnets are timed as one interleaved batch, torch-cpu's default protocol.
        profiler_settings: dict[str, Any] = {"batch_size": 1, "threads": threads or os.cpu_count() or 1}
        with writes() as session:
            if DEVICE not in {d.name for d in repo.list_devices(session)}:
                repo.create_device(
                    session, DeviceCreate(name=DEVICE, profiler="torch-cpu", settings=profiler_settings)
                )
            else:
                profiler_settings = repo.get_device(session, DEVICE).settings
            scores = [
                MeasurementCreate(
                    id=str(uuid.uuid5(_IDS, f"{arch}/{task}")),
                    space=SPACE,
                    arch=arch,
                    task=task,
                    metric=Metric.SCORE,
                    value=rank,
                    profiler="table-score",
                    profiler_version="ufo_track2",
                )
                for arch, task, rank in _shipped_scores()
            ]
            stored = ingest_measurements(session, scores, settings.level_shift_threshold)
        typer.echo(
            f"[2/5] device {DEVICE!r} (torch-cpu, {profiler_settings}); UFO task scores: "
            f"{stored.inserted} new, {stored.duplicate} already stored"
        )

        with reads() as session:
            measured = repo.measured_archs(session, SPACE, Metric.LATENCY, DEVICE)
        # A new chip's first measurements span the analytic cost range (cheapest and costliest
        # included): uniformly drawn ufo-track2 subnets all cost about the same.
        design = create_strategy("cost-stratified").select(space, None, [], samples, seed=seed)
        todo = [s for s in design if space.format(s) not in measured]
        typer.echo(
            f"[3/5] timing {len(todo)} cost-stratified subnets on this CPU in interleaved rounds "
            f"({samples - len(todo)} already measured)"
        )
        if todo:
            warning = busy_warning(os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0, os.cpu_count())
            if warning:
                typer.echo(f"  warning: {warning}", err=True)
            profiler = create_profiler("torch-cpu", space, **profiler_settings)
            assert isinstance(profiler, LatencyProfiler)  # torch-cpu times latencies
            # Minutes on a busy machine: say how far it is rather than sit silent.
            profiler.progress = lambda message: typer.echo(f"  {message}")
            try:
                outcomes = profiler.measure_many(todo)
            finally:
                profiler.close()
            rows = [
                MeasurementCreate(
                    id=str(uuid.uuid4()),
                    space=SPACE,
                    arch=space.format(sub),
                    device=DEVICE,
                    metric=Metric.LATENCY,
                    profiler=profiler.name,
                    profiler_version=profiler.version,
                    **outcome.measurement_fields(),
                )
                for sub, outcome in zip(todo, outcomes, strict=True)
                if not isinstance(outcome, Exception)
            ]
            for sub, outcome in zip(todo, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    typer.echo(f"  warning: {space.format(sub)} not measured: {outcome}", err=True)
            with writes() as session:
                ingest_measurements(session, rows, settings.level_shift_threshold)
            if rows:
                latencies = sorted(m.value for m in rows)
                typer.echo(
                    f"  {len(rows)} subnets, {latencies[0]:.1f}-{latencies[-1]:.1f} ms; the reference's "
                    f"spread across rounds {rows[0].drift:.1%}"
                    + (" (flagged as drifting: refits weigh these less)" if rows[0].flagged else "")
                )

        typer.echo("[4/5] fitting predictors and computing Pareto fronts (one per task x device)")
        work_log = logging.getLogger("gpnas.work")
        work_log.setLevel(logging.INFO)
        work_log.addHandler(logging.StreamHandler())
        use_threads(settings.torch_threads)
        report = Refitter(reads, writes, settings).refit(SPACE)
        for line in report.errors:
            typer.echo(f"  warning: {line}", err=True)
        typer.echo(f"  {len(report.predictors)} predictors and {len(report.fronts)} fronts updated")
        with writes() as session:
            _, token = repo.create_token(session, label="gpnas demo")
            session.commit()
        with reads() as session:
            budget = _example_budget(session, "market1501")
        engine.dispose()

        base = f"http://{host}:{port}"
        body = json.dumps(
            {
                "space": SPACE,
                "task": "market1501",
                "device": DEVICE,
                "latency_budget_ms": budget,
                "confidence": 0.9,
            }
        )
        typer.echo(f"[5/5] ready after {time.monotonic() - started:.0f} s")
        typer.echo(
            f"  web page:  {base}/\n  API docs:  {base}/docs\n  front:     "
            f"{base}/v1/pareto?space={SPACE}&task=market1501&device={DEVICE}"
        )
        typer.echo(
            f"  query:     curl -s -X POST {base}/v1/query -H 'Content-Type: application/json' -d '{body}'"
        )
        typer.echo(f"  write token (for POST /v1/measurements, /v1/devices, ...): {token}")
        if serve:
            import uvicorn

            # The bind address decides the Host check's default (loopback: localhost names only).
            served = create_app(settings.model_copy(update={"bind_host": host}))
            uvicorn.run(served, host=host, port=port, log_level="warning")


def check_port_free(host: str, port: int) -> None:
    """A UserError naming the way out when nothing can listen on ``host:port``."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(
                f"cannot serve on {host}:{port} ({error.strerror or error}): pass another --port "
                f"(make demo PORT={port + 1}), or --no-serve"
            ) from None


def busy_warning(load: float, cores: int | None) -> str | None:
    """What to tell a user who times the demo's subnets on a busy machine, or None when it is quiet.

    Busy means a 1-minute load average of at least half the cores (and at least 1): another
    process then holds a core the profiler's threads need. The interleaved protocol removes drift
    between rounds, not a slowdown that lasts the whole batch: beside one spinning neighbour
    every subnet timed 2.2-2.3x slower on the 2-vCPU development VM while the reference drifted
    40% (benchmarks/results/live_budget.md), and the predictions' intervals can only widen by
    the spread the measurements show.
    """
    if cores is None or load < max(1.0, 0.5 * cores):
        return None
    return (
        f"this machine is busy (1-minute load {load:.1f} on {cores} cores): every subnet times slower "
        "than on a quiet machine, all by about the same factor, which no interval can show. For "
        "latencies that hold later, time them on a quiet machine (a fresh --database-url)."
    )


def _example_budget(session: Session, task: str) -> float:
    """A budget for the example query that the stored front can meet at 90% confidence: the
    middle front point's latency plus two standard deviations, rounded up."""
    from search_service import repositories as repo
    from search_service.search import FrontCache

    loaded = FrontCache(ttl_s=0.0).get(repo.StoredFronts(session), SPACE, task, DEVICE)
    if loaded is None:
        return 100.0
    points = loaded.result.points
    middle = points[len(points) // 2]
    return float(int(middle.latency_ms + 2 * middle.latency_std) + 1)
