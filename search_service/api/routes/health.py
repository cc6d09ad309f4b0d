"""Liveness and database check."""

from fastapi import APIRouter
from sqlalchemy import Engine

from ...core import current_revision
from ...schemas import Health
from ..deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def health(session: SessionDep) -> Health:
    """The service answers, and its database with it (at the schema revision shown)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return Health(
        status="ok", database=engine.dialect.name, schema_revision=current_revision(engine) or "none"
    )
