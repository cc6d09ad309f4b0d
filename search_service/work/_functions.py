"""The task functions: fit a target, search a front (requests' task functions, campaign planning
and deployment answers, are the application layer's: :class:`~._schedule.RequestHandlers`).
Each runs the same in process (no broker) and on a Celery worker, and is idempotent per what it
is computed from:

* a fit per (target, data version): when the newest predictor version was fitted on the data as
  it is now, nothing is fitted or stored;
* a front per (task, device, score predictor version, latency predictor version);
* a campaign per request id.

Results are stored under a lock, re-checked inside it, in the transaction that marks the work
item done, so a retried or duplicated task stores nothing twice and a killed one loses nothing:
what it had not committed is done again by the retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from sqlalchemy.orm import Session

from predictors import (
    Predictor,
    SupportsUpdate,
    create_predictor,
    fit_gflop,
    time_limit,
)
from supernet import SearchSpace, get_space, space_with_task

from .. import repositories as repo
from ..core.config import Settings
from ..domain import Metric, Target, WorkKind, WorkStatus
from ..errors import ServiceError
from ..models import Front, PredictorVersion, utcnow
from ..search import compute_front, decode_front, encode_front
from . import items
from ._context import WorkContext, lock

log = logging.getLogger("gpnas.work")

# Errors that a task's inputs cause (constant values, too few subnets, a singular fit): retrying
# on the same data cannot help, so the work is marked failed until the data changes.
INPUT_ERRORS = (ValueError, RuntimeError)

# How many skipped measurements a log line or note names one by one.
_NAMED_SKIPS = 10


@dataclass
class Outcome:
    """What one task function did.

    Attributes:
        key: The work item.
        stored: Id of the predictor version, front or campaign it stored; None if it stored
            nothing (already done, or failed).
        existing: Id of the equal result found already stored, when it stored none.
        error: Why it failed on its inputs, or None.
        notes: Remarks worth reporting (measurements skipped as impossible).
    """

    key: str
    stored: int | None = None
    existing: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stored": self.stored,
            "existing": self.existing,
            "error": self.error,
            "notes": self.notes,
        }


def fitted_version(row: PredictorVersion) -> repo.DataVersion | None:
    """The data version ``row`` was fitted on (None before migration 0003 recorded counts)."""
    if row.n_measurements is None:
        return None
    return repo.DataVersion(row.last_measurement_id, row.n_measurements)


def _skipped_note(skipped: list[repo.Skipped], total: int) -> str:
    named = "; ".join(f"id {s.id} ({s.value:.4g}: {s.reason})" for s in skipped[:_NAMED_SKIPS])
    more = f"; and {len(skipped) - _NAMED_SKIPS} more" if len(skipped) > _NAMED_SKIPS else ""
    return f"skipped {len(skipped)} of {total} measurements as impossible: {named}{more}"


# ------------------------------------------------------------------------------------------ fits


def _mark(ctx: WorkContext, key: str, kind: WorkKind, space: str, status: WorkStatus, error: str) -> None:
    with ctx.write_sessions() as session:
        items.finished(session, key, kind, space, status, error=error)
        session.commit()


def _hyperparameter_source(
    session: Session, ctx: WorkContext, latest: PredictorVersion | None, n_train: int, updatable: bool
) -> PredictorVersion | None:
    """The predictor version to update instead of fitting anew, or None for a full fit.

    An update keeps the hyperparameters of the newest full fit and conditions on the data as it
    is now; a full fit is due when the data has grown by ``full_refit_growth`` since that fit,
    when it is older than ``full_refit_after_s``, or when the configured predictor changed.
    """
    settings = ctx.settings
    if (
        not updatable
        or latest is None
        or settings.full_refit_growth <= 0
        or latest.kind != settings.predictor_for(latest.metric)
    ):
        return None
    full = latest if latest.update_of is None else session.get(PredictorVersion, latest.update_of)
    if full is None or n_train > full.n_train * (1.0 + settings.full_refit_growth):
        return None
    if (utcnow() - full.created_at).total_seconds() > settings.full_refit_after_s:
        return None
    return latest


def _train(
    space: SearchSpace,
    predictor: Predictor,
    data: repo.TrainingData,
    matrix: tuple[list[str], list[str], list[list[float]]],
    target: str,
    update: bool,
) -> None:
    """Fit (or, with ``update``, condition) ``predictor`` on the target's data."""
    matrix_archs, targets, rows = matrix
    if predictor.uses_related_targets and len(targets) > 1:
        # Each value's standard error (flagged drift included) is its own noise: points from a
        # drifting batch pull the fit less.
        error_of = dict(zip(data.archs, data.stds, strict=True))
        args = (
            space.parse_many(matrix_archs),
            torch.tensor(rows, dtype=torch.float64),
            targets.index(target),
        )
        y_std = [error_of.get(a, float("nan")) for a in matrix_archs]
        if update:
            assert isinstance(predictor, SupportsUpdate)
            predictor.update_multi(*args, y_std=y_std)
        else:
            predictor.fit_multi(*args, y_std=y_std)
    elif update:
        assert isinstance(predictor, SupportsUpdate)
        predictor.update(space.parse_many(data.archs), data.values, y_std=data.stds)
    else:
        predictor.fit(space.parse_many(data.archs), data.values, y_std=data.stds)


