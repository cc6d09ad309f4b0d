"""The ``gpnas`` command line. Each sub-module registers its own commands on the app."""

from __future__ import annotations

import sys

import typer

from ..errors import UserError
from . import (
    _agent,
    _db,
    _demo,
    _deploy,
    _export,
    _import,
    _pareto,
    _predict,
    _profile,
    _query,
    _serve,
    _spaces,
    _suggest,
    _token,
    _train,
    _worker,
)

app = typer.Typer(
    name="gpnas",
    help="Hardware-aware subnet search: profile subnets, fit GP predictors, serve Pareto fronts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_debug = False


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error, not one line."),
) -> None:
    global _debug
    _debug = debug


for _module in (
    _spaces,
    _export,
    _import,
    _predict,
    _suggest,
    _profile,
    _query,
    _agent,
    _db,
    _serve,
    _worker,
    _token,
    _pareto,
    _deploy,
    _train,
    _demo,
):
    _module.register(app)


def main() -> None:
    """Console-script entry point: a :class:`~search_service.errors.UserError` becomes one error
    line and exit status 2 (with ``gpnas --debug``, its traceback); any other exception is a bug
    and keeps its traceback."""
    try:
        app()
    except UserError as error:
        if _debug:
            raise
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
