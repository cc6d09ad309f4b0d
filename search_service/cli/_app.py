"""The ``gpnas`` app. Each sub-module registers its own commands on it."""

from __future__ import annotations

import typer

from . import (
    _agent,
    _db,
    _demo,
    _deploy,
    _device,
    _export,
    _import,
    _measurements,
    _pareto,
    _predict,
    _profile,
    _query,
    _serve,
    _spaces,
    _suggest,
    _supernets,
    _token,
    _train,
    _worker,
)
from ._options import run_console_app

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
    _supernets,
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
    _device,
    _measurements,
    _pareto,
    _deploy,
    _train,
    _demo,
):
    _module.register(app)


def main() -> None:
    """The ``gpnas`` console script: a :class:`~search_service.errors.UserError` becomes one
    error line and exit status 2 (with ``gpnas --debug``, its traceback)."""
    run_console_app(app, debug=lambda: _debug)
