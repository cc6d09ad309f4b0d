"""Reference levels: the latency batches' levels and each device's long-run level."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain import Metric
from ..levels import long_run_level
from ..models import Measurement
from ._measurements import LIVE


class BatchLevel(NamedTuple):
    """One latency batch's reference level, as stored with its measurements.

    A batch is told apart by its level: all its measurements carry the same ``reference_ms`` (the
    median of its reference's times, a float), and two batches of a device with exactly the same
    median are one more vote for that level either way.
    """

    space: str
    device: str
    reference_arch: str
    reference_ms: float
    measurements: int


def batch_levels(session: Session, space: str | None = None, device: str | None = None) -> list[BatchLevel]:
    """The reference levels of the live latency batches of ``space`` and ``device`` (all when None)."""
    stmt = (
        select(
            Measurement.space,
            Measurement.device,
            Measurement.reference_arch,
            Measurement.reference_ms,
            func.count(Measurement.id),
        )
        .where(Measurement.metric == Metric.LATENCY, Measurement.reference_ms.is_not(None), LIVE)
        .group_by(Measurement.space, Measurement.device, Measurement.reference_arch, Measurement.reference_ms)
    )
    if space is not None:
        stmt = stmt.where(Measurement.space == space)
    if device is not None:
        stmt = stmt.where(Measurement.device == device)
    # Latencies always name a device, a level its reference (schemas check both), and the query
    # keeps rows with a level only: the conversions only narrow the types.
    return [
        BatchLevel(space_, str(device_), str(arch), float(level or 0.0), int(n))
        for space_, device_, arch, level, n in session.execute(stmt.order_by(*stmt.selected_columns[:4]))
    ]


def levels_by_device(batches: Sequence[BatchLevel]) -> dict[tuple[str, str], list[BatchLevel]]:
    """``batches`` grouped by (device, reference arch): levels of different references differ."""
    grouped: dict[tuple[str, str], list[BatchLevel]] = {}
    for b in batches:
        grouped.setdefault((b.device, b.reference_arch), []).append(b)
    return grouped


def long_run_levels(session: Session, space: str, device: str | None = None) -> dict[tuple[str, str], float]:
    """The long-run reference level of ``device`` (every device when None) per (device, reference
    arch): the median of its batches' levels.

    A running median over every live batch, recomputed whenever fits read the data: the service
    rescales when it reads, so all of a device's values are always on one level, whatever batches
    came since, and that level converges on the machine's usual one rather than staying wherever
    its first batch happened to be. One batch in a burst of load moves a median by one rank.
    """
    out: dict[tuple[str, str], float] = {}
    for key, batches in levels_by_device(batch_levels(session, space, device)).items():
        level = long_run_level(b.reference_ms for b in batches)
        if level is not None:
            out[key] = level
    return out
