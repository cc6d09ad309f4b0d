"""A device agent's hold on a leased job: heartbeats, its result (stored once as the job's
measurement) and its failure."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from ..domain import JobStatus, Metric
from ..errors import ConflictError, InvalidError
from ..models import Job, Measurement, utcnow
from ..repositories import COMPARED_FIELDS, find_supernet_version, get_job, insert_measurements
from ..schemas import JOB_ID_PREFIX, MeasurementCreate, ResultRequest
from ..space_checks import known_arch

# What a re-posted job result must repeat to be the same result (as for a re-posted measurement).
_RESULT_COMPARED = tuple(k for k in COMPARED_FIELDS if k in ResultRequest.model_fields)


def complete_job(session: Session, job_id: int, body: ResultRequest) -> Job:
    """Store a job's result once. Re-posting it with the same lease token returns the same job.

    A result whose lease expired is accepted as long as no other agent leased the job since.

    Raises:
        ConflictError: Another agent holds or completed the job, or this lease's result is already
            stored with a different value, std, repeats or flagged (measurements are never
            overwritten).
    """
    job = get_job(session, job_id, lock=True)
    if body.reference_arch is not None:
        if job.metric != Metric.LATENCY:
            raise InvalidError("only a latency has a reference level", ["body", "reference_arch"])
        canonical = known_arch(job.space, body.reference_arch, ["body", "reference_arch"])
        body = body.model_copy(update={"reference_arch": canonical})
    if job.lease_token != body.lease_token:
        if job.status == JobStatus.DONE:
            raise ConflictError(f"job {job_id} was completed under another lease")
        raise ConflictError(f"job {job_id}: this lease is no longer held (job is {job.status})")
    if job.status == JobStatus.DONE:
        stored = session.get(Measurement, job.measurement_id)
        assert stored is not None, "a done job's measurement is never deleted"
        changed = [
            f"{key} {getattr(stored, key)!r} (stored) vs {getattr(body, key)!r} (posted)"
            for key in _RESULT_COMPARED
            if getattr(stored, key) != getattr(body, key)
        ]
        if changed:
            raise ConflictError(
                f"job {job_id} already has a result under this lease, with other content: "
                + ", ".join(changed)
                + "; results are never overwritten (post a re-measurement to /v1/measurements)"
            )
        return job
    if job.metric == Metric.LATENCY and body.value <= 0:
        raise InvalidError("a latency must be positive", ["body", "value"])
    item = MeasurementCreate.model_validate(
        {
            "id": f"{JOB_ID_PREFIX}{job.id}",
            "space": job.space,
            "arch": job.arch,
            "device": job.device if job.metric == Metric.LATENCY else None,
            "task": job.task if job.metric == Metric.SCORE else None,
            "metric": job.metric,
            "supernet_version": _scored_version(session, job, body),
            **body.model_dump(exclude={"lease_token"}),
        },
        context={"job_result": True},
    )
    _, _, (measurement_id,) = insert_measurements(session, [item], job_id=job.id)
    job.status = JobStatus.DONE
    job.measurement_id = measurement_id
    job.updated_at = utcnow()
    session.flush()
    return job


def _scored_version(session: Session, job: Job, body: ResultRequest) -> int | None:
    """The registered supernet version a score job's result was measured with: the one whose file
    has the sha256 the profiler recorded as its ``weights`` (supernet-eval does), else None."""
    weights = (body.environment or {}).get("weights")
    if job.metric != Metric.SCORE or not isinstance(weights, str):
        return None
    version = find_supernet_version(session, job.space, weights)
    return None if version is None else version.version


def heartbeat(session: Session, job_id: int, token: str, lease_seconds: int) -> Job:
    """Extend a held lease by ``lease_seconds`` from now.

    Raises:
        ConflictError: The lease ``token`` no longer holds the job.
    """
    job = get_job(session, job_id, lock=True)
    if job.status != JobStatus.LEASED or job.lease_token != token:
        raise ConflictError(f"job {job_id}: this lease is no longer held (job is {job.status})")
    job.lease_expires_at = utcnow() + dt.timedelta(seconds=lease_seconds)
    job.updated_at = utcnow()
    session.flush()
    return job


def fail_job(session: Session, job_id: int, token: str, error: str, max_attempts: int) -> Job:
    """Give a leased job back: queued again, or failed for good after ``max_attempts`` leases."""
    job = get_job(session, job_id, lock=True)
    given_back = job.status in (JobStatus.QUEUED, JobStatus.FAILED) and job.lease_token is None
    if job.failed_token == token and given_back:
        return job  # the same failure posted again
    if job.status != JobStatus.LEASED or job.lease_token != token:
        raise ConflictError(f"job {job_id}: this lease is no longer held (job is {job.status})")
    job.status = JobStatus.FAILED if job.attempts >= max_attempts else JobStatus.QUEUED
    job.failed_token = token
    job.lease_token = None
    job.lease_expires_at = None
    job.last_error = error
    job.updated_at = utcnow()
    session.flush()
    return job
