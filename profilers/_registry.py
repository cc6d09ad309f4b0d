"""Profiler registry: the entry-point group ``gpnas.profilers``.

Built-in profilers are registered there by gpnas' own ``pyproject.toml``, exactly as a third-party
chip package registers its own (``[project.entry-points."gpnas.profilers"] my-chip =
"pkg.module:Class"``), so both are found the same way.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from supernet import SearchSpace

from ._base import Profiler
from ._local import LocalConfig

ENTRY_POINT_GROUP = "gpnas.profilers"


def _entry_points() -> dict[str, EntryPoint]:
    # Re-read on every call: a distribution installed while the process runs (a plug-in, a test's
    # temporary dist-info on sys.path) must be visible without a restart.
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


def available_profilers() -> list[str]:
    """Sorted names of every registered profiler (built-in and plug-in)."""
    return sorted(_entry_points())


def get_profiler_class(name: str) -> type[Profiler]:
    """The profiler class registered as ``name``.

    Raises:
        ValueError: If no profiler has that name (the message lists the known ones), or the
            entry point does not load a :class:`~profilers.Profiler` subclass.
    """
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is gpnas installed? pip install -e .)"
        raise ValueError(f"unknown profiler {name!r}; known profilers: {known}")
    try:
        cls = eps[name].load()
    except (ImportError, AttributeError) as error:
        raise ValueError(f"profiler {name!r} ({eps[name].value}) failed to load: {error}") from error
    if not (isinstance(cls, type) and issubclass(cls, Profiler)):
        raise ValueError(f"profiler {name!r} ({eps[name].value}) is not a profilers.Profiler subclass")
    return cls


def validate_settings(name: str, settings: dict[str, Any], portable: bool = True) -> dict[str, Any]:
    """Check a device's ``settings`` for profiler ``name`` without touching hardware.

    ``portable`` (the default) also requires ``file`` settings to be relative paths inside a
    data directory, as settings stored by a server must be.

    Returns:
        The complete settings (converted values plus defaults).

    Raises:
        ValueError: Unknown profiler, unknown setting or bad value, named in the message.
    """
    return get_profiler_class(name).validate_settings(settings, portable)


def create_profiler(
    name: str, space: SearchSpace, *, local: LocalConfig | None = None, **settings: Any
) -> Profiler:
    """Instantiate the profiler registered as ``name`` for ``space`` with ``settings``.

    ``local`` says what file and callable names in the settings refer to on this machine.

    Raises:
        ValueError: Unknown profiler, unknown setting or bad value.
        ProfilerUnavailableError: The profiler's hardware or runtime is missing here.
    """
    return get_profiler_class(name)(space, local=local, **settings)
