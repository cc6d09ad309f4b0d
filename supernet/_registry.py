"""Named search-space presets."""

from __future__ import annotations

from collections.abc import Callable

from ._cells import FBNetSpace, NASBench201Space
from ._space import SearchSpace
from ._ufo import MULTIPATH_TASKS, MultipathSpace, Track2Space

_PRESETS: dict[str, Callable[[], SearchSpace]] = {
    "ufo-track2": Track2Space,
    "ufo2-multipath": lambda: MultipathSpace(MULTIPATH_TASKS),
    "fbnet": FBNetSpace,
    "nasbench201": NASBench201Space,
}
_CACHE: dict[str, SearchSpace] = {}


def list_spaces() -> list[str]:
    """Names of the preset search spaces."""
    return list(_PRESETS)


def get_space(name: str) -> SearchSpace:
    """The preset search space called ``name``.

    Raises:
        ValueError: If no preset has that name.
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown space {name!r}; known spaces: {', '.join(_PRESETS)}")
    if name not in _CACHE:
        _CACHE[name] = _PRESETS[name]()
    return _CACHE[name]
