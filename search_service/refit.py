"""Refitting predictors and recomputing fronts after new measurements, in the background or on demand.

A target — a device's latency or a task's score in one space — is stale when its data version (the
largest id and the number of its live, i.e. not retracted, measurements: see
:class:`~search_service.repositories.DataVersion`) differs from the one its latest predictor version
was fitted on, so new measurements and retractions both make it stale. Fits skip impossible values
(:mod:`search_service.outliers`). Each refit stores a new predictor version (bytes); each
(task, device) pair whose newest predictors differ from those of its newest front gets a new front
version. Nothing is overwritten: queries use the newest versions.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from dataclasses import dataclass, field

import torch
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from predictors import Predictor, create_predictor
from supernet import get_space

from . import repositories as repo
from .core.config import Settings
from .domain import Metric
from .models import Front, PredictorVersion, utcnow
from .search import FrontResult, compute_front

log = logging.getLogger("gpnas.refit")


def encode_front(result: FrontResult) -> bytes:
    """Front (and candidate archive) as gzip-compressed JSON, the form stored in ``fronts.data``."""
    return gzip.compress(json.dumps(result.to_dict(), separators=(",", ":")).encode(), compresslevel=6)


def decode_front(data: bytes, space: str) -> FrontResult:
    return FrontResult.from_dict(json.loads(gzip.decompress(data)), get_space(space))


@dataclass
class RefitReport:
    """What one refit pass produced."""

    predictors: list[PredictorVersion] = field(default_factory=list)
    fronts: list[Front] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# How many skipped measurements a log line or note names one by one.
_NAMED_SKIPS = 10


def _skipped_note(skipped: list[repo.Skipped], total: int) -> str:
    named = "; ".join(f"id {s.id} ({s.value:.4g}: {s.reason})" for s in skipped[:_NAMED_SKIPS])
    more = f"; and {len(skipped) - _NAMED_SKIPS} more" if len(skipped) > _NAMED_SKIPS else ""
    return f"skipped {len(skipped)} of {total} measurements as impossible: {named}{more}"


def _quantity(metric: str, target: str) -> str:
    if metric == Metric.LATENCY:
        return f"the latencies of device {target!r}"
    return f"the scores of task {target!r}"


class Refitter:
    """Fits predictors and fronts; one pass at a time per process (a lock), callable from any thread.

    Args:
        read_sessions: Sessions for reading.
        write_sessions: Sessions that write (SQLite: BEGIN IMMEDIATE).
        settings: Predictor name, minimum data and front-search limits.
    """

    def __init__(
        self, read_sessions: sessionmaker[Session], write_sessions: sessionmaker[Session], settings: Settings
    ):
        self.read_sessions = read_sessions
        self.write_sessions = write_sessions
        self.settings = settings
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The last failure per target (with the data version it failed on) and per front, so that
        # queries can say why a front is missing; in memory: they are recomputed after a restart.
        self._errors_lock = threading.Lock()
        self._fit_errors: dict[tuple[str, str, str], tuple[repo.DataVersion, str]] = {}
        self._front_errors: dict[tuple[str, str, str], str] = {}

    # ------------------------------------------------------------------ one pass
    def refit(self, space: str | None = None) -> RefitReport:
        """Refit every stale target (of ``space``, or all), then recompute outdated fronts."""
        report = RefitReport()
        with self._lock:
            with self.read_sessions() as session:
                targets = repo.measured_targets(session, space)
                stale = []
                for t in targets:
                    latest = repo.latest_predictor(session, t.space, t.metric, t.target)
                    # A version fitted before migration 0003 has no count: never up to date.
                    fitted = (
                        None
                        if latest is None or latest.n_measurements is None
                        else repo.DataVersion(latest.last_measurement_id, latest.n_measurements)
                    )
                    if fitted == t.version:
                        # Up to date (e.g. fitted by another process): an earlier failure is moot.
                        with self._errors_lock:
                            self._fit_errors.pop((t.space, t.metric, t.target), None)
                    elif t.n_subnets >= self.settings.min_train:
                        stale.append(t)
            for t in stale:
                key = (t.space, t.metric, t.target)
                try:
                    report.predictors.append(self._fit(*key, report))
                except (ValueError, RuntimeError, IntegrityError) as error:
                    # One bad target (e.g. constant values) must not stop the others.
                    report.errors.append(f"{'/'.join(key)}: {error}")
                    log.warning("refit of %s failed: %s", "/".join(key), error)
                    # The version looked at before the fit: if newer data came meanwhile, the
                    # failure no longer describes the data and queries say "being computed".
                    with self._errors_lock:
                        self._fit_errors[key] = (t.version, str(error))
                else:
                    with self._errors_lock:
                        self._fit_errors.pop(key, None)
            spaces = sorted({t.space for t in targets})
            for sp in spaces:
                for score, latency in self._outdated_pairs(sp):
                    front_key = (sp, score.target, latency.target)
                    try:
                        report.fronts.append(self._front(sp, score, latency))
                    except (ValueError, RuntimeError, IntegrityError) as error:
                        report.errors.append(f"{sp}/front {score.target}x{latency.target}: {error}")
                        log.warning("front of %s %s x %s failed: %s", sp, score.target, latency.target, error)
                        with self._errors_lock:
                            self._front_errors[front_key] = str(error)
                    else:
                        with self._errors_lock:
                            self._front_errors.pop(front_key, None)
        return report

    def last_failure(self, session: Session, space: str, task: str, device: str) -> str | None:
        """Why the front of (space, task, device) could not be computed by the last refit pass that
        tried, or None when nothing failed (or the target's data changed since its fit failed).

        Args:
            session: A read session, to compare a failed fit's data version with the current one.
            space: The search space.
            task: The score's task.
            device: The latency's device.
        """
        with self._errors_lock:
            fits = [
                (metric, target, self._fit_errors.get((space, metric, target)))
                for metric, target in ((Metric.LATENCY, device), (Metric.SCORE, task))
            ]
            front = self._front_errors.get((space, task, device))
        for metric, target, failed in fits:
            if failed is not None and failed[0] == repo.data_version(session, space, metric, target):
                return f"the last fit of {_quantity(metric, target)} failed: {failed[1]}"
        return None if front is None else f"its last computation failed: {front}"

    def _fit(self, space: str, metric: str, target: str, report: RefitReport) -> PredictorVersion:
        """Fit and store a new predictor version of the target; notes skipped values in ``report``.

        Raises:
            ValueError: Too few subnets remain once impossible values are skipped, or the fit failed.
        """
        search_space = get_space(space)
        predictor = create_predictor(self.settings.predictor, search_space, metric=metric)
        with self.read_sessions() as session:
            data = repo.training_data(session, space, metric, target)
            latest = repo.latest_predictor(session, space, metric, target)
            # A predictor using related targets takes every device (or task) of the metric, this
            # one included; the others need only the target's own values.
            matrix = (
                repo.training_matrix(session, space, metric)
                if predictor.uses_related_targets
                else ([], [], [])
            )
        archs = data.archs
        if data.skipped:
            note = _skipped_note(data.skipped, data.version.n_measurements)
            report.notes.append(f"{space}/{metric}/{target}: {note}")
            log.warning("refit of %s/%s/%s %s", space, metric, target, note)
        if len(archs) < self.settings.min_train:
            raise ValueError(
                f"{len(archs)} measured subnets remain once {len(data.skipped)} impossible values are "
                f"skipped; fits need at least {self.settings.min_train} (min_train)"
            )
        matrix_archs, targets, rows = matrix
        # Each value's standard error (flagged drift included) is its own noise: points from a
        # drifting batch pull the fit less.
        if predictor.uses_related_targets and len(targets) > 1:
            error_of = dict(zip(archs, data.stds, strict=True))
            predictor.fit_multi(
                search_space.parse_many(matrix_archs),
                torch.tensor(rows, dtype=torch.float64),
                targets.index(target),
                y_std=[error_of.get(a, float("nan")) for a in matrix_archs],
            )
        else:
            predictor.fit(search_space.parse_many(archs), data.values, y_std=data.stds)
        row = PredictorVersion(
            space=space,
            metric=metric,
            target=target,
            version=1 if latest is None else latest.version + 1,
            kind=self.settings.predictor,
            n_train=len(data.archs),
            # The data version it was fitted on, to tell later whether the data changed.
            last_measurement_id=data.version.last_id,
            n_measurements=data.version.n_measurements,
            blob=predictor.to_bytes(),
            created_at=utcnow(),
        )
        with self.write_sessions() as session:
            session.add(row)
            session.commit()
        log.info("fitted %s/%s/%s v%d on %d subnets", space, metric, target, row.version, len(archs))
        return row

    def _outdated_pairs(self, space: str) -> list[tuple[PredictorVersion, PredictorVersion]]:
        """(score, latency) predictor pairs whose newest front was built from older versions."""
        with self.read_sessions() as session:
            scores = repo.latest_predictors(session, space, Metric.SCORE)
            latencies = repo.latest_predictors(session, space, Metric.LATENCY)
            pairs = []
            for score in scores:
                for latency in latencies:
                    front = repo.latest_front_key(session, space, score.target, latency.target)
                    if front is None or front[1:] != (score.id, latency.id):
                        pairs.append((score, latency))
        return pairs

    def _front(self, space: str, score: PredictorVersion, latency: PredictorVersion) -> Front:
        search_space = get_space(space)
        result = compute_front(
            search_space,
            Predictor.from_bytes(score.blob, search_space),
            Predictor.from_bytes(latency.blob, search_space),
            max_evaluations=self.settings.front_max_evaluations,
            time_limit_s=self.settings.front_time_limit_s,
        )
        with self.write_sessions() as session:
            previous = repo.latest_front_key(session, space, score.target, latency.target)
            row = Front(
                space=space,
                task=score.target,
                device=latency.target,
                version=1 if previous is None else previous[0] + 1,
                score_predictor_id=score.id,
                latency_predictor_id=latency.id,
                n_points=len(result.points),
                data=encode_front(result),
                created_at=utcnow(),
            )
            session.add(row)
            session.commit()
        log.info("front %s %s x %s v%d: %d points", space, row.task, row.device, row.version, row.n_points)
        return row

    # ------------------------------------------------------------------ background thread
    def notify(self) -> None:
        """New data arrived: refit soon (after ``refit_delay_s``, to batch arrivals)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpnas-refit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        # Look once at start-up: data may have arrived while no server ran.
        self._wake.set()
        while not self._stop.is_set():
            self._wake.wait(self.settings.refit_poll_s)
            if self._stop.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                # Batch a burst of ingests into one refit.
                if self._stop.wait(self.settings.refit_delay_s):
                    return
            started = time.monotonic()
            try:
                report = self.refit()
            except Exception:  # the worker must survive anything (e.g. the database restarting)
                log.exception("refit pass failed")
                continue
            if report.predictors or report.fronts:
                log.info(
                    "refit pass: %d predictors, %d fronts in %.1f s",
                    len(report.predictors),
                    len(report.fronts),
                    time.monotonic() - started,
                )
