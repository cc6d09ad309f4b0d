"""``gpnas spaces``: list the spaces, show one as a definition, register one, add a task to one.

Presets are built in and need neither a server nor a database. Registered spaces live in the
service's database: the commands reach them on a running service (``--server``, ``--token``) or in
the database directly (``--database-url``), like every other command (:mod:`._options`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from ..errors import UserError
from ._options import (
    DEFAULT_DATABASE_URL,
    DatabaseUrlOption,
    ServerOption,
    TokenOption,
    database_session,
    server_or_database,
)

if TYPE_CHECKING:
    from search_service.client import GpnasClient
    from search_service.schemas import SpaceDetail, SpaceSummary
    from supernet import SearchSpace, SpaceDefinition

T = TypeVar("T")


def space_help(server: bool = False) -> str:
    """Help of the --space option of a command that takes one; ``server``: the command has
    --server, where a registered space may also be found."""
    where = "on --server or in" if server else "in"
    return (
        "Search space: a preset (ufo-track2, ufo2-multipath, fbnet, nasbench201), a space registered "
        f"{where} GPNAS_DATABASE_URL's database, or a definition file (.yaml, .yml, .json)."
    )


def _ask(server: str, token: str | None, call: Callable[[GpnasClient], T]) -> T:
    """``call`` on a client of ``server``; its errors as one-line UserErrors."""
    from search_service.client import ClientError, GpnasClient

    with GpnasClient(server, token, max_retries=2, backoff=0.25) as api:
        try:
            return call(api)
        except ClientError as error:
            raise UserError(f"{server}: {error}") from None


def read_definition(path: str) -> SpaceDefinition:
    """The definition in file ``path`` (``-``: standard input), YAML or JSON.

    Raises:
        UserError: The file cannot be read, does not parse, or names a bad field.
    """
    from supernet import SpaceDefinition

    if path == "-":
        return SpaceDefinition.from_text(sys.stdin.read())
    try:
        return SpaceDefinition.read(path)
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None


def resolve_space(value: str, server: str | None = None, token: str | None = None) -> SearchSpace:
    """The space a command's ``--space`` names, as :func:`space_help` says: a definition file, a
    preset, a space registered on ``server`` (if given) or in the database of
    ``GPNAS_DATABASE_URL`` (if set).

    Raises:
        UserError: None of those knows it (the message of ``supernet.get_space``), or the file
            or the database cannot be read.
    """
    import supernet

    if value.endswith((".yaml", ".yml", ".json")) or os.sep in value:
        return supernet.space_from_definition(read_definition(value))
    if supernet.is_preset(value):
        return supernet.get_space(value)
    if server is not None:
        return supernet.space_from_definition(
            _ask(server, token, lambda api: api.get_space_definition(value))
        )
    database = os.environ.get("GPNAS_DATABASE_URL")
    if database:
        from sqlalchemy.exc import SQLAlchemyError

        from search_service.services.spaces import UrlSpaceSource

        source = UrlSpaceSource(database)
        try:
            definition = source.load(value)
        except SQLAlchemyError as error:
            raise UserError(
                f"cannot read the spaces of GPNAS_DATABASE_URL ({error.__class__.__name__}: "
                f"{str(error).splitlines()[0]}); is it migrated (gpnas db upgrade)?"
            ) from None
        finally:
            source.close()
        if definition is not None:
            return supernet.space_from_definition(definition)
    try:
        return supernet.get_space(value)
    except ValueError as error:  # naming the known spaces; the name came from the command line
        raise UserError(str(error)) from error


def _summaries(server: str | None, token: str | None, database: str | None) -> list[SpaceSummary]:
    import supernet
    from search_service.schemas import SpaceSummary
    from search_service.services.spaces import SqlSpaceSource

    if server is not None:
        return _ask(server, token, lambda api: api.list_spaces())
    spaces = [supernet.get_space(name) for name in supernet.preset_names()]
    if database is not None:
        with database_session(database) as session:
            source = SqlSpaceSource(lambda: session_context(session))
            definitions = [source.load(name) for name in source.names()]
        spaces += [supernet.space_from_definition(d) for d in definitions if d is not None]
    return [
        SpaceSummary.model_validate({**s.describe(), "preset": supernet.is_preset(s.name)}) for s in spaces
    ]


@contextmanager
def session_context(session: Any) -> Iterator[Any]:
    """``session`` as a context manager that leaves it open (one session for several reads)."""
    yield session


def _definition(name: str, server: str | None, token: str | None, database: str | None) -> SpaceDefinition:
    """``name``'s definition: a preset's, or a registered space's from the server or database."""
    import supernet
    from search_service.services.spaces import SqlSpaceSource

    if supernet.is_preset(name):
        return supernet.get_space(name).to_definition()
    if server is not None:
        return _ask(server, token, lambda api: api.get_space_definition(name))
    assert database is not None
    with database_session(database) as session:
        definition = SqlSpaceSource(lambda: session_context(session)).load(name)
    if definition is None:
        raise UserError(
            f"unknown space {name!r} in {database}; presets: {', '.join(supernet.preset_names())}"
        )
    return definition


def _print_summary(space: SpaceDetail | SpaceSummary, what: str) -> None:
    tasks = ", ".join(space.tasks) or "-"
    typer.echo(f"{what} {space.name}: {space.cardinality} subnets, tasks: {tasks}")


