"""The ``gpnas`` command line (and ``gpnas-agent``, its agent command alone).

The app and its commands are imported on first use of ``app`` or ``main``, so that a command
module (``search_service.cli._agent``, behind ``gpnas-agent``) imports without every other
command's dependencies: torch, the predictors and the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supernet.lazy import lazy_attributes

if TYPE_CHECKING:
    from ._app import app, main

__all__ = ["app", "main"]

if not TYPE_CHECKING:  # type checkers read the import above instead
    __getattr__ = lazy_attributes(__name__, ("._app",), __all__)
