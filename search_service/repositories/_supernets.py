"""Registered supernet checkpoints: one row per version of a space's weights."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import SupernetVersion


def find_supernet_version(session: Session, space: str, sha256: str) -> SupernetVersion | None:
    """The version of ``space`` registered with the file ``sha256``, or None."""
    return session.scalar(
        select(SupernetVersion).where(SupernetVersion.space == space, SupernetVersion.sha256 == sha256)
    )


def add_supernet_version(session: Session, space: str, sha256: str, size: int) -> SupernetVersion:
    """Record the next version of ``space`` (1 for its first); the caller commits.

    Two registrations of one space racing for a number collide on the unique (space, version)
    key at commit: the loser's request is a 409 asking to retry, and its retry finds the winner's
    version or takes the next number.
    """
    newest = session.scalar(select(func.max(SupernetVersion.version)).where(SupernetVersion.space == space))
    row = SupernetVersion(space=space, version=(newest or 0) + 1, sha256=sha256, size=size)
    session.add(row)
    session.flush()
    return row


def list_supernet_versions(session: Session, space: str | None = None) -> list[SupernetVersion]:
    """The registered versions (of ``space``, if given), by space and version."""
    stmt = select(SupernetVersion).order_by(SupernetVersion.space, SupernetVersion.version)
    if space is not None:
        stmt = stmt.where(SupernetVersion.space == space)
    return list(session.scalars(stmt))


def get_supernet_version(session: Session, space: str, version: int) -> SupernetVersion | None:
    """Version ``version`` of ``space``'s registered weights, or None."""
    return session.scalar(
        select(SupernetVersion).where(SupernetVersion.space == space, SupernetVersion.version == version)
    )
