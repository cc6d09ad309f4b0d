"""Spaces defined as data: their stored definitions."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import ConflictError
from ..models import SpaceRow, utcnow


def get_space_row(session: Session, name: str, lock: bool = False) -> SpaceRow | None:
    """The stored definition of the space ``name``, or None (presets are never stored).

    Args:
        session: The session to read with.
        name: The space's name.
        lock: Lock the row until the transaction ends (PostgreSQL ``FOR UPDATE``; a SQLite write
            session holds the database's single write lock already), so that two processes adding
            tasks to one space do not lose one of them.
    """
    stmt = select(SpaceRow).where(SpaceRow.name == name)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def space_names(session: Session) -> list[str]:
    return list(session.scalars(select(SpaceRow.name).order_by(SpaceRow.name)))


def create_space_row(session: Session, name: str, definition: str) -> SpaceRow:
    """Store a new space's definition (validated, as JSON text).

    Raises:
        ConflictError: A space of that name, ignoring case, is stored already (naming the field).
    """
    # Ignoring case: names that differ only in case would be two spaces to the database, but a
    # user who types either one means the same space.
    existing = session.scalar(select(SpaceRow.name).where(func.lower(SpaceRow.name) == name.lower()))
    if existing is not None:
        also = "" if existing == name else f" ({name!r} differs from it only in case)"
        raise ConflictError(f"space {existing!r} is registered already{also}", ["body", "name"])
    row = SpaceRow(name=name, definition=definition, version=1)
    session.add(row)
    session.flush()
    return row


def update_space_definition(session: Session, row: SpaceRow, definition: str) -> SpaceRow:
    """Replace ``row``'s definition (read with ``lock=True``) and count the change."""
    row.definition = definition
    row.version += 1
    row.updated_at = utcnow()
    session.flush()
    return row
