"""Supernet weights: registered checkpoints of a space's supernet, versioned per space (admin)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from ... import repositories as repo
from ...schemas import Name, SupernetPublic
from ...services import supernets as supernet_service
from ...space_checks import known_space
from ..deps import PrincipalDep, SessionDep, SettingsDep, WriteSessionDep

router = APIRouter(prefix="/v1/supernets", tags=["supernets"])

SpaceQuery = Annotated[Name, Query(max_length=64, description="The space whose supernet the weights are.")]

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The checkpoint: a safetensors file of the space's supernet state_dict.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "",
    response_model=SupernetPublic,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=UPLOAD_BODY,
    responses={200: {"model": SupernetPublic, "description": "These bytes are registered already."}},
)
async def create_supernet(
    request: Request,
    response: Response,
    space: SpaceQuery,
    session: WriteSessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> SupernetPublic:
    """Register a checkpoint of ``space``'s supernet (admin): the request body is a safetensors
    file, streamed to disk (at most ``max_supernet_mb``: 413 past it). 201 with the space's next
    version; 200 with the existing version when these bytes are registered for the space already.
    422 when the space is unknown or has no supernet, when the body is not a safetensors file, or
    naming the first key that the space's supernet lacks, has with another shape, or has and the
    file lacks; nothing is stored then. 409 when the server has no data directory."""
    principal.require_admin("register supernet weights")
    search_space = known_space(space, ["query", "space"])
    folder = supernet_service.supernets_dir(settings.data_dir)
    with supernet_service.UploadFile(folder) as upload:
        async for chunk in request.stream():
            await run_in_threadpool(upload.write, chunk)
        received = await run_in_threadpool(upload.finish)
        row, created = await run_in_threadpool(
            supernet_service.register_supernet, session, search_space, received, folder
        )
        await run_in_threadpool(session.commit)
    if not created:
        response.status_code = status.HTTP_200_OK
    return SupernetPublic.model_validate(row)


@router.get("", response_model=list[SupernetPublic])
def list_supernets(
    session: SessionDep, space: Annotated[Name | None, Query(max_length=64)] = None
) -> list[SupernetPublic]:
    """The registered checkpoints (of ``space``, if given), by space and version."""
    return [SupernetPublic.model_validate(row) for row in repo.list_supernet_versions(session, space)]
