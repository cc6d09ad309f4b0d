"""Migrations are the only way the schema changes, they match the models, and outdated schemas are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from search_service import SchemaOutdatedError, Settings, create_app
from search_service.cli import app as cli_app
from search_service.core import head_revision, make_engine
from search_service.models import Base


def test_migrations_match_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert context.get_current_revision() == head_revision()
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_app_refuses_an_empty_database(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaOutdatedError, match="run `gpnas db upgrade`"):
        create_app(Settings(database_url=url))


def test_a_database_file_that_does_not_exist_is_refused_not_created(tmp_path: Path) -> None:
    """`gpnas token create` in another folder created an empty ./gpnas.db, then advised
    `gpnas db upgrade` on it."""
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    with pytest.raises(
        SchemaOutdatedError, match="no database at .*missing.db: create it with `gpnas db upgrade"
    ):
        create_app(Settings(database_url=url))
    refused = CliRunner().invoke(cli_app, ["token", "create"], env={"GPNAS_DATABASE_URL": url})
    assert refused.exit_code != 0 and "no database at" in str(refused.exception)
    assert not (tmp_path / "missing.db").exists()


def test_cli_upgrade_then_token_then_serve_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    refused = runner.invoke(cli_app, ["token", "create"], env={"GPNAS_DATABASE_URL": url})
    assert refused.exit_code != 0 and "gpnas db upgrade" in str(refused.exception)
    upgraded = runner.invoke(cli_app, ["db", "upgrade"], env={"GPNAS_DATABASE_URL": url})
    assert upgraded.exit_code == 0, upgraded.output
    assert head_revision() in upgraded.output
    created = runner.invoke(cli_app, ["token", "create", "--device", "dev1"], env={"GPNAS_DATABASE_URL": url})
    assert created.exit_code == 0, created.output
    token = created.output.split()[-1]
    assert token.startswith("gpnas_") and len(token) > 30
    # The token is stored hashed: its clear text is nowhere in the database file.
    assert token.encode() not in (tmp_path / "cli.db").read_bytes()
    create_app(Settings(database_url=url))  # at head now: no error
