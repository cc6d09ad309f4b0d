"""Ingest: a batch of measurements stored all or nothing, and the level shifts it brought."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from ..repositories import insert_measurements
from ..schemas import MeasurementBatchResponse, MeasurementCreate
from .levels import level_shifts


def ingest_measurements(
    session: Session, items: Sequence[MeasurementCreate], level_shift_threshold: float
) -> MeasurementBatchResponse:
    """Store ``items`` in one transaction and commit it.

    Ids already stored with the same content count as duplicates; the same id with other content
    refuses the whole batch (measurements are never overwritten).

    Args:
        session: A write session; committed here.
        items: The batch, checked against the registry (``space_checks.checked_measurements``).
        level_shift_threshold: How far a latency batch's reference level may lie from its
            device's long-run level before the answer reports it.

    Returns:
        What was stored, what was already there, and the batches whose level moved.
    """
    inserted, duplicate, _ = insert_measurements(session, items)
    shifts = level_shifts(session, items, level_shift_threshold)
    session.commit()
    return MeasurementBatchResponse(inserted=inserted, duplicate=duplicate, level_shifts=shifts)
