"""What every task function works with: the database and the settings, and the locks that keep
two processes (on any machine) from deciding or storing the same thing at once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from threadpoolctl import threadpool_limits

from ..core import Settings, make_engine, make_sessionmaker


@dataclass(frozen=True)
class WorkContext:
    """The database (read and write sessions) and settings a task function runs with.

    Attributes:
        read_sessions: Sessions for reading.
        write_sessions: Sessions that write (SQLite: ``BEGIN IMMEDIATE``, the single writer).
        settings: Predictor name, refit policy and front-search limits.
    """

    read_sessions: sessionmaker[Session]
    write_sessions: sessionmaker[Session]
    settings: Settings

    @classmethod
    def open(cls, settings: Settings) -> tuple[WorkContext, Engine]:
        """A context on a new engine for ``settings.database_url``; the caller disposes the engine."""
        engine = make_engine(settings.database_url)
        return cls(make_sessionmaker(engine), make_sessionmaker(engine, write=True), settings), engine


def use_threads(n: int) -> None:
    """Run this process's numeric work on ``n`` threads: torch's intra-op pool and the BLAS and
    OpenMP pools numpy and scipy load (2 each by default on 2 cores). On shared cores more
    threads than cores stall each other; processes, not threads, scale the work."""
    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def _lock_id(name: str) -> int:
    """A stable signed 64-bit id for a PostgreSQL advisory lock named ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def lock(session: Session, name: str) -> None:
    """Hold the lock ``name`` until the session's transaction ends (a write session).

    PostgreSQL: a transaction-scoped advisory lock, which waits for its holder in any process on
    any machine. SQLite: nothing more is needed, since a write session already holds the
    database's single write lock (``BEGIN IMMEDIATE``).
    """
    if session.get_bind().dialect.name == "sqlite":
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _lock_id(name)})
