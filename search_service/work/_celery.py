"""Celery: the task functions as Celery tasks, and the runner that sends work to them.

Tasks are acknowledged late (after they return) and rejected back to the queue when their worker
process dies, so a killed worker loses no task: the broker delivers it again (RabbitMQ as soon as
the connection drops, Redis after ``broker_visibility_timeout_s``) and the task's idempotence
(:mod:`._functions`) means the second run stores nothing the first had stored. Results travel
through the database's work items, so no result backend is configured.

Sending fails fast (``broker_timeout_s``) when the broker refuses, resets or never answers, as a
:class:`~search_service.errors.UnavailableError` (503 with Retry-After), and the work it carried
is marked undispatched, so the next scheduling pass sends it again.

While a task runs, its worker stamps the work item's heartbeat every ``heartbeat_interval_s``
(:class:`Heartbeat`): a worker killed mid-task stops stamping, and its work is dispatched again
after ``heartbeat_timeout_s`` (by the next scheduling pass for fits and fronts, by the API process
waiting for it for campaigns and deployment queries) rather than when the broker would deliver
it again (Redis: ``broker_visibility_timeout_s``, an hour).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn

from celery import Celery, Task
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.utils.url import maybe_sanitize_url

from ..core import Settings
from ..domain import Metric, Target, WorkKind
from ..errors import UnavailableError
from ..models import WorkItem, utcnow
from ..schemas import ArtifactCreate, CampaignCreate, DeploymentQueryRequest
from . import items
from ._context import WorkContext, lock
from ._functions import Outcome, build_front, fit_target
from ._schedule import (
    SCHEDULER_LOCK,
    Order,
    RequestHandlers,
    Runner,
    raise_recorded_error,
    schedule,
    wait_for,
)

log = logging.getLogger("gpnas.work")

FIT_TASK = "gpnas.fit_target"
FRONT_TASK = "gpnas.build_front"
CAMPAIGN_TASK = "gpnas.plan_campaign"
DEPLOYMENT_TASK = "gpnas.answer_deployment"
ARTIFACT_TASK = "gpnas.build_artifact"

# A task that failed for a reason outside it (the database restarting) is retried this often.
_MAX_RETRIES = 5

# What sending raises when the broker cannot be reached or stops answering: kombu wraps the
# transports' connection errors in its OperationalError; the rest are socket errors let through
# (ConnectionError and TimeoutError are OSErrors).
BROKER_ERRORS: tuple[type[Exception], ...] = (KombuOperationalError, OSError)


def create_celery(settings: Settings, handlers: RequestHandlers | None = None) -> Celery:
    """The Celery app of ``settings.broker_url``. With ``handlers`` (a worker), the gpnas tasks
    are bound to ``settings.database_url`` (each worker process opens its own engine, after any
    fork) and the requests' task functions; API processes, which only send, leave it out.

    Raises:
        ValueError: ``broker_url`` is not set.
    """
    if settings.broker_url is None:
        raise ValueError("no broker configured: set GPNAS_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    app = Celery("gpnas", broker=settings.broker_url, set_as_current=False)
    timeout = settings.broker_timeout_s
    transport: dict[str, Any] = {"visibility_timeout": settings.broker_visibility_timeout_s}
    if handlers is None:
        # Redis: without a socket timeout a broker that accepts connections and never answers
        # holds a send for ever (a worker's consumer keeps the transport's defaults).
        transport |= {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    app.conf.update(
        task_default_queue=settings.task_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport,
        # A send connects within broker_timeout_s (AMQP's handshake included) and is retried once,
        # so an unreachable broker fails it within seconds instead of Celery's default retries
        # (and, for a broker that never answers, for ever).
        broker_connection_timeout=timeout,
        task_publish_retry_policy={
            "max_retries": 1,
            "interval_start": 0.0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    if handlers is not None:
        _register(app, settings, handlers)
    return app


class _ProcessContext:
    """The worker process's :class:`WorkContext`, opened on first use in that process (an engine
    must not cross a fork)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._ctx: WorkContext | None = None

    def __call__(self) -> WorkContext:
        if self._ctx is None or self._pid != os.getpid():
            self._ctx, _ = WorkContext.open(self.settings)
            self._pid = os.getpid()
        return self._ctx


