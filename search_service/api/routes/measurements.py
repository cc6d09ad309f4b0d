"""Ingest and list measurements."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ... import repositories as repo
from ...errors import InvalidError
from ...schemas import INT32, MeasurementBatch, MeasurementBatchResponse, MeasurementPage, MeasurementPublic
from ..deps import PrincipalDep, RefitterDep, SessionDep, SettingsDep, WriteSessionDep

router = APIRouter(prefix="/v1/measurements", tags=["measurements"])


@router.post("", response_model=MeasurementBatchResponse)
def post_measurements(
    body: MeasurementBatch,
    session: WriteSessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    refitter: RefitterDep,
) -> MeasurementBatchResponse:
    """Store a batch, all or nothing; ids already stored with the same content count as duplicates.

    An invalid item rejects the whole batch with its index (``loc``) and the reason; a device
    token may only post latencies of its own device.
    """
    if len(body.measurements) > settings.max_batch:
        raise InvalidError(f"at most {settings.max_batch} measurements per batch", ["body", "measurements"])
    if principal.device is not None:
        for m in body.measurements:
            principal.check_device(m.device, f"post measurements for {m.device or m.task!r}")
    inserted, duplicate, _ = repo.insert_measurements(session, body.measurements)
    session.commit()
    if inserted:
        refitter.notify()
    return MeasurementBatchResponse(inserted=inserted, duplicate=duplicate)


@router.get("", response_model=MeasurementPage)
def list_measurements(
    session: SessionDep,
    space: Annotated[str | None, Query(max_length=64)] = None,
    device: Annotated[str | None, Query(max_length=128)] = None,
    task: Annotated[str | None, Query(max_length=64)] = None,
    metric: Literal["latency_ms", "score"] | None = None,
    arch: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
) -> MeasurementPage:
    """Stored measurements, oldest first, filtered by any of the query parameters."""
    total, rows = repo.list_measurements(
        session, limit, offset, space=space, device=device, task=task, metric=metric, arch=arch
    )
    return MeasurementPage(
        total=total,
        limit=limit,
        offset=offset,
        measurements=[MeasurementPublic.model_validate(r) for r in rows],
    )
