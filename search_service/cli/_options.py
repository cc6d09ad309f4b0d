"""Where a ``gpnas`` command finds its data, declared once for every command.

``--database-url`` (``GPNAS_DATABASE_URL``) names the database of the commands that open it
in-process; ``--server`` (``GPNAS_SERVER``) and ``--token`` (``GPNAS_TOKEN``) name a running
service and the token sent to it. Each command declares the aliases below with the defaults
given here, so that the names, environment variables, help and defaults are the same everywhere
(``tests/search_service/test_cli_options.py`` checks every registered command)::

    def _command(database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL) -> None: ...
    def _other(server: ServerOption = None, token: TokenOption = None) -> None: ...

A command that can read a database directly or ask a server takes both and resolves them with
:func:`server_or_database`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ..errors import UserError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy.orm import Session

    from search_service.client import GpnasClient

M = TypeVar("M", bound="BaseModel")

# The default of search_service.core.config.Settings.database_url (a test keeps them equal). Not
# imported from there: that module loads SQLAlchemy and the app, and `gpnas --help` should not.
DEFAULT_DATABASE_URL = "sqlite:///./gpnas.db"
COMMANDLINE, ENVIRONMENT = "COMMANDLINE", "ENVIRONMENT"

DATABASE_URL_HELP = (
    "SQLAlchemy URL of the gpnas database: a SQLite file, or postgresql+psycopg://user@host/db."
)
SERVER_HELP = "URL of a running gpnas service, e.g. http://127.0.0.1:8000."
TOKEN_HELP = "API token sent to --server (`gpnas token create`; a device token for an agent)."

DatabaseUrlOption = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="GPNAS_DATABASE_URL",
        help=DATABASE_URL_HELP,
        show_default=True,
        show_envvar=True,
    ),
]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="GPNAS_SERVER", help=SERVER_HELP, show_envvar=True),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="GPNAS_TOKEN", help=TOKEN_HELP, show_envvar=True),
]


def require(value: str | None, option: str, envvar: str) -> str:
    """``value``, which the command cannot do without.

    Raises:
        UserError: It was neither given as ``option`` nor set in ``envvar`` (or is blank).
    """
    if value is None or not value.strip():
        raise UserError(f"{option} is required: pass {option} or set {envvar}")
    return value


def option_source(ctx: typer.Context, name: str) -> str | None:
    """Where parameter ``name`` came from: ``"COMMANDLINE"``, ``"ENVIRONMENT"``, or None for its
    default (not given at all). Compared by name: typer may bundle its own copy of click."""
    source = ctx.get_parameter_source(name)
    return source.name if source is not None and source.name in (COMMANDLINE, ENVIRONMENT) else None


def server_or_database(
    ctx: typer.Context, server: str | None, database_url: str, *, old_database: str | None = None
) -> tuple[str | None, str | None]:
    """``(server, None)`` or ``(None, database_url)``: which of the two the user chose.

    An option on the command line wins over an environment variable of the other kind (so that
    ``GPNAS_DATABASE_URL``, set for ``gpnas serve``, does not stop ``--server`` from working).
    ``old_database`` is the value of a command's deprecated ``--database`` alias, if given.

    Raises:
        UserError: Both are on the command line, both only in the environment, or neither is given.
    """
    server_from = None if server is None else option_source(ctx, "server")
    database_from = option_source(ctx, "database_url")
    if old_database is not None:
        if database_from == COMMANDLINE:
            raise UserError("give --database-url once (--database is its deprecated old name)")
        database_url, database_from = old_database, COMMANDLINE
    if server_from is not None and database_from is not None:
        if server_from == database_from == COMMANDLINE:
            raise UserError("give either --server or --database-url, not both")
        if server_from == database_from:  # both from the environment
            raise UserError(
                "both GPNAS_SERVER and GPNAS_DATABASE_URL are set: choose one with "
                "--server URL or --database-url URL"
            )
        if server_from == COMMANDLINE:
            database_from = None
        else:
            server_from = None
    if server_from is not None:
        return server, None
    if database_from is not None:
        return None, database_url
    raise UserError(
        "say where the data is: --server URL (or GPNAS_SERVER) for a running service, or "
        "--database-url URL (or GPNAS_DATABASE_URL) to read a database directly"
    )


@contextmanager
def database_session(database_url: str, write: bool = False) -> Iterator[Session]:
    """A session on the migrated database of ``--database-url``; a database that is not migrated
    is a UserError (one ``error:`` line saying to run ``gpnas db upgrade``)."""
    from search_service.core import check_schema, make_engine, make_sessionmaker, require_database

    try:
        require_database(database_url)
    except RuntimeError as error:
        raise UserError(str(error)) from None
    engine = make_engine(database_url)
    try:
        try:
            check_schema(engine)
        except RuntimeError as error:
            raise UserError(str(error)) from None
        with make_sessionmaker(engine, write=write)() as session:
            yield session
    finally:
        engine.dispose()


@contextmanager
def api_client(
    server: str | None, token: str | None, database: str | None, *, as_admin: bool = False
) -> Iterator[GpnasClient]:
    """The typed client of a running server (``server``), or of the app built in-process on
    ``database`` (no server needed; the CLI's start stays fast), so a command prints exactly what
    the API answers either way.

    ``as_admin``: in process, the app runs with authentication off, for the admin commands that
    write through the routes (``gpnas device add``, ``gpnas measurements upload``): whoever opens
    the database holds every right already (as with ``gpnas token create``), and every other rule
    of the routes still applies. Against a server, ``token`` says who the caller is.

    Raises:
        UserError: The database does not exist or is not migrated.
    """
    from search_service.client import GpnasClient

    if server is not None:
        with GpnasClient(server, token, max_retries=2, backoff=0.25) as api:
            yield api
        return
    from fastapi.testclient import TestClient

    from search_service.core import SchemaOutdatedError, Settings
    from search_service.main import create_app

    assert database is not None
    try:
        settings = Settings(database_url=database, refit_worker=False)
        app = create_app(settings.model_copy(update={"auth": False}) if as_admin else settings)
    except SchemaOutdatedError as error:
        raise UserError(str(error)) from None
    try:
        with GpnasClient("http://gpnas.local", http=TestClient(app), max_retries=0) as api:
            yield api
    finally:
        app.state.engine.dispose()


def validated(model: type[M], data: dict[str, Any]) -> M:
    """``model`` built from ``data``; its first validation error as one UserError line
    (``field: reason``), like the API's 422 names it."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise UserError(f"{where + ': ' if where else ''}{first['msg']}") from None


def run_console_app(app: typer.Typer, debug: Callable[[], bool] = lambda: False) -> None:
    """Run ``app`` as a console script: a :class:`~search_service.errors.UserError` becomes one
    error line and exit status 2 (its traceback when ``debug()`` says so); any other exception is
    a bug and keeps its traceback."""
    try:
        app()
    except UserError as error:
        if debug():
            raise
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
