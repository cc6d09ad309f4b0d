"""``gpnas spaces``: list the presets and show one as JSON."""

from __future__ import annotations

import json

import typer

from supernet import get_space, list_spaces


def register(app: typer.Typer) -> None:
    spaces = typer.Typer(help="List search spaces, or show one as JSON.", invoke_without_command=True)

    @spaces.callback()
    def _list(ctx: typer.Context) -> None:
        """List the preset search spaces with their cardinality."""
        if ctx.invoked_subcommand is None:
            for name in list_spaces():
                space = get_space(name)
                typer.echo(f"{name:16s} {space.cardinality:>30d}  tasks: {', '.join(space.tasks) or '-'}")

    @spaces.command("show")
    def _show(name: str) -> None:
        """Print NAME's description as JSON (cardinality as a decimal string)."""
        typer.echo(json.dumps(get_space(name).describe(), indent=2))

    app.add_typer(spaces, name="spaces")
