"""A package's heavy modules, imported on first use of one of their names (PEP 562).

``supernet`` and ``profilers`` keep their public names in one ``__all__`` but import the modules
that need torch only when one of those names is used, so that the search spaces, the client and
the device agent run on machines without torch. Each package imports those names under
``TYPE_CHECKING`` for readers and type checkers, and at run time sets::

    if not TYPE_CHECKING:
        __getattr__ = lazy_attributes(__name__, _TORCH_MODULES, __all__)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
from typing import Any

_MISSING = object()


def lazy_attributes(package: str, modules: Sequence[str], names: Collection[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that finds each of ``names`` in ``modules``.

    Args:
        package: The package's ``__name__``.
        modules: Its submodules to look in, relative (``"._torch"``), in order.
        names: The names it exports (its ``__all__``); others raise :class:`AttributeError`.

    Returns:
        The function to bind as the package's ``__getattr__``. It caches each name it resolves
        in the package's namespace, so later lookups do not call it again.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            for module in modules:
                imported = importlib.import_module(module, package)
                value = getattr(imported, name, _MISSING)
                if value is not _MISSING:
                    setattr(importlib.import_module(package), name, value)
                    return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
