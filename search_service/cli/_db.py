"""``gpnas db upgrade``: apply the packaged Alembic migrations to ``--database-url``."""

from __future__ import annotations

import typer

from ._options import DEFAULT_DATABASE_URL, DatabaseUrlOption


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema (Alembic migrations shipped with gpnas).", no_args_is_help=True)

    @db.command("upgrade")
    def _upgrade(
        revision: str = typer.Argument("head", help="Target revision."),
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Apply the migrations up to REVISION (default: the newest)."""
        from search_service.core import upgrade

        reached = upgrade(database_url, revision)
        typer.echo(f"database at revision {reached}")

    @db.command("current")
    def _current(database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL) -> None:
        """Print the database's revision and the newest one this gpnas ships."""
        from search_service.core import current_revision, head_revision, make_engine

        engine = make_engine(database_url)
        try:
            typer.echo(f"current: {current_revision(engine) or 'none'}  head: {head_revision()}")
        finally:
            engine.dispose()

    app.add_typer(db, name="db")
