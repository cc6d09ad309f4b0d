"""``gpnas token create [--device NAME]``: a new API token, printed as the last word."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    token = typer.Typer(help="API tokens (stored hashed; shown once).", no_args_is_help=True)

    @token.command("create")
    def _create(
        device: str = typer.Option(None, help="Restrict the token to leasing and posting for this device."),
        database_url: str = typer.Option(
            None, envvar="GPNAS_DATABASE_URL", help="Default: sqlite:///./gpnas.db"
        ),
    ) -> None:
        """Create a token and print it (the last word of the output); it cannot be shown again."""
        from search_service import repositories as repo
        from search_service.core import Settings, check_schema, make_engine, make_sessionmaker

        engine = make_engine(database_url or Settings().database_url)
        try:
            check_schema(engine)
            with make_sessionmaker(engine, write=True)() as session:
                value = repo.create_token(session, device)
                session.commit()
        except RuntimeError as error:
            raise ValueError(str(error)) from None
        finally:
            engine.dispose()
        scope = f"device {device!r}" if device else "all routes"
        typer.echo(f"created a token for {scope}; keep it secret: {value}")

    app.add_typer(token, name="token")
