"""Refitting predictors and recomputing fronts after new measurements, in the background or on demand.

A target — a device's latency or a task's score in one space — is stale when it has a measurement
newer than the one its latest predictor version was fitted on. Each refit stores a new predictor
version (bytes); each (task, device) pair whose newest predictors differ from those of its newest
front gets a new front version. Nothing is overwritten: queries use the newest versions.
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

from predictors import Predictor, TransferPredictor, create_predictor
from supernet import get_space

from . import repositories as repo
from .core.config import Settings
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

    # ------------------------------------------------------------------ one pass
    def refit(self, space: str | None = None) -> RefitReport:
        """Refit every stale target (of ``space``, or all), then recompute outdated fronts."""
        report = RefitReport()
        with self._lock:
            with self.read_sessions() as session:
                targets = repo.measured_targets(session, space)
                stale = []
                for sp, metric, target, n_archs, last_id in targets:
                    latest = repo.latest_predictor(session, sp, metric, target)
                    if n_archs >= self.settings.min_train and (
                        latest is None or latest.last_measurement_id < last_id
                    ):
                        stale.append((sp, metric, target))
            for sp, metric, target in stale:
                try:
                    report.predictors.append(self._fit(sp, metric, target))
                except (ValueError, RuntimeError, IntegrityError) as error:
                    # One bad target (e.g. constant values) must not stop the others.
                    report.errors.append(f"{sp}/{metric}/{target}: {error}")
                    log.warning("refit of %s/%s/%s failed: %s", sp, metric, target, error)
            spaces = sorted({t[0] for t in targets})
            for sp in spaces:
                for pair in self._outdated_pairs(sp):
                    try:
                        report.fronts.append(self._front(sp, *pair))
                    except (ValueError, RuntimeError, IntegrityError) as error:
                        report.errors.append(f"{sp}/front {pair[0].target}x{pair[1].target}: {error}")
                        log.warning(
                            "front of %s %s x %s failed: %s", sp, pair[0].target, pair[1].target, error
                        )
        return report

    def _fit(self, space: str, metric: str, target: str) -> PredictorVersion:
        search_space = get_space(space)
        predictor = create_predictor(self.settings.predictor, search_space, metric=metric)
        with self.read_sessions() as session:
            archs, values, stds, last_id = repo.training_data(session, space, metric, target)
            latest = repo.latest_predictor(session, space, metric, target)
            # A transfer predictor takes every device (or task) of the metric, this one included.
            matrix = (
                repo.training_matrix(session, space, metric)
                if isinstance(predictor, TransferPredictor)
                else ([], [], [])
            )
        matrix_archs, targets, rows = matrix
        # Each value's standard error (flagged drift included) is its own noise: points from a
        # drifting batch pull the fit less.
        if isinstance(predictor, TransferPredictor) and len(targets) > 1:
            error_of = dict(zip(archs, stds, strict=True))
            predictor.fit_multi(
                search_space.parse_many(matrix_archs),
                torch.tensor(rows, dtype=torch.float64),
                targets.index(target),
                y_std=[error_of.get(a, float("nan")) for a in matrix_archs],
            )
        else:
            predictor.fit(search_space.parse_many(archs), values, y_std=stds)
        row = PredictorVersion(
            space=space,
            metric=metric,
            target=target,
            version=1 if latest is None else latest.version + 1,
            kind=self.settings.predictor,
            n_train=len(archs),
            last_measurement_id=last_id,
            blob=predictor.to_bytes(),
            created_at=utcnow(),
        )
        with self.write_sessions() as session:
            session.add(row)
            session.commit()
        log.info("fitted %s/%s/%s v%d on %d subnets", space, metric, target, row.version, row.n_train)
        return row

    def _outdated_pairs(self, space: str) -> list[tuple[PredictorVersion, PredictorVersion]]:
        """(score, latency) predictor pairs whose newest front was built from older versions."""
        with self.read_sessions() as session:
            scores = repo.latest_predictors(session, space, "score")
            latencies = repo.latest_predictors(session, space, "latency_ms")
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
