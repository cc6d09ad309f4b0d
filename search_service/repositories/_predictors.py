"""Predictor versions: the newest fit of each target."""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from ..models import PredictorVersion


def latest_predictor(session: Session, space: str, metric: str, target: str) -> PredictorVersion | None:
    stmt = (
        select(PredictorVersion)
        .where(
            PredictorVersion.space == space,
            PredictorVersion.metric == metric,
            PredictorVersion.target == target,
        )
        .order_by(PredictorVersion.version.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def latest_predictors(session: Session, space: str, metric: str) -> list[PredictorVersion]:
    """The newest version of every target of ``metric`` in ``space``."""
    newest = (
        select(PredictorVersion.target, func.max(PredictorVersion.version).label("v"))
        .where(PredictorVersion.space == space, PredictorVersion.metric == metric)
        .group_by(PredictorVersion.target)
        .subquery()
    )
    stmt = (
        select(PredictorVersion)
        .join(
            newest, and_(PredictorVersion.target == newest.c.target, PredictorVersion.version == newest.c.v)
        )
        .where(PredictorVersion.space == space, PredictorVersion.metric == metric)
        .order_by(PredictorVersion.target)
    )
    return list(session.scalars(stmt))
