"""Liveness and database check."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from ...core import current_revision, head_revision, schema_problem
from ...models import Base
from ...schemas import Health
from ..deps import SessionDep

router = APIRouter(tags=["health"])

# How long a client should wait before asking again while the schema is wrong: someone has to
# migrate (or restore) the database first.
SCHEMA_RETRY_AFTER_S = 30


@router.get(
    "/healthz",
    response_model=Health,
    responses={
        503: {
            "description": "The database lacks the schema this server needs (a database emptied, "
            "replaced or restored after the server started): the body names the revision found "
            "(`schema_revision`) and the one expected (`expected_revision`)."
        }
    },
)
def health(session: SessionDep) -> Health | JSONResponse:
    """The service answers, and its database with it (at the schema revision shown)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    problem = schema_problem(engine, Base.metadata.tables)
    revision = current_revision(engine) or "none"
    if problem is not None:
        body = {
            "status": "schema mismatch",
            "database": engine.dialect.name,
            "schema_revision": revision,
            "expected_revision": head_revision(),
            "detail": problem,
        }
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(SCHEMA_RETRY_AFTER_S)})
    return Health(status="ok", database=engine.dialect.name, schema_revision=revision)
