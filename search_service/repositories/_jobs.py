"""Campaigns and their jobs: the queue that device agents lease from."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ..domain import ACTIVE_JOB_STATUSES, JobStatus, Metric
from ..errors import NotFoundError
from ..models import Campaign, Job, utcnow


def create_campaign(
    session: Session,
    space: str,
    device: str,
    task: str | None,
    strategy: str,
    seed: int | None,
    archs: Sequence[str],
) -> Campaign:
    metric = Metric.SCORE if task is not None else Metric.LATENCY
    campaign = Campaign(
        space=space, device=device, task=task, metric=metric, strategy=strategy, n=len(archs), seed=seed
    )
    session.add(campaign)
    session.flush()
    now = utcnow()
    session.add_all(
        Job(
            campaign_id=campaign.id,
            space=space,
            arch=a,
            device=device,
            task=task,
            metric=metric,
            status=JobStatus.QUEUED,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        for a in archs
    )
    session.flush()
    return campaign


def pending_archs(session: Session, space: str, device: str, task: str | None) -> set[str]:
    """Archs already queued or leased for the same measurement (not to be queued twice)."""
    stmt = select(Job.arch).where(
        Job.space == space,
        Job.device == device,
        Job.status.in_(ACTIVE_JOB_STATUSES),
        Job.task.is_(None) if task is None else Job.task == task,
    )
    return set(session.scalars(stmt))


def campaign_counts(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Job.status, func.count()).where(Job.campaign_id == campaign_id).group_by(Job.status)
    )
    return {status: int(n) for status, n in rows}


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign {campaign_id}")
    return campaign


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id)))


def list_jobs(
    session: Session, limit: int, offset: int, campaign_id: int | None, device: str | None, status: str | None
) -> tuple[int, list[Job]]:
    conditions = []
    if campaign_id is not None:
        conditions.append(Job.campaign_id == campaign_id)
    if device is not None:
        conditions.append(Job.device == device)
    if status is not None:
        conditions.append(Job.status == status)
    total = session.scalar(select(func.count(Job.id)).where(*conditions)) or 0
    jobs = session.scalars(select(Job).where(*conditions).order_by(Job.id).limit(limit).offset(offset))
    return total, list(jobs)


def get_job(session: Session, job_id: int, lock: bool = False) -> Job:
    stmt = select(Job).where(Job.id == job_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    job = session.scalar(stmt)
    if job is None:
        raise NotFoundError(f"no job {job_id}")
    return job


def lease_jobs(
    session: Session, device: str, lease_seconds: int, max_attempts: int, count: int = 1
) -> list[Job]:
    """Lease up to ``count`` of the oldest available jobs of ``device`` (see :func:`lease_job`)."""
    jobs: list[Job] = []
    while len(jobs) < count and (job := lease_job(session, device, lease_seconds, max_attempts)):
        jobs.append(job)
    return jobs


def lease_job(session: Session, device: str, lease_seconds: int, max_attempts: int) -> Job | None:
    """Lease the oldest available job of ``device``: queued, or leased with an expired lease.

    On PostgreSQL, candidate rows are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
    leasers skip each other's rows; on SQLite the caller's ``BEGIN IMMEDIATE`` transaction makes
    this the only writer. Expired jobs already leased ``max_attempts`` times fail for good.
    """
    now = utcnow()
    available = or_(
        Job.status == JobStatus.QUEUED, and_(Job.status == JobStatus.LEASED, Job.lease_expires_at < now)
    )
    while True:
        # One row at a time: locking more would hide them from concurrent leasers (SKIP LOCKED).
        stmt = select(Job).where(Job.device == device, available).order_by(Job.id).limit(1)
        if session.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        job = session.scalars(stmt).first()
        if job is None:
            return None
        if job.status == JobStatus.LEASED and job.attempts >= max_attempts:
            job.status = JobStatus.FAILED
            job.last_error = (
                f"lease expired after attempt {job.attempts} of {max_attempts}; last error: {job.last_error}"
            )
            job.lease_token = None
            job.updated_at = now
            session.flush()
            continue
        job.status = JobStatus.LEASED
        job.attempts += 1
        job.lease_token = secrets.token_urlsafe(24)
        job.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
        job.updated_at = now
        session.flush()
        return job
