"""The gpnas search service: FastAPI app, SQLAlchemy models, migrations, refit worker and CLI.

``create_app``, ``Settings`` and ``SchemaOutdatedError`` are imported on first use, so that
``gpnas`` commands that need no web app (``gpnas spaces``, ``gpnas predict``) start quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import SchemaOutdatedError, Settings
    from .main import create_app

__all__ = ["SchemaOutdatedError", "Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .main import create_app

        return create_app
    if name in ("Settings", "SchemaOutdatedError"):
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module 'search_service' has no attribute {name!r}")
