"""``gpnas supernets``: register a space's supernet weights (a safetensors checkpoint), list them.

Like ``gpnas spaces``, the commands reach a running service (``--server``, an admin ``--token``)
or the database directly (``--database-url``); registering in the database stores the file under
``GPNAS_DATA_DIR``, where the server on that database finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..errors import UserError
from ._options import (
    DEFAULT_DATABASE_URL,
    DatabaseUrlOption,
    ServerOption,
    TokenOption,
    api_client,
    database_session,
    server_or_database,
)
from ._spaces import _ask, _definition

if TYPE_CHECKING:
    from search_service.schemas import SupernetPublic


def _describe(row: SupernetPublic) -> str:
    return f"{row.space} v{row.version} sha256 {row.sha256} ({row.size} bytes)"


def _add_to_database(database: str, space_name: str, checkpoint: Path) -> tuple[SupernetPublic, bool]:
    """Register ``checkpoint`` in ``database``, the file stored under ``GPNAS_DATA_DIR``."""
    from search_service.core import Settings
    from search_service.errors import ServiceError
    from search_service.schemas import SupernetPublic
    from search_service.services import supernets as supernet_service
    from supernet import space_from_definition

    space = space_from_definition(_definition(space_name, None, None, database))
    try:
        folder = supernet_service.supernets_dir(Settings().data_dir)
        with (
            database_session(database, write=True) as session,
            supernet_service.UploadFile(folder) as upload,
        ):
            with checkpoint.open("rb") as source:
                upload.copy_from(source)
            row, created = supernet_service.register_supernet(session, space, upload.finish(), folder)
            session.commit()
            return SupernetPublic.model_validate(row), created
    except ServiceError as error:
        raise UserError(error.message) from None


def register(app: typer.Typer) -> None:
    supernets = typer.Typer(help="Supernet weights: register a checkpoint of a space, list them.")

    @supernets.command("add")
    def _add(
        ctx: typer.Context,
        file: Path = typer.Argument(..., help="A safetensors file of the supernet's state_dict."),
        space: str = typer.Option(..., "--space", help="The space whose supernet the weights are."),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Register FILE as the next version of SPACE's supernet weights, on --server (an admin
        token) or in --database-url (the file is stored under GPNAS_DATA_DIR). The file is checked
        against the space's supernet (every key and shape); the same bytes again are the version
        they already are."""
        if not file.is_file():
            raise UserError(f"{file}: no such file")
        server, database = server_or_database(ctx, server, database_url)
        if server is not None:
            row = _ask(server, token, lambda api: api.create_supernet(space, file))
            typer.echo(f"registered supernet {_describe(row)}")
            return
        assert database is not None
        row, created = _add_to_database(database, space, file)
        typer.echo(f"{'registered' if created else 'already registered:'} supernet {_describe(row)}")

    @supernets.command("list")
    def _list(
        ctx: typer.Context,
        space: str | None = typer.Option(None, "--space", help="Only this space's weights."),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """List the registered supernet weights (of --space), by space and version."""
        server, database = server_or_database(ctx, server, database_url)
        with api_client(server, token, database) as api:
            rows = api.list_supernets(space)
        for row in rows:
            typer.echo(f"{_describe(row)}  {row.created_at:%Y-%m-%d %H:%M:%S}")

    app.add_typer(supernets, name="supernets")
