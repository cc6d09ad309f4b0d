"""Celery: the task functions as Celery tasks, and the runner that sends work to them.

Tasks are acknowledged late (after they return) and rejected back to the queue when their worker
process dies, so a killed worker loses no task: the broker delivers it again (RabbitMQ as soon as
the connection drops, Redis after ``broker_visibility_timeout_s``) and the task's idempotence
(:mod:`._functions`) means the second run stores nothing the first had stored. Results travel
through the database's work items, so no result backend is configured.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any, NoReturn

from celery import Celery, Task

from ..core import Settings
from ..domain import Metric, Target, WorkKind
from ..models import utcnow
from ..schemas import CampaignCreate, DeploymentQueryRequest
from . import items
from ._context import WorkContext
from ._functions import Outcome, answer_and_store_deployment, build_front, fit_target, plan_and_store_campaign
from ._schedule import Order, Runner, raise_recorded_error, schedule, wait_for

log = logging.getLogger("gpnas.work")

FIT_TASK = "gpnas.fit_target"
FRONT_TASK = "gpnas.build_front"
CAMPAIGN_TASK = "gpnas.plan_campaign"
DEPLOYMENT_TASK = "gpnas.answer_deployment"

# A task that failed for a reason outside it (the database restarting) is retried this often.
_MAX_RETRIES = 5


def create_celery(settings: Settings, worker: bool = False) -> Celery:
    """The Celery app of ``settings.broker_url``. With ``worker``, the gpnas tasks are bound to
    ``settings.database_url`` (each worker process opens its own engine, after any fork); API
    processes, which only send, leave it off.

    Raises:
        ValueError: ``broker_url`` is not set.
    """
    if settings.broker_url is None:
        raise ValueError("no broker configured: set GPNAS_BROKER_URL (e.g. redis://127.0.0.1:6379/0)")
    app = Celery("gpnas", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.task_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    if worker:
        _register(app, settings)
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


def _register(app: Celery, settings: Settings) -> None:
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
            return build_front(context(), space, task_name, device, key=key).to_dict()
        except Exception as error:
            retrying(task, error)

    @app.task(name=CAMPAIGN_TASK, bind=True)
    def campaign(task: Task, body: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            return plan_and_store_campaign(context(), CampaignCreate.model_validate(body), key).to_dict()
        except Exception as error:
            retrying(task, error)

    @app.task(name=DEPLOYMENT_TASK, bind=True)
    def deployment(task: Task, body: dict[str, Any], key: str) -> dict[str, Any]:
        try:
            request = DeploymentQueryRequest.model_validate(body)
            return answer_and_store_deployment(context(), request, key).to_dict()
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
        for order in orders:
            if order.kind is WorkKind.FIT:
                args = [order.space, order.metric, order.target, order.key]
                self.app.send_task(FIT_TASK, args=args)
            else:
                self.app.send_task(FRONT_TASK, args=[order.space, order.task, order.device, order.key])
        return []

    def campaign(self, body: CampaignCreate) -> int:
        key = items.campaign_key(uuid.uuid4().hex)
        return self._request(CAMPAIGN_TASK, WorkKind.CAMPAIGN, body.space, body.model_dump(mode="json"), key)

    def deployment(self, body: DeploymentQueryRequest, key: str) -> int:
        return self._request(
            DEPLOYMENT_TASK, WorkKind.DEPLOYMENT, body.space, body.model_dump(mode="json"), key
        )

    def _request(self, name: str, kind: WorkKind, space: str, body: dict[str, Any], key: str) -> int:
        """Send a request's task to a worker and wait for what it stores (or the error it records)."""
        with self.ctx.write_sessions() as session:
            items.dispatched(session, key, kind, space, utcnow())
            session.commit()
        self.app.send_task(name, args=[body, key])
        item = wait_for(self.ctx, [key], self.ctx.settings.task_wait_s)[key]
        if item.error is not None:
            raise_recorded_error(item.error)
        assert item.result_id is not None
        return item.result_id

    def close(self) -> None:
        self.app.close()
