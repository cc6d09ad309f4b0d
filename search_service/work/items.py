"""Work items: one row per unit of background work, keyed by what it is computed from.

A scheduling pass creates the row when it dispatches the work, the task function marks it running
and finally done (in the transaction that stores its result, so a result is never stored without
its item saying so, nor twice) or failed. Rows make dispatch happen once however many processes
notice stale data, and make a failure on a worker known to every API process. A worker stamps the
row's heartbeat while it runs the work, so that work lost with its worker is dispatched again
within ``heartbeat_timeout_s`` (see :func:`due`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import Metric, WorkKind, WorkStatus
from ..models import WorkItem, utcnow
from ..repositories import DataVersion

# Longest error text kept: enough for any traceback's last line, bounded for the table.
_MAX_ERROR = 4000


def fit_key(space: str, metric: str, target: str, version: DataVersion) -> str:
    """The work of fitting ``target``'s data ``version``."""
    return f"{WorkKind.FIT}/{space}/{metric}/{target}/{version.last_id}/{version.n_measurements}"


def front_key(space: str, task: str, device: str, score_id: int, latency_id: int) -> str:
    """The work of searching the front of two predictor versions."""
    return f"{WorkKind.FRONT}/{space}/{task}/{device}/{score_id}/{latency_id}"


def campaign_key(request_id: str) -> str:
    """The work of planning and storing one campaign request."""
    return f"{WorkKind.CAMPAIGN}/{request_id}"


def deployment_key(digest: str) -> str:
    """The work of answering one deployment query on given predictors (``digest`` names both)."""
    return f"{WorkKind.DEPLOYMENT}/{digest}"


def artifact_key(request_key: str) -> str:
    """The work of building the artifact of one request (``request_key`` names it)."""
    return f"{WorkKind.ARTIFACT}/{request_key}"


def target_lock(space: str, metric: Metric | str, target: str) -> str:
    """The lock held while a target's predictor version is stored."""
    return f"gpnas/fit/{space}/{metric}/{target}"


def front_lock(space: str, task: str, device: str) -> str:
    """The lock held while a front version is stored."""
    return f"gpnas/front/{space}/{task}/{device}"


def get(session: Session, key: str) -> WorkItem | None:
    return session.scalar(select(WorkItem).where(WorkItem.key == key))


def _row(session: Session, key: str, kind: WorkKind, space: str) -> WorkItem:
    """The row of ``key``, created if missing. Two processes may start the same work at once
    (a re-delivered task beside the first): the loser of the insert reads the winner's row."""
    item = get(session, key)
    if item is not None:
        return item
    try:
        with session.begin_nested():
            item = WorkItem(
                key=key, kind=kind, space=space, status=WorkStatus.QUEUED, attempts=0, dispatched_at=utcnow()
            )
            session.add(item)
    except IntegrityError:
        item = get(session, key)
        assert item is not None, "a unique key that conflicts exists"
    return item


def due(
    item: WorkItem | None, now: dt.datetime, timeout_s: float, heartbeat_timeout_s: float | None = None
) -> bool:
    """Whether the work of ``item`` should be dispatched (again) at ``now``: never dispatched,
    broken by something outside it or never taken by the broker (:func:`undispatched`), taken by a
    worker whose heartbeat stopped ``heartbeat_timeout_s`` ago (the worker is gone), or dispatched
    ``timeout_s`` ago and still unfinished (a worker that sends no heartbeat may be gone). Done
    work and work that failed on its inputs are not."""
    if item is None or item.status == WorkStatus.ERROR:
        return True
    if item.status in (WorkStatus.QUEUED, WorkStatus.RUNNING):
        overdue = (now - item.dispatched_at).total_seconds() > timeout_s
        stamp = item.heartbeat_at  # dispatched() clears it: a stamp means a worker took this dispatch
        if stamp is None or heartbeat_timeout_s is None:
            return overdue
        return overdue or (now - stamp).total_seconds() > heartbeat_timeout_s
    return False


def dispatched(session: Session, key: str, kind: WorkKind, space: str, now: dt.datetime) -> WorkItem:
    """Record that the work ``key`` is being dispatched now (creates or resets its row)."""
    item = _row(session, key, kind, space)
    item.status = WorkStatus.QUEUED
    item.dispatched_at = now
    item.heartbeat_at = None
    item.error = None
    item.finished_at = None
    session.flush()
    return item


def beat(session: Session, key: str, now: dt.datetime | None) -> bool:
    """Stamp the heartbeat of ``key``, which a worker of this process is running (None: clear it,
    the worker no longer runs it); whether its row exists (a task started without a dispatch gets
    its row when it starts)."""
    result = session.execute(update(WorkItem).where(WorkItem.key == key).values(heartbeat_at=now))
    return bool(getattr(result, "rowcount", 0))


def undispatched(session: Session, keys: list[str], reason: str) -> int:
    """Record that the work ``keys``, marked dispatched, never reached a worker (the broker did not
    take it): due again at once (see :func:`due`) rather than after ``dispatch_timeout_s``.
    Returns how many items were still queued and are now due."""
    n = 0
    for key in dict.fromkeys(keys):
        item = get(session, key)
        if item is not None and item.status == WorkStatus.QUEUED:
            item.status = WorkStatus.ERROR
            item.error = reason[:_MAX_ERROR]
            n += 1
    session.flush()
    return n


def started(session: Session, key: str, kind: WorkKind, space: str) -> WorkItem:
    """Mark ``key`` running (creating its row if the work was started without a dispatch)."""
    item = _row(session, key, kind, space)
    item.status = WorkStatus.RUNNING
    item.attempts += 1
    session.flush()
    return item


def finished(
    session: Session,
    key: str,
    kind: WorkKind,
    space: str,
    status: WorkStatus,
    *,
    result_id: int | None = None,
    error: str | None = None,
) -> WorkItem:
    """Record how the work ``key`` ended, in the caller's transaction."""
    item = _row(session, key, kind, space)
    item.attempts = max(item.attempts, 1)
    item.status = status
    item.result_id = result_id
    item.error = None if error is None else error[:_MAX_ERROR]
    item.finished_at = utcnow()
    session.flush()
    return item


def failure(session: Session, key: str) -> str | None:
    """The error of ``key`` if that work failed on its inputs, else None."""
    item = get(session, key)
    return item.error if item is not None and item.status == WorkStatus.FAILED else None


def reset_unfinished(session: Session) -> int:
    """Make queued and running work dispatchable at once (an in-process runner restarted: what it
    had taken will not finish). Returns how many items were reset."""
    items = unfinished(session)
    for item in items:
        item.status = WorkStatus.ERROR
        item.error = "interrupted: the process running it stopped"
    session.flush()
    return len(items)


def unfinished(session: Session, space: str | None = None) -> list[WorkItem]:
    """Fit and front items queued or running (in ``space``, or all)."""
    stmt = select(WorkItem).where(
        WorkItem.status.in_((WorkStatus.QUEUED, WorkStatus.RUNNING)), WorkItem.kind != WorkKind.CAMPAIGN
    )
    if space is not None:
        stmt = stmt.where(WorkItem.space == space)
    return list(session.scalars(stmt))
