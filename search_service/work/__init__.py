"""Background work: fits, fronts and campaign selection, in process or on Celery workers.

The task functions (:func:`fit_target`, :func:`build_front`, :func:`plan_and_store_campaign`)
are idempotent per what they compute from and store their results once; :func:`schedule`
decides, under one lock, what is stale and records each dispatch; a :class:`Runner` runs the
orders here (:class:`InProcessRunner`) or sends them to ``gpnas worker`` processes
(:class:`CeleryRunner`, with ``GPNAS_BROKER_URL``). :mod:`.items` keys and records the units
of work (the ``work_items`` table).
"""

from . import items
from ._celery import CeleryRunner, create_celery
from ._context import WorkContext, use_threads
from ._functions import (
    Outcome,
    answer_and_store_deployment,
    build_front,
    decode_front,
    encode_front,
    fit_target,
    fitted_version,
    plan_and_store_campaign,
)
from ._schedule import InProcessRunner, Order, Runner, run_order, schedule, wait_for

__all__ = [
    "CeleryRunner",
    "InProcessRunner",
    "Order",
    "Outcome",
    "Runner",
    "WorkContext",
    "answer_and_store_deployment",
    "build_front",
    "create_celery",
    "decode_front",
    "encode_front",
    "fit_target",
    "fitted_version",
    "items",
    "plan_and_store_campaign",
    "run_order",
    "schedule",
    "use_threads",
    "wait_for",
]
