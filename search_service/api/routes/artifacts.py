"""Artifacts: deployable files (ONNX) of a subnet or a deployment, built with named weights."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from ...admission import ADMISSION_RESPONSES
from ...errors import ForbiddenError
from ...schemas import INT32, ArtifactCreate, ArtifactPage, ArtifactPublic, SpaceName
from ...services import artifacts as service
from ...space_checks import checked_artifact
from ..deps import AdmissionDep, PrincipalDep, ReaderDep, SessionDep, SettingsDep

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])

Digest = Annotated[str, Path(pattern="^[0-9a-f]{64}$", description="The file's SHA-256 (lowercase hex).")]


@router.post(
    "",
    response_model=ArtifactPublic,
    responses={
        403: {"description": "A device token (artifacts of leased jobs come later)"},
        409: {"description": "The server has no data directory to store artifacts in"},
        413: {"description": "The artifact would exceed max_artifact_mb; nothing is stored"},
        422: {"description": "Unknown space, arch, task or supernet version, or the build failed (why)"},
        **ADMISSION_RESPONSES,
    },
)
async def create_artifact(
    body: Annotated[ArtifactCreate, Depends(checked_artifact)],
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    admission: AdmissionDep,
) -> ArtifactPublic:
    """Build (or find) the ONNX file of a subnet (``arch``, ``task``) or of a deployment
    (``tasks``, ``input``) with the named ``weights``, in ``precision``: a dynamic batch axis,
    checked against torch (``max_abs_diff``), stored by its SHA-256. The same request is built
    once, however many ask at once (in the server's queue of heavy work, on a worker with a
    broker); later ones get the stored artifact at once."""
    principal.require_admin("build artifacts")
    state = request.app.state
    return await service.create_artifact(
        state.read_sessions, body, settings, state.refitter.runner, admission, principal.caller, request
    )


@router.get("", response_model=ArtifactPage)
def list_artifacts(
    session: SessionDep,
    space: Annotated[SpaceName | None, Query(description="Only the artifacts of this space.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
) -> ArtifactPage:
    """The stored artifacts, oldest first, paginated."""
    total, artifacts = service.list_page(session, limit, offset, space)
    return ArtifactPage(total=total, limit=limit, offset=offset, artifacts=artifacts)


@router.get(
    "/{digest}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        403: {"description": "A device token"},
        404: {"description": "No artifact has this digest"},
    },
)
async def download_artifact(
    digest: Digest, session: SessionDep, settings: SettingsDep, reader: ReaderDep
) -> FileResponse:
    """The artifact's file, streamed from disk in chunks, with its SHA-256 in ``X-Content-SHA256``
    and as its ``ETag``. Open to readers and admins; a device token gets 403 (until jobs carry
    the artifacts an agent may download)."""
    if reader is not None and reader.device is not None:
        raise ForbiddenError(
            f"this token belongs to device {reader.device!r}; a device token may download only the "
            "artifacts of its own leased jobs, and jobs carry none yet"
        )
    path = await run_in_threadpool(service.artifact_file, session, settings, digest)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"{digest}.onnx",
        headers={"X-Content-SHA256": digest, "ETag": f'"{digest}"'},
    )
