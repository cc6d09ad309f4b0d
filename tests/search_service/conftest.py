"""Fixtures of the service tests: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL: a fresh database per test session, created on the server of GPNAS_TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/test) and dropped at the end; tables are emptied
between tests. If the server does not answer the postgres tests fail (they never skip): CI starts
it with scripts/ensure_services.sh.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from service_helpers import make_settings

from search_service import create_app
from search_service.core import upgrade
from search_service.models import Base

PG_URL = os.environ.get("GPNAS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Every table of the schema, so that a new one is emptied between tests too.
TABLES = tuple(table.name for table in Base.metadata.sorted_tables)


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a new, migrated PostgreSQL database, dropped after the session."""
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"PostgreSQL does not answer at {PG_URL} ({error}); run scripts/ensure_services.sh", False
        )
    name = f"gpnas_test_{uuid.uuid4().hex[:10]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(PG_URL, name)
    try:
        upgrade(url)
        yield url
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (cheaper than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "gpnas.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "gpnas.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """An empty, migrated PostgreSQL database (for tests that need one: several machines' view)."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE")
    return postgres_url


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """A client of an app without auth and without the background refit worker."""
    with TestClient(create_app(make_settings(db_url))) as test_client:
        yield test_client


@pytest.fixture
def auth_client(db_url: str) -> Iterator[TestClient]:
    """A client of an app that requires tokens (none sent by default)."""
    with TestClient(create_app(make_settings(db_url, auth=True))) as test_client:
        yield test_client
