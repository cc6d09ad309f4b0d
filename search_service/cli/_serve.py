"""``gpnas serve``: run the API with uvicorn."""

from __future__ import annotations

import os

import typer

from ..errors import UserError
from ._options import DEFAULT_DATABASE_URL, DatabaseUrlOption


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def _serve(
        host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 for all)."),
        port: int = typer.Option(8000, help="TCP port."),
        workers: int = typer.Option(1, min=1, help="uvicorn worker processes (each runs a refit thread)."),
        log_level: str = typer.Option("info", help="uvicorn log level."),
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Serve the REST API (OpenAPI at /docs) on --database-url; refuses an outdated schema."""
        import uvicorn

        from search_service import SchemaOutdatedError, create_app

        # Through the environment, so that the worker processes' own create_app() sees it too: a
        # loopback bind admits only localhost Host headers unless GPNAS_ALLOWED_HOSTS says otherwise.
        os.environ["GPNAS_BIND_HOST"] = host
        os.environ["GPNAS_DATABASE_URL"] = database_url
        try:
            # Built once here so that an outdated schema is one clear line, not a worker traceback.
            application = create_app()
        except SchemaOutdatedError as error:
            raise UserError(str(error)) from None
        if workers == 1:
            uvicorn.run(application, host=host, port=port, log_level=log_level)
        else:
            target = "search_service:create_app"
            uvicorn.run(target, factory=True, host=host, port=port, workers=workers, log_level=log_level)
