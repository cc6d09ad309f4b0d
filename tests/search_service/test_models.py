"""The ORM's enum columns: the members in Python, their plain values in the database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from search_service.domain import WorkKind, WorkStatus
from search_service.models import WorkItem


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    WorkItem.__table__.create(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_enum_columns_store_their_values_and_read_back_members(session: Session) -> None:
    session.add(WorkItem(key="fit/a", kind=WorkKind.FIT, space="s", status=WorkStatus.QUEUED))
    # A row written as plain strings, as the rows written before the columns were typed are.
    session.execute(
        text(
            "INSERT INTO work_items (key, kind, space, status, attempts, dispatched_at) VALUES "
            "('front/b', 'front', 's', 'done', 0, '2026-01-01 00:00:00')"
        )
    )
    session.commit()
    stored = session.execute(text("SELECT kind, status FROM work_items ORDER BY key")).all()
    assert [tuple(row) for row in stored] == [("fit", "queued"), ("front", "done")]
    items = session.scalars(select(WorkItem).order_by(WorkItem.key)).all()
    assert [(item.kind, item.status) for item in items] == [
        (WorkKind.FIT, WorkStatus.QUEUED),
        (WorkKind.FRONT, WorkStatus.DONE),
    ]
    assert all(type(item.kind) is WorkKind and type(item.status) is WorkStatus for item in items)


def test_an_enum_column_refuses_a_value_its_enum_does_not_know(session: Session) -> None:
    session.add(WorkItem(key="fit/a", kind=WorkKind.FIT, space="s", status="paused"))
    with pytest.raises(StatementError, match="'paused' is not a valid WorkStatus"):
        session.commit()
