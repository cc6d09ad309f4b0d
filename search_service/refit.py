"""Refitting predictors and recomputing fronts after new measurements, in the background or on demand.

A target — a device's latency or a task's score in one space — is stale when its data version (the
largest id and the number of its live, i.e. not retracted, measurements: see
:class:`~search_service.repositories.DataVersion`) differs from the one its latest predictor version
was fitted on, so new measurements and retractions both make it stale. Fits skip impossible values
(:mod:`search_service.outliers`). Each refit stores a new predictor version (bytes); each
(task, device) pair whose newest predictors differ from those of its newest front gets a new front
version. Nothing is overwritten: queries use the newest versions.

:class:`Refitter` is what the API process holds: a thread that starts scheduling passes after new
data (and every ``refit_poll_s``), ``refit`` for a pass that is waited for, and ``last_failure``
for the answers. The work itself is :mod:`search_service.work`'s: in this process without a
broker, on Celery workers with one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import repositories as repo
from .core.config import Settings
from .domain import Metric, WorkKind, WorkStatus
from .errors import UnavailableError
from .models import Front, PredictorVersion, WorkItem, utcnow
from .services import REQUEST_HANDLERS
from .work import CeleryRunner, InProcessRunner, Outcome, Runner, WorkContext, items, schedule, wait_for

log = logging.getLogger("gpnas.refit")


@dataclass
class RefitReport:
    """What one refit pass produced."""

    predictors: list[PredictorVersion] = field(default_factory=list)
    fronts: list[Front] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _quantity(metric: str, target: str) -> str:
    if metric == Metric.LATENCY:
        return f"the latencies of device {target!r}"
    return f"the scores of task {target!r}"


def create_runner(ctx: WorkContext) -> Runner:
    """Celery workers when ``ctx.settings.broker_url`` is set, else this process."""
    return CeleryRunner(ctx) if ctx.settings.broker_url else InProcessRunner(ctx, REQUEST_HANDLERS)


def _describe(item: WorkItem) -> str:
    """A work item as the refit report names it: ``space/metric/target`` or ``space/front TxD``."""
    parts = item.key.split("/")
    if item.kind == WorkKind.FIT:
        return "/".join(parts[1:4])
    return f"{parts[1]}/front {parts[2]}x{parts[3]}"


class Refitter:
    """Schedules fits and fronts for the API process; callable from any thread.

    Args:
        read_sessions: Sessions for reading.
        write_sessions: Sessions that write (SQLite: BEGIN IMMEDIATE).
        settings: Predictor name, refit policy, front-search limits and the broker.
        runner: Where the work runs (default: :func:`create_runner`).
    """

    def __init__(
        self,
        read_sessions: sessionmaker[Session],
        write_sessions: sessionmaker[Session],
        settings: Settings,
        runner: Runner | None = None,
    ):
        self.ctx = WorkContext(read_sessions, write_sessions, settings)
        self.runner = runner or create_runner(self.ctx)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    # ------------------------------------------------------------------ one pass, waited for
    def refit(self, space: str | None = None) -> RefitReport:
        """Fit every stale target (of ``space``, or all), then search the outdated fronts; returns
        when the work is done (here, or on the workers).

        Raises:
            UnavailableError: With a broker, workers did not finish within ``task_wait_s``.
        """
        started = utcnow()
        outcomes: list[Outcome] = []
        keys: list[str] = []
        # No lock: a pass's orders are its own (schedule records each dispatch), so passes of other
        # spaces, or the background thread's, run beside this one; work another pass took is
        # waited for through its work items.
        while True:
            orders = schedule(self.ctx, space)
            keys += [o.key for o in orders]
            outcomes += self.runner.send(orders)
            with self.ctx.read_sessions() as session:
                pending = [item.key for item in items.unfinished(session, space)]
            if not orders and not pending:
                break
            keys += pending
            if pending:
                wait_for(self.ctx, pending, self.settings.task_wait_s)
        return self._report(keys, started, space, [note for o in outcomes for note in o.notes])

    def _report(
        self, keys: list[str], started: dt.datetime, space: str | None, notes: list[str]
    ) -> RefitReport:
        """What was stored since ``started`` (here, or by workers: fits chain their own fronts),
        and the failures among the work this refit waited for."""
        report = RefitReport(notes=notes)
        with self.ctx.read_sessions() as session:
            for model, out in ((PredictorVersion, report.predictors), (Front, report.fronts)):
                stmt = select(model).where(model.created_at >= started).order_by(model.id)
                if space is not None:
                    stmt = stmt.where(model.space == space)
                out.extend(session.scalars(stmt))
            failed = select(WorkItem).where(WorkItem.key.in_(set(keys)), WorkItem.status == WorkStatus.FAILED)
            report.errors = [
                f"{_describe(item)}: {item.error}" for item in session.scalars(failed.order_by(WorkItem.id))
            ]
        return report

    def last_failure(self, session: Session, space: str, task: str, device: str) -> str | None:
        """Why the front of (space, task, device) cannot be computed on the data as it is now, or
        None when nothing failed (or the data changed since its fit failed).

        Args:
            session: A read session.
            space: The search space.
            task: The score's task.
            device: The latency's device.
        """
        for metric, target in ((Metric.LATENCY, device), (Metric.SCORE, task)):
            version = repo.data_version(session, space, metric, target)
            error = items.failure(session, items.fit_key(space, metric, target, version))
            if error is not None:
                return f"the last fit of {_quantity(metric, target)} failed: {error}"
        score = repo.latest_predictor(session, space, Metric.SCORE, task)
        latency = repo.latest_predictor(session, space, Metric.LATENCY, device)
        if score is None or latency is None:
            return None
        error = items.failure(session, items.front_key(space, task, device, score.id, latency.id))
        return None if error is None else f"its last computation failed: {error}"

    # ------------------------------------------------------------------ background thread
    def notify(self) -> None:
        """New data arrived: schedule soon (after ``refit_delay_s``, to batch arrivals)."""
        self._wake.set()

    def start(self) -> None:
        if self.runner.in_process:
            # What this process had taken when it stopped will not finish: dispatch it again now.
            with self.ctx.write_sessions() as session:
                reset = items.reset_unfinished(session)
                session.commit()
            if reset:
                log.info("%d unfinished work items from an earlier run dispatched again", reset)
        self._thread = threading.Thread(target=self._run, name="gpnas-refit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if isinstance(self.runner, CeleryRunner):
            self.runner.close()

    def _run(self) -> None:
        # Look once at start-up: data may have arrived while no server ran.
        self._wake.set()
        while not self._stop.is_set():
            self._wake.wait(self.settings.refit_poll_s)
            if self._stop.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                # Batch a burst of ingests into one pass.
                if self._stop.wait(self.settings.refit_delay_s):
                    return
            started = time.monotonic()
            try:
                report = self._pass()
            except UnavailableError as error:  # the broker is down: one line per pass, not a trace
                log.warning("scheduling pass postponed: %s", error.message)
                continue
            except Exception:  # the thread must survive anything (e.g. the database restarting)
                log.exception("scheduling pass failed")
                continue
            if report:
                log.info("scheduling pass: %d orders in %.1f s", report, time.monotonic() - started)

    def _pass(self) -> int:
        """One pass in the background: run the work here, or send it to the workers."""
        if self.runner.in_process:
            return len(self.refit().predictors)
        orders = schedule(self.ctx)
        self.runner.send(orders)
        return len(orders)
