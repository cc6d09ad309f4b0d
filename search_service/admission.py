"""Admission control: work a request computes (deployment searches, campaign selection, waited-for
refits) goes through one bounded queue, so no client can make the API stall the others.

A heavy request is admitted or refused at once, never parked on a thread:

* each caller (a token; all anonymous callers together) has a budget of requests in flight,
  queued or running; one more gets 429 with ``Retry-After``;
* the queue holds at most ``heavy_queue`` pieces of work; when full the answer is 503 with
  ``Retry-After`` (an estimate from the recent durations);
* at most ``heavy_concurrency`` pieces run at once, on threads of their own, so the threads that
  answer cheap reads (``/healthz``, cached ``/v1/query``, ``/v1/pareto``) are never taken;
* waiting is asynchronous and ends when the client disconnects; queued work nobody waits for any
  more is dropped (work already running finishes and stores its answer for the next caller);
* requests for the same piece of work (one deployment query on the same predictors, say) share
  one run.

All bookkeeping happens on the event loop's thread, so it needs no lock.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from .errors import ServiceError, TooManyRequestsError, UnavailableError

T = TypeVar("T")

ANONYMOUS = "anonymous"

# The OpenAPI answers of a route whose work goes through the queue.
ADMISSION_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"description": "The caller has its budget of heavy requests in flight (Retry-After)"},
    503: {"description": "The server's queue of heavy work is full, or no worker answered (Retry-After)"},
}

# How often a waiting request checks whether its client is still there.
_DISCONNECT_POLL_S = 0.25
# Weight of the newest duration in the running estimate behind Retry-After.
_DURATION_WEIGHT = 0.2


class ClientDisconnectedError(ServiceError):
    """The client went away while its request waited: nobody reads the answer."""

    # nginx's "client closed request": logged, never seen by the client.
    status_code = 499


def _shutting_down() -> UnavailableError:
    return UnavailableError("the server is shutting down; retry", retry_after_s=5.0)


class Connection(Protocol):
    """What admission needs of a request: whether its client is still connected (Starlette's
    :class:`~starlette.requests.Request` has it)."""

    async def is_disconnected(self) -> bool: ...


@dataclass(eq=False)
class _Work:
    """One piece of admitted work and the requests waiting for it."""

    key: str
    run: Callable[[], Any]
    done: asyncio.Future[Any]
    waiters: int = 0
    started: bool = False
    enqueued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class AdmissionStats:
    """What the queue holds now (for ``/healthz`` and tests)."""

    queued: int
    running: int
    dropped: int
    refused: int


class Admission:
    """The bounded queue of heavy work of one API process.

    Args:
        concurrency: Pieces of work run at once (threads of their own).
        queue_size: Pieces of work waiting to run, at most; more is refused with 503.
        per_token: Requests in flight (queued or running) per token, at most; more get 429.
        anonymous: Requests in flight of all anonymous callers together, at most.
        queue_wait_s: A piece of work that has not started after this long is dropped and its
            requests get 503 (the queue is not moving).
        clock: Monotonic seconds (tests inject one).
    """

    def __init__(
        self,
        concurrency: int,
        queue_size: int,
        per_token: int,
        anonymous: int,
        queue_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.per_token = per_token
        self.anonymous = anonymous
        self.queue_wait_s = queue_wait_s
        self._clock = clock
        # Made on first use and again after close(): an app may be started and stopped repeatedly
        # (each lifespan of a test client).
        self._executor: ThreadPoolExecutor | None = None
        self._queue: collections.deque[_Work] = collections.deque()
        self._by_key: dict[str, _Work] = {}
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._running = 0
        self._dropped = 0
        self._refused = 0
        self._typical_s = 1.0
        self._unique = itertools.count()

    # ------------------------------------------------------------------------------ public
    async def run(
        self,
        caller: str,
        run: Callable[[], T],
        *,
        key: str | None = None,
        connection: Connection | None = None,
    ) -> T:
        """Run ``run`` on a heavy-work thread once admitted; its result (or its exception).

        Args:
            caller: Whose budget the request counts against: ``token <id>`` or :data:`ANONYMOUS`.
            run: The work; called on another thread.
            key: Requests with the same key share one run (default: a run of its own).
            connection: The request; waiting stops when its client disconnects.

        Raises:
            TooManyRequestsError: ``caller`` has its budget of requests in flight.
            UnavailableError: The queue is full, or the work did not start within
                ``queue_wait_s``.
            ClientDisconnectedError: The client went away before the answer was ready.
        """
        budget = self.anonymous if caller == ANONYMOUS else self.per_token
        if self._in_flight[caller] >= budget:
            self._refused += 1
            who = "anonymous callers" if caller == ANONYMOUS else "this token"
            raise TooManyRequestsError(
                f"{who} already have {budget} heavy requests in flight (the most allowed); "
                "retry when one has answered",
                retry_after_s=self._retry_after_s(),
            )
        work = self._by_key.get(key) if key is not None else None
        if work is None:
            if self._running >= self.concurrency and len(self._queue) >= self.queue_size:
                self._refused += 1
                raise UnavailableError(
                    f"this server is busy: {len(self._queue)} heavy requests are waiting (the most "
                    "it queues); retry later",
                    retry_after_s=self._retry_after_s(),
                )
            loop = asyncio.get_running_loop()
            key = key or f"unique/{next(self._unique)}"
            work = _Work(key, run, loop.create_future(), enqueued_at=self._clock())
            self._by_key[work.key] = work
            self._queue.append(work)
        work.waiters += 1
        self._in_flight[caller] += 1
        try:
            self._start_next()
            result: T = await self._wait(work, connection)
            return result
        finally:
            work.waiters -= 1
            self._in_flight[caller] -= 1
            if self._in_flight[caller] == 0:
                del self._in_flight[caller]
            if work.waiters == 0 and not work.started:
                self._drop(work)

    def stats(self) -> AdmissionStats:
        return AdmissionStats(
            queued=len(self._queue), running=self._running, dropped=self._dropped, refused=self._refused
        )

    def close(self) -> None:
        """Drop the queued work (its requests get 503); running work finishes on its threads."""
        for work in list(self._queue):
            self._drop(work)
            if not work.done.done():
                work.done.set_exception(_shutting_down())
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ------------------------------------------------------------------------------ internals
    async def _wait(self, work: _Work, connection: Connection | None) -> Any:
        while True:
            # asyncio.wait leaves the shared future alone when this waiter stops waiting.
            done, _ = await asyncio.wait({work.done}, timeout=_DISCONNECT_POLL_S)
            if done:
                return work.done.result()
            if connection is not None and await connection.is_disconnected():
                raise ClientDisconnectedError("the client disconnected")
            if not work.started and self._clock() - work.enqueued_at > self.queue_wait_s:
                raise UnavailableError(
                    f"this server is busy: the request waited {self.queue_wait_s:g} s without starting; "
                    "retry later",
                    retry_after_s=self._retry_after_s(),
                )

    def _drop(self, work: _Work) -> None:
        """Forget queued ``work`` that nobody waits for."""
        if work in self._queue:
            self._queue.remove(work)
            self._dropped += 1
        if self._by_key.get(work.key) is work:
            del self._by_key[work.key]

    def _start_next(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="gpnas-heavy")
        while self._running < self.concurrency and self._queue:
            work = self._queue.popleft()
            work.started = True
            self._running += 1
            began = self._clock()
            future = loop.run_in_executor(self._executor, work.run)
            future.add_done_callback(lambda f, w=work, t=began: self._finished(w, f, t))  # type: ignore[misc]

    def _finished(self, work: _Work, future: asyncio.Future[Any], began: float) -> None:
        self._running -= 1
        elapsed = max(0.0, self._clock() - began)
        self._typical_s += _DURATION_WEIGHT * (elapsed - self._typical_s)
        if self._by_key.get(work.key) is work:
            # Later requests for the key find the stored answer (or compute afresh).
            del self._by_key[work.key]
        if not work.done.done():
            if future.cancelled():
                work.done.set_exception(_shutting_down())
            elif future.exception() is not None:
                work.done.set_exception(future.exception())  # type: ignore[arg-type]
            else:
                work.done.set_result(future.result())
        # Nobody may be waiting any more; mark the exception retrieved so asyncio does not log it.
        if work.done.done() and not work.done.cancelled():
            work.done.exception()
        self._start_next()

    def _retry_after_s(self) -> float:
        """When the work queued now is likely to have run: its share of the slots, at the recent
        typical duration."""
        ahead = len(self._queue) + self._running
        return max(1.0, math.ceil(self._typical_s * ahead / self.concurrency))
