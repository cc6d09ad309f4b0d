"""Fronts: the newest stored front of a (space, task, device)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Front


def latest_front_id(session: Session, space: str, task: str, device: str) -> tuple[int, int] | None:
    """``(id, version)`` of the newest front of (space, task, device), without loading its data."""
    stmt = (
        select(Front.id, Front.version)
        .where(Front.space == space, Front.task == task, Front.device == device)
        .order_by(Front.version.desc())
        .limit(1)
    )
    row = session.execute(stmt).first()
    return None if row is None else (int(row[0]), int(row[1]))


def latest_front_key(session: Session, space: str, task: str, device: str) -> tuple[int, int, int] | None:
    """``(version, score_predictor_id, latency_predictor_id)`` of the newest front, or None."""
    stmt = (
        select(Front.version, Front.score_predictor_id, Front.latency_predictor_id)
        .where(Front.space == space, Front.task == task, Front.device == device)
        .order_by(Front.version.desc())
        .limit(1)
    )
    row = session.execute(stmt).first()
    return None if row is None else (int(row[0]), int(row[1]), int(row[2]))


def latest_front(session: Session, space: str, task: str, device: str) -> Front | None:
    """The newest front row of (space, task, device), its data included, or None."""
    stmt = (
        select(Front)
        .where(Front.space == space, Front.task == task, Front.device == device)
        .order_by(Front.version.desc())
        .limit(1)
    )
    return session.scalar(stmt)


@dataclass(frozen=True)
class StoredFronts:
    """The stored fronts as the front cache reads them (``search.StoredFrontReads``), in ``session``."""

    session: Session

    def latest_front_id(self, space: str, task: str, device: str) -> tuple[int, int] | None:
        return latest_front_id(self.session, space, task, device)

    def front_data(self, front_id: int) -> bytes:
        row = self.session.get(Front, front_id)
        if row is None:
            raise LookupError(f"front {front_id} is not stored (fronts are never deleted)")
        return row.data
