"""Search spaces by name: the built-in presets, spaces registered in this process, and a source.

A *source* (:class:`SpaceSource`, installed with :func:`set_space_source`) holds spaces defined as
data somewhere other processes can see them too: the service installs one that reads its
``spaces`` table, so a space registered through one API process is found by ``get_space`` in every
other API process, worker and CLI command on the same database. Spaces from the source are
cached; one whose tasks grew since is read again with :func:`reload_space` (a definition only ever
gains tasks, and nothing else about a space depends on them, so a cached copy is otherwise exact).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ._cells import FBNetSpace, NASBench201Space
from ._definition import NAME_PATTERN, SpaceDefinition, space_from_definition
from ._space import SearchSpace
from ._ufo import MULTIPATH_TASKS, MultipathSpace, Track2Space

_PRESETS: dict[str, Callable[[], SearchSpace]] = {
    "ufo-track2": Track2Space,
    "ufo2-multipath": lambda: MultipathSpace(MULTIPATH_TASKS),
    "fbnet": FBNetSpace,
    "nasbench201": NASBench201Space,
}
_CACHE: dict[str, SearchSpace] = {}
#: Spaces registered in this process or read from the source (never a preset).
_DEFINED: dict[str, SearchSpace] = {}
# Names the source did not know, with when it said so: a burst of look-ups of one unknown name
# (a batch of 10,000 measurements of it) asks the source once, not once per item.
_MISSES: dict[str, float] = {}
# (space, task) pairs the source lacked too, with when: see space_with_task.
_TASK_MISSES: dict[tuple[str, str], float] = {}
MISS_TTL_S = 1.0
# What a defined space can be called (SpaceDefinition.name): other names are not asked of the
# source at all, which might not even be able to compare them (NUL in a PostgreSQL query).
_DEFINABLE = re.compile(NAME_PATTERN)
_LOCK = threading.RLock()


class SpaceSource(Protocol):
    """Where defined spaces live beyond this process (e.g. the service's database)."""

    def load(self, name: str) -> SpaceDefinition | None:
        """The definition of the space called ``name``, or None if there is none."""

    def names(self) -> list[str]:
        """Every space name the source holds."""


_SOURCE: SpaceSource | None = None


def is_preset(name: str) -> bool:
    """Whether ``name`` is one of the built-in presets (which cannot be registered over)."""
    return name in _PRESETS


def preset_names() -> list[str]:
    """Names of the preset search spaces, in their fixed order."""
    return list(_PRESETS)


def list_spaces() -> list[str]:
    """Names of every known space: the presets first, then the defined ones (sorted).

    Defined spaces are those registered in this process and those of the installed source.
    """
    with _LOCK:
        defined = set(_DEFINED)
        source = _SOURCE
    if source is not None:
        defined.update(source.names())
    return list(_PRESETS) + sorted(defined - set(_PRESETS))


def get_space(name: str) -> SearchSpace:
    """The search space called ``name``: a preset, a space registered here, or one of the source.

    Raises:
        ValueError: If no space has that name.
    """
    if name in _PRESETS:
        if name not in _CACHE:
            with _LOCK:
                _CACHE.setdefault(name, _PRESETS[name]())
        return _CACHE[name]
    space = _DEFINED.get(name)
    if space is not None:
        return space
    with _LOCK:
        space = _DEFINED.get(name)
        if space is None:
            missed = _MISSES.get(name)
            if missed is None or time.monotonic() - missed > MISS_TTL_S:
                space = _load(name)
    if space is None:
        # Names known here only: asking the source for all its names on every miss would cost a
        # query per bad item of a batch.
        known = [*_PRESETS, *sorted(_DEFINED)]
        raise ValueError(f"unknown space {name!r}; known spaces: {', '.join(known)}")
    return space


def reload_space(name: str) -> SearchSpace:
    """``name``'s space read again from the source (e.g. after a task was added elsewhere).

    A preset, or a space registered in this process and unknown to the source, is returned as is.

    Raises:
        ValueError: If no space has that name.
    """
    if name in _PRESETS:
        return get_space(name)
    with _LOCK:
        space = _load(name)
        if space is not None:
            return space
    return get_space(name)


def space_with_task(name: str, task: str) -> SearchSpace:
    """``name``'s space, read again from the source if it lacks ``task`` (which another process
    may have added since this one read it). Whether the task is then known is the caller's check.

    A task the source lacks too is remembered for :data:`MISS_TTL_S`, so that a batch naming it
    thousands of times asks the source once.

    Raises:
        ValueError: If no space has that name.
    """
    space = get_space(name)
    if task in space.tasks or name in _PRESETS:
        return space
    key = (name, task)
    missed = _TASK_MISSES.get(key)
    if missed is not None and time.monotonic() - missed <= MISS_TTL_S:
        return space
    space = reload_space(name)
    if task not in space.tasks:
        with _LOCK:
            _TASK_MISSES[key] = time.monotonic()
    return space


def _load(name: str) -> SearchSpace | None:
    """Read ``name`` from the source into the cache (caller holds the lock)."""
    if _SOURCE is None or len(name) > 64 or not _DEFINABLE.fullmatch(name):
        return None
    definition = _SOURCE.load(name)
    if definition is None:
        _MISSES[name] = time.monotonic()
        return None
    space = space_from_definition(definition)
    _DEFINED[name] = space
    _MISSES.pop(name, None)
    return space


def register_space(space: SearchSpace | SpaceDefinition, *, replace: bool = False) -> SearchSpace:
    """Make ``space`` (or the space a definition describes) known to :func:`get_space` here.

    Only this process sees it; to share a space, store its definition where the installed source
    reads (the service's ``POST /v1/spaces`` or ``gpnas spaces add``).

    Args:
        space: The space, or its definition.
        replace: Replace a space of the same name registered before (e.g. with a task more).

    Returns:
        The registered space.

    Raises:
        ValueError: ``space`` is named like a preset, or like a registered space and not
            ``replace``.
    """
    built = space_from_definition(space) if isinstance(space, SpaceDefinition) else space
    if built.name in _PRESETS:
        raise ValueError(f"space {built.name!r} is a preset; presets are built in and cannot be replaced")
    with _LOCK:
        if not replace and built.name in _DEFINED:
            raise ValueError(f"space {built.name!r} is registered already")
        _DEFINED[built.name] = built
        _MISSES.pop(built.name, None)
    return built


def unregister_space(name: str) -> None:
    """Forget a space registered (or read from the source) in this process; presets stay."""
    with _LOCK:
        _DEFINED.pop(name, None)


def set_space_source(source: SpaceSource | None) -> SpaceSource | None:
    """Install ``source`` as where :func:`get_space` looks for names it does not know (None: none).

    One process reads one source: the spaces cached from the previous one (and those registered
    in this process) are forgotten, since they need not exist in the new one.

    Returns:
        The source installed before.
    """
    global _SOURCE
    with _LOCK:
        previous, _SOURCE = _SOURCE, source
        _DEFINED.clear()
        _MISSES.clear()
        _TASK_MISSES.clear()
    return previous


def space_source() -> SpaceSource | None:
    """The installed source, or None."""
    return _SOURCE
