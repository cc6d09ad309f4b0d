"""The ``gpnas`` command line. Each sub-module registers its own commands on the app."""

from __future__ import annotations

import sys

import typer

from . import _agent, _db, _demo, _export, _pareto, _predict, _profile, _serve, _spaces, _suggest, _token

app = typer.Typer(
    name="gpnas",
    help="Hardware-aware subnet search: profile subnets, fit GP predictors, serve Pareto fronts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for _module in (_spaces, _export, _predict, _suggest, _profile, _agent, _db, _serve, _token, _pareto, _demo):
    _module.register(app)


def main() -> None:
    """Console-script entry point: ValueErrors become one error line and exit status 2."""
    try:
        app()
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