class Heartbeat:
    """Stamps the work item ``key`` when entered and then every ``interval_s`` from a thread,
    until left: what a worker does while it runs the work (see :func:`~.items.due`). A failed
    stamp (the database restarting) is logged and the next one tried. Left by an exception, it
    clears the stamp: the worker is alive and Celery retries the task, or gives up, and then the
    work waits for ``dispatch_timeout_s`` as work without heartbeats does.

    Args:
        ctx: The database of the work item.
        key: The work item.
        interval_s: Seconds between stamps (default ``ctx.settings.heartbeat_interval_s``).
        clock: The time stamped (default: now, UTC).
    """

    def __init__(
        self,
        ctx: WorkContext,
        key: str,
        interval_s: float | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.ctx, self.key, self.clock = ctx, key, clock
        self.interval_s = ctx.settings.heartbeat_interval_s if interval_s is None else interval_s
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gpnas-heartbeat {key}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        if error is not None:
            self._beat(clear=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def _beat(self, clear: bool = False) -> None:
        try:
            with self.ctx.write_sessions() as session:
                items.beat(session, self.key, None if clear else self.clock())
                session.commit()
            self.beats += 0 if clear else 1
        except Exception as failure:
            log.warning("heartbeat of %s failed: %s", self.key, failure)


def _register(app: Celery, settings: Settings, handlers: RequestHandlers) -> None:
    context = _ProcessContext(settings)

    def retrying(task: Task, error: Exception) -> NoReturn:
        # Failures of the inputs are recorded by the task functions; what reaches here broke
        # outside them (the database restarting, say): worth a retry.
        log.warning("%s failed (%s); retrying", task.name, error)
        raise task.retry(exc=error, countdown=2, max_retries=_MAX_RETRIES)

    @app.task(name=FIT_TASK, bind=True)
    def fit(task: Task, space: str, metric: str, target: str, key: str) -> dict[str, Any]:
        ctx = context()
        try:
            with Heartbeat(ctx, key):
                outcome = fit_target(ctx, Target(space, Metric(metric), target), key=key)
            if outcome.stored is not None:
                # Its fronts are out of date now: order them at once rather than at the next poll.
                CeleryRunner(ctx, app).send(schedule(ctx, space))
        except Exception as error:
            retrying(task, error)
        return outcome.to_dict()

    @app.task(name=FRONT_TASK, bind=True)
    def front(task: Task, space: str, task_name: str, device: str, key: str) -> dict[str, Any]:
        try:
            with Heartbeat(context(), key):
                return build_front(context(), space, task_name, device, key=key).to_dict()
        except Exception as error:
            retrying(task, error)

    @app.task(name=CAMPAIGN_TASK, bind=True)
    def campaign(task: Task, body: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            with Heartbeat(context(), key):
                return handlers.campaign(context(), CampaignCreate.model_validate(body), key).to_dict()
        except Exception as error:
            retrying(task, error)

    @app.task(name=DEPLOYMENT_TASK, bind=True)
    def deployment(task: Task, body: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            request = DeploymentQueryRequest.model_validate(body)
            with Heartbeat(context(), key):
                return handlers.deployment(context(), request, key).to_dict()
        except Exception as error:
            retrying(task, error)

    @app.task(name=ARTIFACT_TASK, bind=True)
    def artifact(task: Task, body: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            request = ArtifactCreate.model_validate(body)
            with Heartbeat(context(), key):
                return handlers.artifact(context(), request, key).to_dict()
        except Exception as error:
            retrying(task, error)


class CeleryRunner(Runner):
    """Sends work to Celery workers; waits for campaigns through their work items.

    Args:
        ctx: The database the workers report to, and the settings.
        app: The Celery app (default: :func:`create_celery` of ``ctx.settings``).
    """

    in_process = False

    def __init__(self, ctx: WorkContext, app: Celery | None = None) -> None:
        super().__init__(ctx)
        self.app = app or create_celery(ctx.settings)

    def send(self, orders: list[Order]) -> list[Outcome]:
        """Send ``orders`` to the workers.

        Raises:
            UnavailableError: The broker did not take one; it and the orders after it are marked
                undispatched (due at the next scheduling pass).
        """
        for i, order in enumerate(orders):
            if order.kind is WorkKind.FIT:
                name, args = FIT_TASK, [order.space, order.metric, order.target, order.key]
            else:
                name, args = FRONT_TASK, [order.space, order.task, order.device, order.key]
            try:
                self._publish(name, args)
            except UnavailableError as error:
                self._undispatch([o.key for o in orders[i:]], error.message)
                raise
        return []

    def campaign(self, body: CampaignCreate) -> int:
        key = items.campaign_key(uuid.uuid4().hex)
        return self._request(CAMPAIGN_TASK, WorkKind.CAMPAIGN, body.space, body.model_dump(mode="json"), key)

    def deployment(self, body: DeploymentQueryRequest, key: str) -> int:
        return self._request(
            DEPLOYMENT_TASK, WorkKind.DEPLOYMENT, body.space, body.model_dump(mode="json"), key
        )

    def artifact(self, body: ArtifactCreate, key: str) -> int:
        return self._request(ARTIFACT_TASK, WorkKind.ARTIFACT, body.space, body.model_dump(mode="json"), key)

    def _request(self, name: str, kind: WorkKind, space: str, body: dict[str, Any], key: str) -> int:
        """Send a request's task to a worker and wait for what it stores (or the error it records);
        sent again if the worker running it stops its heartbeat."""
        with self.ctx.write_sessions() as session:
            items.dispatched(session, key, kind, space, utcnow())
            session.commit()
        self._send_request(name, [body, key], key)
        settings = self.ctx.settings

        def resend_if_lost(unfinished: dict[str, WorkItem | None]) -> None:
            row = unfinished.get(key)
            if row is None or row.heartbeat_at is None:
                return
            if not items.due(row, utcnow(), settings.dispatch_timeout_s, settings.heartbeat_timeout_s):
                return
            with self.ctx.write_sessions() as session:
                lock(session, SCHEDULER_LOCK)  # another process waiting for it may resend it too
                again = items.get(session, key)
                if not items.due(again, utcnow(), settings.dispatch_timeout_s, settings.heartbeat_timeout_s):
                    return
                items.dispatched(session, key, kind, space, utcnow())
                session.commit()
            log.warning("the worker running %s stopped its heartbeat: sending it again", key)
            self._send_request(name, [body, key], key)

        item = wait_for(self.ctx, [key], settings.task_wait_s, on_unfinished=resend_if_lost)[key]
        if item.error is not None:
            raise_recorded_error(item.error)
        assert item.result_id is not None
        return item.result_id

    def _send_request(self, name: str, args: list[Any], key: str) -> None:
        """Publish a request's task; on failure its item is marked undispatched."""
        try:
            self._publish(name, args)
        except UnavailableError as error:
            self._undispatch([key], error.message)
            raise

    def _publish(self, name: str, args: list[Any]) -> None:
        """Hand the task ``name`` to the broker.

        Raises:
            UnavailableError: The broker refused, reset or did not answer within
                ``broker_timeout_s`` (and once more after a retry).
        """
        try:
            self.app.send_task(name, args=args)
        except BROKER_ERRORS as error:
            broker = maybe_sanitize_url(self.ctx.settings.broker_url or "")
            log.warning("broker %s did not take %s: %s", broker, name, error)
            raise UnavailableError(f"the broker {broker} did not take the work ({error}); retry") from error

    def _undispatch(self, keys: list[str], reason: str) -> None:
        """Mark ``keys`` as never sent (see :func:`~search_service.work.items.undispatched`)."""
        try:
            with self.ctx.write_sessions() as session:
                items.undispatched(session, keys, reason)
                session.commit()
        except Exception:  # the database may be down too: the items then wait for dispatch_timeout_s
            log.exception("could not mark %d undelivered work items due again", len(keys))

    def close(self) -> None:
        self.app.close()
