"""``gpnas db upgrade``: apply the packaged Alembic migrations to GPNAS_DATABASE_URL."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database schema (Alembic migrations shipped with gpnas).", no_args_is_help=True)

    @db.command("upgrade")
    def _upgrade(
        revision: str = typer.Argument("head", help="Target revision."),
        database_url: str = typer.Option(
            None, envvar="GPNAS_DATABASE_URL", help="Default: sqlite:///./gpnas.db"
        ),
    ) -> None:
        """Apply the migrations up to REVISION (default: the newest)."""
        from search_service.core import Settings, upgrade

        url = database_url or Settings().database_url
        reached = upgrade(url, revision)
        typer.echo(f"database at revision {reached}")

    @db.command("current")
    def _current(
        database_url: str = typer.Option(
            None, envvar="GPNAS_DATABASE_URL", help="Default: sqlite:///./gpnas.db"
        ),
    ) -> None:
        """Print the database's revision and the newest one this gpnas ships."""
        from search_service.core import Settings, current_revision, head_revision, make_engine

        engine = make_engine(database_url or Settings().database_url)
        try:
            typer.echo(f"current: {current_revision(engine) or 'none'}  head: {head_revision()}")
        finally:
            engine.dispose()

    app.add_typer(db, name="db")
