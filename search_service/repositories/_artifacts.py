"""Built artifacts: one row per deployable file, under the key of the request that built it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import NotFoundError
from ..models import ArtifactRow


def find_artifact(session: Session, request_key: str) -> ArtifactRow | None:
    """The artifact built for the request ``request_key``, or None."""
    return session.scalar(select(ArtifactRow).where(ArtifactRow.request_key == request_key))


def get_artifact(session: Session, digest: str) -> ArtifactRow:
    """The (first) artifact whose file is ``digest``.

    Raises:
        NotFoundError: No artifact has that digest.
    """
    row = session.scalar(select(ArtifactRow).where(ArtifactRow.digest == digest).order_by(ArtifactRow.id))
    if row is None:
        raise NotFoundError(f"no artifact {digest!r}")
    return row


def add_artifact(
    session: Session,
    request_key: str,
    space: str,
    request: str,
    digest: str,
    size_bytes: int,
    max_abs_diff: float,
) -> ArtifactRow:
    """Record a built artifact, or find the equal one another process recorded first; the caller
    commits."""
    try:
        with session.begin_nested():
            row = ArtifactRow(
                request_key=request_key,
                space=space,
                request=request,
                digest=digest,
                size_bytes=size_bytes,
                max_abs_diff=max_abs_diff,
            )
            session.add(row)
        return row
    except IntegrityError:
        existing = find_artifact(session, request_key)
        assert existing is not None, "the insert lost to a row with this key"
        return existing


def list_artifacts(
    session: Session, limit: int, offset: int, space: str | None = None
) -> tuple[int, list[ArtifactRow]]:
    """A page of artifacts (of ``space``, if given), oldest first, and how many there are in all."""
    filters = () if space is None else (ArtifactRow.space == space,)
    total = session.scalar(select(func.count(ArtifactRow.id)).where(*filters))
    page = session.scalars(
        select(ArtifactRow).where(*filters).order_by(ArtifactRow.id).limit(limit).offset(offset)
    )
    return total or 0, list(page)