Matrix = tuple[list[str], list[str], list[list[float]]]


def _affordable(
    settings: Settings, target: Target, space: SearchSpace, n_train: int, read_matrix: Callable[[], Matrix]
) -> tuple[str, Predictor, Matrix, list[str]]:
    """The predictor to fit (its name, a fresh instance, the related columns it takes) and notes.

    The metric's configured predictor, unless its fit's estimated work (:func:`predictors.
    fit_gflop` of the code width, the rows it fits on and the related columns) exceeds
    ``fit_max_gflop``: then the single-target ``fit_fallback``, with a note saying why.
    """
    kind = settings.predictor_for(target.metric)
    predictor = create_predictor(kind, space, metric=target.metric)
    # A predictor using related targets takes every device (or task) of the metric, this one
    # included; the others need only the target's own values.
    matrix: Matrix = read_matrix() if predictor.uses_related_targets else ([], [], [])
    rows = min(n_train, getattr(predictor, "max_fit", n_train))
    width, columns = space.encoding_dim("onehot"), max(1, len(matrix[1]))
    cost = fit_gflop(width, rows, columns)
    if cost <= settings.fit_max_gflop or kind == settings.fit_fallback:
        return kind, predictor, matrix, []
    note = (
        f"fitted with {settings.fit_fallback} instead of {kind}: its fit on {rows} rows x {columns} "
        f"columns of a {width:,}-wide code is estimated at {cost:,.0f} GFLOP, over fit_max_gflop "
        f"({settings.fit_max_gflop:,.0f})"
    )
    log.warning("fit of %s %s", target, note)
    fallback = create_predictor(settings.fit_fallback, space, metric=target.metric)
    return (
        settings.fit_fallback,
        fallback,
        matrix if fallback.uses_related_targets else ([], [], []),
        [f"{target}: {note}"],
    )


