"""Alembic driven from code: the migrations ship inside the installed package
(``search_service.migrations``, the repository's top-level ``migrations/`` folder)."""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, make_url

from .db import make_engine, normalise_url


class SchemaOutdatedError(RuntimeError):
    """The database schema is not at the migrations' head; the message says what to run."""


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged ``migrations`` directory and ``url``."""
    config = Config()
    # The repository's migrations/ folder, installed as this package (pyproject.toml).
    config.set_main_option("script_location", str(importlib.resources.files("search_service.migrations")))
    # '%' is ConfigParser interpolation syntax; URLs may contain it (escaped passwords).
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


@cache
def head_revision() -> str:
    """The newest migration's revision id (read once: the migrations ship with the code)."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "the migrations package holds no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_problem(engine: Engine, tables: Iterable[str] = ()) -> str | None:
    """Why the database of ``engine`` cannot serve this gpnas, or None: its schema is not at the
    newest migration (a database created, emptied or restored after the server started), or
    some of ``tables`` (those the models map) are missing although the revision says otherwise."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        return (
            f"database schema is at revision {current or 'none (empty database)'}, expected {head}: "
            "run `gpnas db upgrade` (with the same GPNAS_DATABASE_URL)"
        )
    missing = sorted(set(tables) - set(inspect(engine).get_table_names()))
    if missing:
        return (
            f"database schema is at revision {current}, expected {head}, but lacks the tables "
            f"{', '.join(missing)}: restore them, or migrate a new database with `gpnas db upgrade`"
        )
    return None


def upgrade(url: str, revision: str = "head") -> str:
    """Apply the migrations to ``url`` up to ``revision``; returns the revision reached."""
    command.upgrade(alembic_config(url), revision)
    engine = make_engine(url)
    try:
        reached = current_revision(engine)
    finally:
        engine.dispose()
    return reached or "base"


def require_database(url: str) -> None:
    """Raise :class:`SchemaOutdatedError` if ``url`` names a SQLite file that does not exist:
    opening it would create an empty database there (a command run in another folder with the
    default ``sqlite:///./gpnas.db``), which only ``gpnas db upgrade`` should do."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database)
    if not path.exists():
        raise SchemaOutdatedError(
            f"no database at {path.resolve()}: create it with `gpnas db upgrade --database-url {url}`, "
            "or point --database-url (GPNAS_DATABASE_URL) at an existing one"
        )


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaOutdatedError` unless the database is at the newest migration."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        url = engine.url.render_as_string(hide_password=True)
        raise SchemaOutdatedError(
            f"database schema of {url} is at revision {current or 'none (empty database)'}, "
            f"this gpnas needs {head}: run `gpnas db upgrade` (with the same GPNAS_DATABASE_URL) first"
        )
