"""Ingest and list measurements."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from ... import repositories as repo
from ...domain import Metric
from ...errors import InvalidError
from ...models import Measurement
from ...schemas import (
    INT32,
    MeasurementBatch,
    MeasurementBatchResponse,
    MeasurementPage,
    MeasurementPublic,
    Name,
    Text,
)
from ...services.measurements import ingest_measurements
from ...space_checks import checked_measurements
from ..deps import Principal, PrincipalDep, ReaderDep, RefitterDep, SessionDep, SettingsDep, WriteSessionDep

router = APIRouter(prefix="/v1/measurements", tags=["measurements"])


@router.post("", response_model=MeasurementBatchResponse)
def post_measurements(
    body: Annotated[MeasurementBatch, Depends(checked_measurements)],
    session: WriteSessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
    refitter: RefitterDep,
) -> MeasurementBatchResponse:
    """Store a batch, all or nothing; ids already stored with the same content count as duplicates.

    An invalid item rejects the whole batch with its index (``loc``) and the reason; a device
    token may only post latencies of its own device. Re-posting the id of a retracted measurement
    with the same content is a duplicate too: it does not bring the measurement back (post a
    re-measurement under a new id instead).

    ``level_shifts`` lists the latency batches of the request (items sharing device, reference and
    ``reference_ms``) whose reference level lies beyond ``level_shift_threshold`` from the
    median of the device's other batches' levels: the machine was in a slow or fast phase. They
    are stored all the same, as sent, and fits rescale them to the device's long-run level.
    """
    if len(body.measurements) > settings.max_batch:
        raise InvalidError(f"at most {settings.max_batch} measurements per batch", ["body", "measurements"])
    if principal.device is not None:
        for m in body.measurements:
            principal.check_device(m.device, f"post measurements for {m.device or m.task!r}")
    stored = ingest_measurements(session, body.measurements, settings.level_shift_threshold)
    if stored.inserted:
        refitter.notify()
    return stored


@router.get("", response_model=MeasurementPage)
def list_measurements(
    session: SessionDep,
    reader: ReaderDep,
    space: Annotated[Name | None, Query(max_length=64)] = None,
    device: Annotated[Name | None, Query()] = None,
    task: Annotated[Name | None, Query(max_length=64)] = None,
    metric: Metric | None = None,
    arch: Annotated[Text | None, Query(max_length=256)] = None,
    include_retracted: Annotated[bool, Query(description="Also list retracted measurements.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
) -> MeasurementPage:
    """Stored measurements, oldest first, filtered by any of the query parameters; retracted ones
    only with ``include_retracted``.

    ``environment`` is null for callers without a token (it names the measuring machine's
    hosts, paths and libraries)."""
    total, rows = repo.list_measurements(
        session,
        limit,
        offset,
        include_retracted,
        space=space,
        device=device,
        task=task,
        metric=metric,
        arch=arch,
    )
    return MeasurementPage(
        total=total,
        limit=limit,
        offset=offset,
        measurements=[_public(r, reader) for r in rows],
    )


def _public(row: Measurement, reader: Principal | None) -> MeasurementPublic:
    out = MeasurementPublic.model_validate(row)
    return out if reader is not None else out.model_copy(update={"environment": None})


@router.delete(
    "/{measurement_id}", response_model=MeasurementPublic, responses={404: {"description": "No such id"}}
)
def retract_measurement(
    measurement_id: Annotated[int, Path(ge=1, le=INT32)],
    session: WriteSessionDep,
    principal: PrincipalDep,
    refitter: RefitterDep,
    reason: Annotated[Text | None, Query(max_length=500, description="Why, for the audit trail.")] = None,
) -> MeasurementPublic:
    """Retract a measurement: its row is kept (the audit trail), with ``retracted_at`` and
    ``retracted_reason``; listings leave it out unless asked, and the next refit of its target
    leaves it out too. Retracting it again changes nothing (the first time and reason stay).

    A device token may only retract latencies of its own device. Re-posting the retracted id with
    the same content counts as a duplicate and does not bring the measurement back.
    """
    measurement = repo.get_measurement(session, measurement_id, lock=True)
    principal.check_device(measurement.device, f"retract measurement {measurement_id}")
    retracted = repo.retract_measurement(session, measurement, reason)
    out = MeasurementPublic.model_validate(measurement)
    session.commit()
    if retracted:
        refitter.notify()
    return out