def fit_target(ctx: WorkContext, target: Target, key: str | None = None) -> Outcome:
    """Fit and store a new predictor version of ``target`` unless its newest fits the data now.

    Args:
        ctx: Database and settings.
        target: The device's latency or the task's score.
        key: The work item that dispatched it (default: the data version read here).

    Returns:
        What was stored; ``error`` says why nothing was when the data cannot be fitted (too few
        subnets once impossible values are skipped, or the fit failed).
    """
    settings = ctx.settings
    space = get_space(target.space)
    with ctx.read_sessions() as session:
        data = repo.training_data(session, target.space, target.metric, target.name)
        latest = repo.latest_predictor(session, target.space, target.metric, target.name)
        kind, fresh, matrix, notes = _affordable(
            settings,
            target,
            space,
            len(data.archs),
            # A task's scores of its previous weights are a related target of its newest ones.
            lambda: repo.training_matrix(session, target.space, target.metric, borrowing=target.name),
        )
        # A fallback is fitted anew: the newest version may be the configured predictor's.
        updatable = isinstance(fresh, SupportsUpdate) and kind == settings.predictor_for(target.metric)
        source = _hyperparameter_source(session, ctx, latest, len(data.archs), updatable=updatable)
    read_key = items.fit_key(target.space, target.metric, target.name, data.version)
    keys = dict.fromkeys([key or read_key, read_key])
    outcome = Outcome(key or read_key, notes=notes)
    if latest is not None and fitted_version(latest) == data.version:
        outcome.existing = latest.id
        with ctx.write_sessions() as session:
            for k in keys:
                items.finished(session, k, WorkKind.FIT, target.space, WorkStatus.DONE, result_id=latest.id)
            session.commit()
        return outcome
    with ctx.write_sessions() as session:
        items.started(session, outcome.key, WorkKind.FIT, target.space)
        session.commit()
    if data.skipped:
        note = _skipped_note(data.skipped, data.version.n_measurements)
        outcome.notes.append(f"{target}: {note}")
        log.warning("fit of %s %s", target, note)
    try:
        if len(data.archs) < settings.min_train:
            raise ValueError(
                f"{len(data.archs)} measured subnets remain once {len(data.skipped)} impossible values "
                f"are skipped; fits need at least {settings.min_train} (min_train)"
            )
        predictor = fresh
        # A TimeLimitError is a RuntimeError: recorded like a failed fit, not retried on this data.
        with time_limit(settings.fit_time_limit_s, f"the fit of {target} (fit_time_limit_s)"):
            if source is not None:
                try:
                    updated = Predictor.from_bytes(source.blob, space)
                    _train(space, updated, data, matrix, target.name, update=True)
                    predictor = updated
                except INPUT_ERRORS as error:
                    # E.g. a related target appeared since the full fit: its hyperparameters do not
                    # cover the data any more, so fit them anew.
                    log.info("posterior update of %s refused (%s); fitting anew", target, error)
                    source = None
            if source is None:
                _train(space, predictor, data, matrix, target.name, update=False)
        blob = predictor.to_bytes()
    except INPUT_ERRORS as error:
        log.warning("fit of %s failed: %s", target, error)
        outcome.error = str(error)
        with ctx.write_sessions() as session:
            for k in keys:
                items.finished(session, k, WorkKind.FIT, target.space, WorkStatus.FAILED, error=str(error))
            session.commit()
        return outcome
    update_of = None if source is None else (source.update_of or source.id)
    with ctx.write_sessions() as session:
        lock(session, items.target_lock(target.space, target.metric, target.name))
        newest = repo.latest_predictor(session, target.space, target.metric, target.name)
        if newest is not None and fitted_version(newest) == data.version:
            # Another worker stored this data version meanwhile: ours is the duplicate.
            outcome.existing = newest.id
        else:
            row = PredictorVersion(
                space=target.space,
                metric=target.metric,
                target=target.name,
                version=1 if newest is None else newest.version + 1,
                kind=kind,
                n_train=len(data.archs),
                # The data version it was fitted on, to tell later whether the data changed.
                last_measurement_id=data.version.last_id,
                n_measurements=data.version.n_measurements,
                update_of=update_of,
                blob=blob,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            outcome.stored = row.id
        for k in keys:
            items.finished(
                session,
                k,
                WorkKind.FIT,
                target.space,
                WorkStatus.DONE,
                result_id=outcome.stored or outcome.existing,
            )
        session.commit()
    if outcome.stored is not None:
        how = "fitted" if update_of is None else "updated (hyperparameters kept)"
        log.info("%s %s on %d subnets: predictor version id %d", how, target, len(data.archs), outcome.stored)
    return outcome


# ---------------------------------------------------------------------------------------- fronts


def _full_fit_of(session: Session, predictor_id: int) -> int:
    """The full fit whose hyperparameters predictor version ``predictor_id`` has."""
    row = session.get(PredictorVersion, predictor_id)
    assert row is not None, "predictor versions are never deleted"
    return row.update_of or row.id


def build_front(ctx: WorkContext, space_name: str, task: str, device: str, key: str | None = None) -> Outcome:
    """Search and store the front of the newest (score, latency) predictors of (task, device),
    unless the newest front already comes from them.

    The previous front's candidates seed the search. When neither predictor has new
    hyperparameters since that front (posterior updates only), the search is a short one
    (``front_update_time_limit_s``): the front moves little.
    """
    settings = ctx.settings
    # Read again if this process's copy predates the task (its head is in the parameter counts).
    space = space_with_task(space_name, task)
    with ctx.read_sessions() as session:
        score = repo.latest_predictor(session, space_name, Metric.SCORE, task)
        latency = repo.latest_predictor(session, space_name, Metric.LATENCY, device)
        if score is None or latency is None:
            raise ValueError(f"{space_name}: no fitted predictors for {task} x {device}")
        previous = repo.latest_front(session, space_name, task, device)
        same_hyperparameters = previous is not None and all(
            _full_fit_of(session, new.id) == _full_fit_of(session, old)
            for new, old in (
                (score, previous.score_predictor_id),
                (latency, previous.latency_predictor_id),
            )
        )
    outcome = Outcome(key or items.front_key(space_name, task, device, score.id, latency.id))
    if previous is not None and (previous.score_predictor_id, previous.latency_predictor_id) == (
        score.id,
        latency.id,
    ):
        outcome.existing = previous.id
        with ctx.write_sessions() as session:
            items.finished(
                session, outcome.key, WorkKind.FRONT, space_name, WorkStatus.DONE, result_id=previous.id
            )
            session.commit()
        return outcome
    with ctx.write_sessions() as session:
        items.started(session, outcome.key, WorkKind.FRONT, space_name)
        session.commit()
    try:
        result = compute_front(
            space,
            Predictor.from_bytes(score.blob, space),
            Predictor.from_bytes(latency.blob, space),
            task=task,
            max_evaluations=settings.front_max_evaluations,
            time_limit_s=settings.front_update_time_limit_s
            if same_hyperparameters
            else settings.front_time_limit_s,
            warm_start=None if previous is None else decode_front(previous.data, space_name, task),
            resolution=settings.front_resolution,
        )
        data = encode_front(result)
    except INPUT_ERRORS as error:
        log.warning("front of %s %s x %s failed: %s", space_name, task, device, error)
        outcome.error = str(error)
        _mark(ctx, outcome.key, WorkKind.FRONT, space_name, WorkStatus.FAILED, str(error))
        return outcome
    with ctx.write_sessions() as session:
        lock(session, items.front_lock(space_name, task, device))
        newest = repo.latest_front_key(session, space_name, task, device)
        if newest is not None and newest[1:] == (score.id, latency.id):
            outcome.existing = repo.latest_front_id(session, space_name, task, device)[0]  # type: ignore[index]
        else:
            row = Front(
                space=space_name,
                task=task,
                device=device,
                version=1 if newest is None else newest[0] + 1,
                score_predictor_id=score.id,
                latency_predictor_id=latency.id,
                n_points=len(result.points),
                data=data,
                created_at=utcnow(),
            )
            session.add(row)
            session.flush()
            outcome.stored = row.id
        items.finished(
            session,
            outcome.key,
            WorkKind.FRONT,
            space_name,
            WorkStatus.DONE,
            result_id=outcome.stored or outcome.existing,
        )
        session.commit()
    if outcome.stored is not None:
        log.info(
            "front %s %s x %s: %d points from %d evaluations in %.1f s",
            space_name,
            task,
            device,
            len(result.points),
            result.evaluations,
            result.elapsed_s,
        )
    return outcome


# ------------------------------------------------------------------------------------- requests
def request_outcome(ctx: WorkContext, key: str) -> Outcome:
    """The outcome of request ``key`` if a run already ended it (its result or recorded error),
    else an empty one to fill: a re-delivered task does the work once."""
    outcome = Outcome(key)
    with ctx.read_sessions() as session:
        item = items.get(session, key)
    if item is not None and item.status in (WorkStatus.DONE, WorkStatus.FAILED):
        outcome.existing, outcome.error = item.result_id, item.error
    return outcome


def record_failure(ctx: WorkContext, key: str, kind: WorkKind, space: str, error: ServiceError) -> str:
    """Mark request ``key`` failed with the client error ``error`` as the waiting API process
    raises it again (JSON: status, message, loc; see ``_schedule.raise_recorded_error``); the
    recorded text."""
    recorded = json.dumps({"status": error.status_code, "message": error.message, "loc": error.loc})
    _mark(ctx, key, kind, space, WorkStatus.FAILED, recorded)
    return recorded
