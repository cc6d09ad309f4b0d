"""The preset search spaces."""

from fastapi import APIRouter, Path

import supernet

from ...errors import NotFoundError
from ...schemas import SpaceDetail, SpaceSummary

router = APIRouter(prefix="/v1/spaces", tags=["spaces"])


@router.get("", response_model=list[SpaceSummary])
def list_spaces() -> list[SpaceSummary]:
    """Every preset space with its tasks and exact cardinality."""
    return [
        SpaceSummary.model_validate(supernet.get_space(name).describe()) for name in supernet.list_spaces()
    ]


@router.get("/{space}", response_model=SpaceDetail)
def get_space(space: str = Path(max_length=64)) -> SpaceDetail:
    """One space: tasks, depths and the choices of each per-layer dimension."""
    if space not in supernet.list_spaces():
        raise NotFoundError(f"unknown space {space!r}; known spaces: {', '.join(supernet.list_spaces())}")
    return SpaceDetail.model_validate(supernet.get_space(space).describe())
