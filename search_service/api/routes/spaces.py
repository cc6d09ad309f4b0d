"""Search spaces: the built-in presets and the spaces registered as data (admin)."""

from typing import Annotated

from fastapi import APIRouter, Path, status

import supernet
from supernet import SearchSpace, SpaceDefinition, TaskDefinition

from ...errors import NotFoundError
from ...schemas import SpaceDetail, SpaceSummary
from ...services import spaces as space_service
from ..deps import PrincipalDep, SettingsDep, WriteSessionDep

router = APIRouter(prefix="/v1/spaces", tags=["spaces"])

SpacePath = Annotated[str, Path(max_length=64)]


def _detail(space: SearchSpace) -> SpaceDetail:
    return SpaceDetail.model_validate({**space.describe(), "preset": supernet.is_preset(space.name)})


def _space(name: str) -> SearchSpace:
    try:
        return supernet.get_space(name)
    except ValueError as error:
        raise NotFoundError(str(error)) from None


@router.get("", response_model=list[SpaceSummary])
def list_spaces() -> list[SpaceSummary]:
    """Every space with its tasks and exact cardinality: the presets, then the registered ones."""
    return [
        SpaceSummary.model_validate(_detail(supernet.get_space(name)).model_dump())
        for name in supernet.list_spaces()
    ]


@router.get("/{space}", response_model=SpaceDetail)
def get_space(space: SpacePath) -> SpaceDetail:
    """One space: tasks, depths and the choices of each per-layer dimension."""
    return _detail(_space(space))


@router.get("/{space}/definition", response_model=SpaceDefinition)
def get_space_definition(space: SpacePath) -> SpaceDefinition:
    """The space as data, presets included: a body that ``POST /v1/spaces`` accepts (under a new
    name for a preset), and what ``gpnas spaces show`` prints."""
    return _space(space).to_definition()


@router.post("", response_model=SpaceDetail, status_code=status.HTTP_201_CREATED)
def create_space(
    body: SpaceDefinition, session: WriteSessionDep, principal: PrincipalDep, settings: SettingsDep
) -> SpaceDetail:
    """Register a space definition (admin): name, tasks with head widths and metrics, per-layer
    choices, depths, geometry, which parts are per task, arch format. Usable at once by every
    route, exactly like a preset. 409 if the name is a preset's or registered (ignoring case);
    422 names the field, also when the one-hot code is wider than ``max_encoding_width``.
    """
    principal.require_admin("register spaces")
    space = space_service.register_space(session, body, settings.max_encoding_width)
    session.commit()
    space_service.publish(space)
    return _detail(space)


@router.post("/{space}/tasks", response_model=SpaceDetail, status_code=status.HTTP_201_CREATED)
def add_space_task(
    space: SpacePath, body: TaskDefinition, session: WriteSessionDep, principal: PrincipalDep
) -> SpaceDetail:
    """Add a task to a registered space (admin). Nothing stored changes: subnets, arch strings and
    encodings do not depend on the tasks. 404 unknown space, 409 a preset or an existing task."""
    principal.require_admin("add tasks to spaces")
    extended = space_service.add_task(session, space, body)
    session.commit()
    space_service.publish(extended)
    return _detail(extended)
