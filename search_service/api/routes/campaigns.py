"""Campaigns: choose subnets to measure on a device (or score on a task) and queue them as jobs."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status

from ... import repositories as repo
from ...admission import ADMISSION_RESPONSES
from ...schemas import INT32, CampaignCreate, CampaignPublic
from ...services import campaigns as service
from ...space_checks import checked_campaign
from ..deps import AdmissionDep, PrincipalDep, SessionDep

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post(
    "",
    response_model=CampaignPublic,
    status_code=status.HTTP_201_CREATED,
    responses=ADMISSION_RESPONSES,
)
async def create_campaign(
    body: Annotated[CampaignCreate, Depends(checked_campaign)],
    request: Request,
    principal: PrincipalDep,
    admission: AdmissionDep,
) -> CampaignPublic:
    """Choose ``n`` subnets with ``strategy`` and queue one job per subnet for ``device``'s agent.

    Without ``task`` the jobs time the subnets on the device (metric ``latency_ms``); with
    ``task`` the device's profiler scores them on that task (metric ``score``). ``candidates``
    restricts the picks (e.g. to the rows of a table that only the device's agent can read).
    Selection runs in the server's queue of heavy work (``heavy_*`` settings).
    """
    principal.require_admin("create campaigns")
    state = request.app.state
    return await admission.run(
        principal.caller,
        lambda: service.create_campaign(state.read_sessions, body, state.refitter.runner),
        connection=request,
    )


@router.get("", response_model=list[CampaignPublic])
def list_campaigns(session: SessionDep) -> list[CampaignPublic]:
    return [service.campaign_public(session, c) for c in repo.list_campaigns(session)]


@router.get("/{campaign_id}", response_model=CampaignPublic)
def get_campaign(session: SessionDep, campaign_id: Annotated[int, Path(ge=1, le=INT32)]) -> CampaignPublic:
    """A campaign with the number of its jobs per status."""
    return service.campaign_public(session, repo.get_campaign(session, campaign_id))
