"""Wall-time limits and a stop request for fits, searches and sampling, checked cooperatively.

A long computation cannot be killed from another thread, so the loops that make up every fit
(each L-BFGS loss evaluation, each botorch fit, each greedy pick) call :func:`check_time`: past
the deadline of the innermost :func:`time_limit` it raises :class:`TimeLimitError`; after
:func:`request_stop` (the process got SIGTERM) it raises :class:`StopRequestedError` in every
thread, so a server stops within one step of its work rather than after the fit.

Usage::

    with time_limit(120.0, "the fit of latency/pixel2"):
        model.fit(subnets, y)           # raises TimeLimitError after 120 s
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator

_deadline: contextvars.ContextVar[tuple[float, float, str] | None] = contextvars.ContextVar(
    "gpnas_deadline", default=None
)
_stop = threading.Event()


class TimeLimitError(RuntimeError):
    """The work ran past its wall-time limit. A RuntimeError: like a failed fit, retrying it on
    the same data cannot help."""


class StopRequestedError(Exception):
    """The process is stopping (:func:`request_stop`): the work was interrupted, not wrong, and
    is worth running again elsewhere or later."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str = "the computation") -> Iterator[None]:
    """Give the work inside ``seconds`` of wall time (an outer, earlier deadline still holds).

    Args:
        seconds: The limit.
        what: How the error names the work.
    """
    now = time.monotonic()
    outer = _deadline.get()
    deadline = (now + seconds, seconds, what)
    token = _deadline.set(deadline if outer is None or deadline[0] < outer[0] else outer)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_s() -> float | None:
    """Seconds left before the current deadline (None without one; 0 once past it)."""
    deadline = _deadline.get()
    return None if deadline is None else max(0.0, deadline[0] - time.monotonic())


def check_time() -> None:
    """Raise if the work should end now.

    Raises:
        StopRequestedError: :func:`request_stop` was called.
        TimeLimitError: The innermost :func:`time_limit` has passed, naming its work and limit.
    """
    if _stop.is_set():
        raise StopRequestedError("stopped: the process is shutting down")
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline[0]:
        raise TimeLimitError(f"{deadline[2]} ran past its time limit of {deadline[1]:g} s")


# Marginal-likelihood evaluations of a fit: L-BFGS's iterations (200) and its line searches.
_FIT_EVALUATIONS = 250


def fit_gflop(width: int, rows: int, columns: int = 1) -> float:
    """Rough floating-point work (GFLOP) of a GP-NAS-family fit by marginal likelihood, to tell
    before it runs whether it is affordable.

    Each evaluation factorises, per column, an ``m x m`` system with ``m = min(rows, width)`` (the
    row form when there are fewer rows than code columns) after ``m x m x max(rows, width)``
    products.

    Args:
        width: ``d``, the code's width.
        rows: ``n``, the rows one column is fitted on (after any subsampling).
        columns: ``T``, the columns fitted together (the target and its related ones).
    """
    m, k = min(rows, width), max(rows, width)
    return _FIT_EVALUATIONS * columns * (m * m * k + m**3) / 1e9


def request_stop() -> None:
    """Make every :func:`check_time` of this process raise :class:`StopRequestedError`."""
    _stop.set()


def clear_stop() -> None:
    """Undo :func:`request_stop` (a process that serves again, e.g. the next test's app)."""
    _stop.clear()
