"""Deciding what is stale, once, and handing it to whatever runs the work.

A scheduling pass runs under one lock (a PostgreSQL advisory lock; SQLite's single writer), so
however many API processes, workers or CLI commands start passes, one decides at a time, and a
work item row records each dispatch: the next pass does not send the same work again unless it
broke, the broker did not take it, its worker's heartbeat stopped (``heartbeat_timeout_s``) or
it is overdue (``dispatch_timeout_s``). Where the work runs is the :class:`Runner`'s
business: in this process (:class:`InProcessRunner`, the embedded default) or on Celery workers
(:class:`~search_service.work.CeleryRunner`).
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from .. import repositories as repo
from ..domain import Metric, Target, WorkKind, WorkStatus
from ..errors import (
    ConflictError,
    InvalidError,
    NotFoundError,
    ServiceError,
    TooLargeError,
    UnavailableError,
)
from ..models import WorkItem, utcnow
from ..schemas import ArtifactCreate, CampaignCreate, DeploymentQueryRequest
from . import items
from ._context import WorkContext, lock
from ._functions import Outcome, build_front, fit_target, fitted_version

SCHEDULER_LOCK = "gpnas/scheduler"


@dataclass(frozen=True)
class Order:
    """One unit of work a pass dispatched: a fit of ``target``, or the front of (task, device)."""

    kind: WorkKind
    key: str
    space: str
    metric: Metric | None = None
    target: str | None = None
    task: str | None = None
    device: str | None = None


def _stale_fits(session: Session, ctx: WorkContext, targets: list[repo.MeasuredTarget]) -> list[Order]:
    orders = []
    for t in targets:
        if t.n_subnets < ctx.settings.min_train:
            continue
        latest = repo.latest_predictor(session, t.space, t.metric, t.target)
        if latest is None or fitted_version(latest) != t.version:
            key = items.fit_key(t.space, t.metric, t.target, t.version)
            orders.append(Order(WorkKind.FIT, key, t.space, metric=t.metric, target=t.target))
    return orders


def _outdated_fronts(session: Session, spaces: Iterable[str]) -> list[Order]:
    """(task, device) pairs whose newest front was built from older predictor versions."""
    orders = []
    for space in spaces:
        scores = repo.latest_predictors(session, space, Metric.SCORE)
        latencies = repo.latest_predictors(session, space, Metric.LATENCY)
        for score in scores:
            for latency in latencies:
                front = repo.latest_front_key(session, space, score.target, latency.target)
                if front is None or front[1:] != (score.id, latency.id):
                    key = items.front_key(space, score.target, latency.target, score.id, latency.id)
                    orders.append(Order(WorkKind.FRONT, key, space, task=score.target, device=latency.target))
    return orders


def schedule(ctx: WorkContext, space: str | None = None, now: dt.datetime | None = None) -> list[Order]:
    """One scheduling pass over ``space`` (or all) at ``now`` (default: the current time): the
    stale fits and outdated fronts that are due (see :func:`~search_service.work.items.due`),
    recorded as dispatched.

    A front is not ordered while one of its targets has a fit due or running: it would be
    searched again as soon as that fit is stored.
    """
    now = now or utcnow()
    settings = ctx.settings

    def is_due(item: WorkItem | None) -> bool:
        return items.due(item, now, settings.dispatch_timeout_s, settings.heartbeat_timeout_s)

    with ctx.write_sessions() as session:
        lock(session, SCHEDULER_LOCK)
        fits = []
        refitting = set()
        targets = repo.measured_targets(session, space)
        for order in _stale_fits(session, ctx, targets):
            item = items.get(session, order.key)
            if is_due(item):
                fits.append(order)
            elif item is None or item.status in (WorkStatus.QUEUED, WorkStatus.RUNNING):
                refitting.add((order.space, order.metric, order.target))
        refitting |= {(o.space, o.metric, o.target) for o in fits}
        spaces = [space] if space is not None else sorted({t.space for t in targets})
        fronts = [
            o
            for o in _outdated_fronts(session, spaces)
            if (o.space, Metric.SCORE, o.task) not in refitting
            and (o.space, Metric.LATENCY, o.device) not in refitting
            and is_due(items.get(session, o.key))
        ]
        due = fits + fronts
        for order in due:
            items.dispatched(session, order.key, order.kind, order.space, now)
        session.commit()
    return due


def run_order(ctx: WorkContext, order: Order) -> Outcome:
    """Run ``order``'s task function in this process."""
    if order.kind is WorkKind.FIT:
        assert order.metric is not None
        assert order.target is not None
        return fit_target(ctx, Target(order.space, order.metric, order.target), key=order.key)
    assert order.task is not None
    assert order.device is not None
    return build_front(ctx, order.space, order.task, order.device, key=order.key)


