"""Settings, database engine and schema-version checks of the service."""

from ._migrate import (
    SchemaOutdatedError,
    check_schema,
    current_revision,
    head_revision,
    require_database,
    schema_problem,
    upgrade,
)
from .config import Settings, get_settings
from .db import make_engine, make_sessionmaker

__all__ = [
    "SchemaOutdatedError",
    "Settings",
    "check_schema",
    "current_revision",
    "get_settings",
    "head_revision",
    "make_engine",
    "make_sessionmaker",
    "require_database",
    "schema_problem",
    "upgrade",
]
