"""Engine construction: SQLite in WAL mode with one writer at a time, or PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# Execution option marking a connection that will write. On SQLite such a transaction starts with
# BEGIN IMMEDIATE, taking the single write lock up front: a deferred transaction that reads and
# then writes can fail with "database is locked" instead of waiting when another writer commits.
WRITE_OPTION = "gpnas_write"


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs (psycopg2 is not installed)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, pool_timeout_s: float | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url``.

    SQLite: WAL journal (readers never block the writer), a 30 s busy timeout, foreign keys on,
    and transactions begun by SQLAlchemy rather than by the sqlite3 module so that writes can ask
    for ``BEGIN IMMEDIATE`` (see :data:`WRITE_OPTION`). PostgreSQL: a pre-pinged pool.

    ``pool_timeout_s``: how long taking a connection waits while the pool's are all in use before
    it raises ``sqlalchemy.exc.TimeoutError`` (default SQLAlchemy's 30 s); an in-memory SQLite
    database has no such pool and ignores it.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if pool_timeout_s is not None and parsed.database not in (None, "", ":memory:"):
        kwargs.setdefault("pool_timeout", pool_timeout_s)
    if parsed.get_backend_name() == "sqlite":
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            write = connection.get_execution_options().get(WRITE_OPTION, False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine, write: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``write=True`` sessions take SQLite's write lock when they begin."""
    bind = engine.execution_options(**{WRITE_OPTION: True}) if write else engine
    return sessionmaker(bind=bind, expire_on_commit=False)
