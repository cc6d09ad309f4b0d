"""Background work: fits, fronts and campaign selection, in process or on Celery workers.

The task functions (:func:`fit_target`, :func:`build_front`, and the requests' handed in as
:class:`RequestHandlers`) are idempotent per what they compute from and store their results
once; :func:`schedule` decides, under one lock, what is stale and records each dispatch; a
:class:`Runner` runs the orders here (:class:`InProcessRunner`) or sends them to ``gpnas
worker`` processes (:class:`CeleryRunner`, with ``GPNAS_BROKER_URL``). :mod:`.items` keys and
records the units of work (the ``work_items`` table).
"""

from . import items
from ._celery import CeleryRunner, create_celery
from ._context import WorkContext, use_threads
from ._functions import (
    Outcome,
    build_front,
    fit_target,
    fitted_version,
    record_failure,
    request_outcome,
)
from ._schedule import InProcessRunner, Order, RequestHandlers, Runner, run_order, schedule, wait_for

__all__ = [
    "CeleryRunner",
    "InProcessRunner",
    "Order",
    "Outcome",
    "RequestHandlers",
    "Runner",
    "WorkContext",
    "build_front",
    "create_celery",
    "fit_target",
    "fitted_version",
    "items",
    "record_failure",
    "request_outcome",
    "run_order",
    "schedule",
    "use_threads",
    "wait_for",
]