def register(app: typer.Typer) -> None:  # noqa: C901 - one closure per command
    spaces = typer.Typer(
        help="Search spaces: list them, show one as a definition, register one, add a task.",
        invoke_without_command=True,
    )

    @spaces.callback()
    def _presets(ctx: typer.Context) -> None:
        """List the preset search spaces with their cardinality (`gpnas spaces list` adds the
        registered ones)."""
        if ctx.invoked_subcommand is None:
            from supernet import get_space, preset_names

            for name in preset_names():
                space = get_space(name)
                typer.echo(f"{name:16s} {space.cardinality:>30d}  tasks: {', '.join(space.tasks) or '-'}")

    @spaces.command("list")
    def _list(
        ctx: typer.Context,
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """List the presets and the spaces registered on --server or in --database-url."""
        server, database = server_or_database(ctx, server, database_url)
        for space in _summaries(server, token, database):
            kind = "preset" if space.preset else "registered"
            tasks = ", ".join(space.tasks) or "-"
            typer.echo(f"{space.name:16s} {int(space.cardinality):>30d}  {kind:10s}  tasks: {tasks}")

    @spaces.command("show")
    def _show(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="A preset, or a space registered on the server or database."),
        output: str = typer.Option(
            "json", "--format", help="json or yaml: the definition, as `gpnas spaces add` reads it."
        ),
        describe: bool = typer.Option(
            False,
            "--describe",
            help="Print the space's description instead (tasks, exact cardinality as a decimal "
            "string, depths, choices), as GET /v1/spaces/{space} answers.",
        ),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Print NAME's definition (JSON, or YAML with --format yaml), which `gpnas spaces add`
        accepts: a preset's as it is built in (register a copy under another name), a registered
        space's from --server or --database-url."""
        import supernet

        if output not in ("json", "yaml"):
            raise UserError(f"--format {output!r}: give json or yaml")
        server_, database = None, None
        if not supernet.is_preset(name):
            try:
                server_, database = server_or_database(ctx, server, database_url)
            except ValueError as error:
                raise UserError(
                    f"unknown space {name!r}; known spaces: {', '.join(supernet.preset_names())} (a "
                    f"registered space is read from --server or --database-url: {error})"
                ) from None
        definition = _definition(name, server_, token, database)
        if describe:
            space = supernet.space_from_definition(definition)
            described = {**space.describe(), "preset": supernet.is_preset(name)}
            typer.echo(json.dumps(described, indent=2))
        else:
            typer.echo(
                definition.to_yaml() if output == "yaml" else definition.to_json(), nl=output == "json"
            )

    @spaces.command("add")
    def _add(
        ctx: typer.Context,
        file: str = typer.Argument(..., help="The definition, YAML or JSON (`-`: standard input)."),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Register the space FILE defines, on --server (an admin token) or in --database-url; every
        command, route, profiler and predictor can use it from then on, like a preset."""
        definition = read_definition(file)
        server, database = server_or_database(ctx, server, database_url)
        if server is not None:
            detail = _ask(server, token, lambda api: api.create_space(definition))
            _print_summary(detail, "registered space")
            return
        assert database is not None
        from search_service.core import Settings
        from search_service.errors import ServiceError
        from search_service.services import spaces as space_service

        with database_session(database, write=True) as session:
            try:
                space = space_service.register_space(session, definition, Settings().max_encoding_width)
            except ServiceError as error:
                raise UserError(error.message) from None
            session.commit()
        tasks = ", ".join(space.tasks) or "-"
        typer.echo(f"registered space {space.name}: {space.cardinality} subnets, tasks: {tasks}")

    @spaces.command("add-task")
    def _add_task(
        ctx: typer.Context,
        space: str = typer.Argument(..., help="A registered space."),
        task: str = typer.Argument(..., help="The new task's name."),
        head: int | None = typer.Option(
            None, "--head", min=1, help="Width of the task's output head (UFO spaces; default: none)."
        ),
        metric: str = typer.Option(
            "top1",
            "--metric",
            help="The gpnas.metrics plug-in that scores the task where it is evaluated: top1, reid, "
            "verification, retrieval, or one the measuring machine defines.",
        ),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Add TASK to the registered SPACE without touching what is stored under it; its first
        scores borrow from the other tasks' under GPNAS_PREDICTOR_SCORE=gpnas-transfer."""
        from pydantic import ValidationError

        from supernet import TaskDefinition

        try:
            body = TaskDefinition(name=task, head=head, metric=metric)
        except ValidationError as error:
            first = error.errors()[0]
            raise UserError(f"{first['loc'][0]}: {first['msg']}") from None
        server, database = server_or_database(ctx, server, database_url)
        if server is not None:
            detail = _ask(server, token, lambda api: api.add_space_task(space, body))
            _print_summary(detail, "space")
            return
        assert database is not None
        from search_service.errors import ServiceError
        from search_service.services import spaces as space_service

        with database_session(database, write=True) as session:
            try:
                extended = space_service.add_task(session, space, body)
            except ServiceError as error:
                raise UserError(error.message) from None
            session.commit()
        tasks = ", ".join(extended.tasks)
        typer.echo(f"space {extended.name}: {extended.cardinality} subnets, tasks: {tasks}")

    app.add_typer(spaces, name="spaces")
