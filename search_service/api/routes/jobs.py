"""The job queue of device agents: lease with expiry, heartbeat, post a result (idempotent), fail."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ... import repositories as repo
from ...domain import JobStatus
from ...models import Job
from ...schemas import (
    INT32,
    FailRequest,
    FailResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JobLease,
    JobPage,
    JobPublic,
    LeaseRequest,
    LeaseResponse,
    Name,
    ResultRequest,
    ResultResponse,
)
from ...services import jobs as agent_jobs
from ..deps import Principal, PrincipalDep, ReaderDep, RefitterDep, SessionDep, SettingsDep, WriteSessionDep

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=INT32)]


@router.post("/lease", response_model=LeaseResponse)
def lease_jobs(
    body: LeaseRequest, session: WriteSessionDep, principal: PrincipalDep, settings: SettingsDep
) -> LeaseResponse:
    """Lease up to ``count`` of the oldest available jobs of ``device`` for ``lease_seconds``.

    A job whose lease expired goes back to the queue; two agents never hold the same job. Each
    job of a batch lease has its own lease token, heartbeat, result and expiry.
    """
    principal.check_device(body.device, f"lease jobs of device {body.device!r}")
    repo.get_device(session, body.device)
    jobs = repo.lease_jobs(
        session,
        body.device,
        min(body.lease_seconds, settings.max_lease_seconds),
        settings.max_job_attempts,
        body.count,
    )
    out = [
        JobLease(
            id=job.id,
            space=job.space,
            arch=job.arch,
            device=job.device,
            task=job.task,
            metric=job.metric,
            lease_token=job.lease_token or "",
            lease_expires_at=job.lease_expires_at,  # type: ignore[arg-type]
        )
        for job in jobs
    ]
    session.commit()
    return LeaseResponse(jobs=out, job=out[0] if out else None)


@router.post(
    "/{job_id}/heartbeat", response_model=HeartbeatResponse, responses={409: {"description": "Lease lost"}}
)
def heartbeat_job(
    job_id: JobId,
    body: HeartbeatRequest,
    session: WriteSessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> HeartbeatResponse:
    """Extend a held lease by ``lease_seconds`` from now; 409 if the lease is no longer held."""
    principal.check_device(repo.get_job(session, job_id).device, f"touch job {job_id}")
    job = agent_jobs.heartbeat(
        session, job_id, body.lease_token, min(body.lease_seconds, settings.max_lease_seconds)
    )
    out = HeartbeatResponse(lease_expires_at=job.lease_expires_at)  # type: ignore[arg-type]
    session.commit()
    return out


@router.post(
    "/{job_id}/result", response_model=ResultResponse, responses={409: {"description": "Lease lost"}}
)
def post_job_result(
    job_id: JobId,
    body: ResultRequest,
    session: WriteSessionDep,
    principal: PrincipalDep,
    refitter: RefitterDep,
) -> ResultResponse:
    """Store the job's measurement. Posting again with the same lease token returns the same
    measurement (stored once); 409 if another agent holds or completed the job."""
    principal.check_device(repo.get_job(session, job_id).device, f"post results for job {job_id}")
    job = agent_jobs.complete_job(session, job_id, body)
    out = ResultResponse(status=JobStatus.DONE, measurement_id=job.measurement_id)  # type: ignore[arg-type]
    session.commit()
    refitter.notify()
    return out


@router.post("/{job_id}/fail", response_model=FailResponse, responses={409: {"description": "Lease lost"}})
def fail_job(
    job_id: JobId, body: FailRequest, session: WriteSessionDep, principal: PrincipalDep, settings: SettingsDep
) -> FailResponse:
    """Give the job back with an error: queued again, or failed for good after the last attempt."""
    principal.check_device(repo.get_job(session, job_id).device, f"fail job {job_id}")
    job = agent_jobs.fail_job(session, job_id, body.lease_token, body.error, settings.max_job_attempts)
    out = FailResponse(status=job.status, attempts=job.attempts)  # type: ignore[arg-type]
    session.commit()
    return out


def _public(job: Job, reader: Principal | None) -> JobPublic:
    out = JobPublic.model_validate(job)
    # An agent's error text quotes its machine (paths, hosts): for callers with a token only.
    return out if reader is not None else out.model_copy(update={"last_error": None})


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    reader: ReaderDep,
    campaign: Annotated[int | None, Query(ge=1, le=INT32)] = None,
    device: Annotated[Name | None, Query()] = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
) -> JobPage:
    total, jobs = repo.list_jobs(session, limit, offset, campaign, device, status)
    return JobPage(total=total, limit=limit, offset=offset, jobs=[_public(j, reader) for j in jobs])


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: JobId, session: SessionDep, reader: ReaderDep) -> JobPublic:
    """One job; ``last_error`` is null for callers without a token."""
    return _public(repo.get_job(session, job_id), reader)
