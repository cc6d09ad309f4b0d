"""In-memory cache of decoded stored fronts, so that /v1/query and /v1/pareto answer without decoding.

Two levels: which front id is the newest for (space, task, device) — trusted for
``front_cache_s`` seconds, then re-checked with one indexed read — and the decoded fronts by id
(immutable once stored, so they never go stale; the least recently used are dropped).

The cache reads the stored fronts through :class:`StoredFrontReads`, which the caller passes
(the service's repositories implement it over a database session): the search knows no database.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ._codec import decode_front
from ._result import FrontResult


@dataclass(frozen=True)
class LoadedFront:
    """A stored front, decoded.

    Attributes:
        id: Its row id in ``fronts``.
        version: Its version among the fronts of its (space, task, device).
        result: The front and its budget-query candidates.
    """

    id: int
    version: int
    result: FrontResult


class StoredFrontReads(Protocol):
    """The two reads of the stored fronts that the cache needs."""

    def latest_front_id(self, space: str, task: str, device: str) -> tuple[int, int] | None:
        """``(id, version)`` of the newest stored front of (space, task, device), or None."""
        ...

    def front_data(self, front_id: int) -> bytes:
        """The encoded front (:func:`encode_front`) stored under ``front_id``."""
        ...


class FrontCache:
    """Thread-safe cache of the newest front per (space, task, device).

    Args:
        ttl_s: How long the newest-version lookup is trusted.
        max_fronts: How many decoded fronts to keep.
        clock: Seconds of a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self, ttl_s: float = 1.0, max_fronts: int = 64, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_fronts = max_fronts
        self._clock = clock
        self._latest: dict[tuple[str, str, str], tuple[tuple[int, int] | None, float]] = {}
        self._fronts: OrderedDict[int, LoadedFront] = OrderedDict()
        self._lock = threading.Lock()
        self._refreshing: set[tuple[str, str, str]] = set()

    def peek(self, space: str, task: str, device: str) -> LoadedFront | None:
        """The cached front without I/O, or None when the caller must call :meth:`get`.

        When the lookup has gone stale, only the first caller gets None (and refreshes it through
        :meth:`get`); the others keep getting the cached front meanwhile, so a burst of queries
        does not turn into a burst of database reads each time the lookup expires.
        """
        key = (space, task, device)
        with self._lock:
            cached = self._latest.get(key)
            if cached is None or cached[0] is None:
                return None
            loaded = self._fronts.get(cached[0][0])
            if loaded is None:
                return None
            if self._clock() - cached[1] > self.ttl_s and key not in self._refreshing:
                self._refreshing.add(key)
                return None
            return loaded

    def get(self, reads: StoredFrontReads, space: str, task: str, device: str) -> LoadedFront | None:
        """The newest front of (space, task, device), read through ``reads`` when not cached, or
        None when none is stored."""
        key = (space, task, device)
        try:
            return self._get(reads, key)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _get(self, reads: StoredFrontReads, key: tuple[str, str, str]) -> LoadedFront | None:
        space, task, device = key
        now = self._clock()
        with self._lock:
            cached = self._latest.get(key)
        if cached is None or now - cached[1] > self.ttl_s:
            latest = reads.latest_front_id(space, task, device)
            with self._lock:
                self._latest[key] = (latest, now)
        else:
            latest = cached[0]
        if latest is None:
            return None
        front_id, version = latest
        with self._lock:
            loaded = self._fronts.get(front_id)
            if loaded is not None:
                self._fronts.move_to_end(front_id)
                return loaded
        loaded = LoadedFront(front_id, version, decode_front(reads.front_data(front_id), space, task))
        with self._lock:
            self._fronts[front_id] = loaded
            while len(self._fronts) > self.max_fronts:
                self._fronts.popitem(last=False)
        return loaded

    def forget(self) -> None:
        """Drop the newest-version lookups (after a refit in this process)."""
        with self._lock:
            self._latest.clear()
