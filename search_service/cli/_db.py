"""Placeholder: the owner of this module fills in its commands."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
