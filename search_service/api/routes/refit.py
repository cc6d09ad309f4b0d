"""Force a refit of predictors and fronts (normally done in the background after new data)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ...admission import ADMISSION_RESPONSES
from ...schemas import FrontVersionPublic, PredictorVersionPublic, RefitRequest, RefitResponse
from ...space_checks import checked_refit
from ..deps import AdmissionDep, FrontCacheDep, PrincipalDep, RefitterDep

router = APIRouter(prefix="/v1", tags=["refit"])


@router.post(
    "/refit",
    response_model=RefitResponse,
    responses=ADMISSION_RESPONSES,
)
async def refit(
    body: Annotated[RefitRequest, Depends(checked_refit)],
    request: Request,
    principal: PrincipalDep,
    refitter: RefitterDep,
    cache: FrontCacheDep,
    admission: AdmissionDep,
) -> RefitResponse:
    """Refit every target with new measurements and recompute the fronts that depend on them.

    With ``wait`` (default) the answer lists the new versions; otherwise the background worker is
    woken and the answer returns at once. A waited-for refit runs in the server's queue of heavy
    work (``heavy_*`` settings); concurrent ones of the same space share one pass.
    """
    principal.require_admin("force a refit")
    if not body.wait:
        refitter.notify()
        return RefitResponse(status="scheduled", predictors=[], fronts=[], errors=[])
    report = await admission.run(
        principal.caller, lambda: refitter.refit(body.space), key=f"refit/{body.space}", connection=request
    )
    cache.forget()
    return RefitResponse(
        status="done",
        predictors=[
            PredictorVersionPublic.model_validate(p, from_attributes=True) for p in report.predictors
        ],
        fronts=[FrontVersionPublic.model_validate(f, from_attributes=True) for f in report.fronts],
        errors=report.errors,
        notes=report.notes,
    )