def raise_recorded_error(error: str) -> None:
    """Raise the :class:`ServiceError` a campaign, deployment or artifact task recorded (JSON:
    status, message, loc)."""
    recorded = json.loads(error)
    kinds: dict[int, type[ServiceError]] = {
        404: NotFoundError,
        409: ConflictError,
        413: TooLargeError,
        422: InvalidError,
    }
    raise kinds.get(recorded["status"], InvalidError)(recorded["message"], recorded["loc"])


class Runner(abc.ABC):
    """Where work runs. Callers hand it what a scheduling pass ordered, campaign requests and
    deployment queries."""

    def __init__(self, ctx: WorkContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def send(self, orders: list[Order]) -> list[Outcome]:
        """Run (or queue) ``orders``; returns the outcomes of those run here."""

    @abc.abstractmethod
    def campaign(self, body: CampaignCreate) -> int:
        """Plan and store ``body``'s campaign; its id.

        Raises:
            ServiceError: What planning raised (unknown device, too few subnets...).
        """

    @abc.abstractmethod
    def deployment(self, body: DeploymentQueryRequest, key: str) -> int:
        """Answer ``body`` and store the answer under the work item ``key``; the answer's id.

        Raises:
            ServiceError: What the search raised (nothing fits, predictors missing...).
        """

    @abc.abstractmethod
    def artifact(self, body: ArtifactCreate, key: str) -> int:
        """Build ``body``'s artifact and store it under the work item ``key``; the artifact's id.

        Raises:
            ServiceError: Why it could not be built (too large, the check against torch failed...).
        """

    @property
    @abc.abstractmethod
    def in_process(self) -> bool:
        """Whether :meth:`send` runs the work in this process."""


@dataclass(frozen=True)
class RequestHandlers:
    """The task functions of requests, idempotent per key like the others: the application
    layer's (``search_service.services.REQUEST_HANDLERS``), handed to the runners that run them
    so that this package does not import that layer.

    Attributes:
        campaign: Plans and stores a campaign; its outcome's result is the campaign id.
        deployment: Searches and stores a deployment answer; its result is the answer id.
        artifact: Builds and stores an artifact; its result is the artifact's id.
    """

    campaign: Callable[[WorkContext, CampaignCreate, str], Outcome]
    deployment: Callable[[WorkContext, DeploymentQueryRequest, str], Outcome]
    artifact: Callable[[WorkContext, ArtifactCreate, str], Outcome]


class InProcessRunner(Runner):
    """Runs the task functions in the calling thread: the embedded default, no broker.

    Args:
        ctx: The database and settings.
        handlers: The requests' task functions.
    """

    in_process = True

    def __init__(self, ctx: WorkContext, handlers: RequestHandlers) -> None:
        super().__init__(ctx)
        self.handlers = handlers

    def send(self, orders: list[Order]) -> list[Outcome]:
        return [run_order(self.ctx, order) for order in orders]

    def campaign(self, body: CampaignCreate) -> int:
        return _result_of(self.handlers.campaign(self.ctx, body, items.campaign_key(uuid.uuid4().hex)))

    def deployment(self, body: DeploymentQueryRequest, key: str) -> int:
        return _result_of(self.handlers.deployment(self.ctx, body, key))

    def artifact(self, body: ArtifactCreate, key: str) -> int:
        return _result_of(self.handlers.artifact(self.ctx, body, key))


def _result_of(outcome: Outcome) -> int:
    """The id a request's task stored or found, or the client error it recorded, raised."""
    if outcome.error is not None:
        raise_recorded_error(outcome.error)
    result = outcome.stored if outcome.stored is not None else outcome.existing
    assert result is not None
    return result


def wait_for(
    ctx: WorkContext,
    keys: list[str],
    timeout_s: float,
    poll_s: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_unfinished: Callable[[dict[str, WorkItem | None]], None] | None = None,
) -> dict[str, WorkItem]:
    """Wait until the work items ``keys`` are done or failed; their rows. ``on_unfinished`` is
    shown the rows (None: no row yet) of those not finished at each poll.

    Raises:
        UnavailableError: Some are still unfinished after ``timeout_s`` (no worker running?).
    """
    keys = list(dict.fromkeys(keys))
    deadline = clock() + timeout_s
    while True:
        with ctx.read_sessions() as session:
            rows = {key: items.get(session, key) for key in keys}
        ended = {
            k: r
            for k, r in rows.items()
            if r is not None and r.status in (WorkStatus.DONE, WorkStatus.FAILED)
        }
        if len(ended) == len(keys):
            return ended
        if on_unfinished is not None:
            on_unfinished({k: r for k, r in rows.items() if k not in ended})
        if clock() > deadline:
            missing = sorted(set(keys) - set(ended))
            raise UnavailableError(
                f"{len(missing)} of {len(keys)} work items unfinished after {timeout_s:g} s "
                f"(is a `gpnas worker` running on queue {ctx.settings.task_queue!r}?): "
                + ", ".join(missing[:3])
            )
        sleep(poll_s)
