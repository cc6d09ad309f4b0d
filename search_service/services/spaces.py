"""Search spaces defined as data: registering one, adding a task to it later, and the space source
through which every process on the database (API processes, workers, CLI commands) finds the
registered spaces with :func:`supernet.get_space`, exactly like a preset.

The routes (``POST /v1/spaces``, ``POST /v1/spaces/{space}/tasks``) and ``gpnas spaces add`` are
thin adapters over :func:`register_space` and :func:`add_task`; the caller commits, then calls
:func:`publish` so that its own process sees the change at once (the others read it from the
table: a new space on first use, a new task when a request names it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

import supernet
from supernet import DefinitionError, SearchSpace, SpaceDefinition, TaskDefinition, space_from_definition

from .. import repositories as repo
from ..core import make_engine, make_sessionmaker
from ..errors import ConflictError, InvalidError, NotFoundError

__all__ = [
    "SqlSpaceSource",
    "UrlSpaceSource",
    "add_task",
    "install_space_source",
    "publish",
    "register_space",
    "stored_definition",
    "uninstall_space_source",
]


def stored_definition(text: str) -> SpaceDefinition:
    """A row's definition (JSON text written by :func:`register_space`), validated again."""
    return SpaceDefinition.from_text(text, "json")


class SqlSpaceSource:
    """A :class:`supernet.SpaceSource` reading the ``spaces`` table.

    Args:
        sessions: Opens a read session (a sessionmaker), used as a context manager.
    """

    def __init__(self, sessions: Callable[[], AbstractContextManager[Session]]) -> None:
        self._sessions = sessions

    def load(self, name: str) -> SpaceDefinition | None:
        with self._sessions() as session:
            row = repo.get_space_row(session, name)
            text = None if row is None else row.definition
        return None if text is None else stored_definition(text)

    def names(self) -> list[str]:
        with self._sessions() as session:
            return repo.space_names(session)


class UrlSpaceSource(SqlSpaceSource):
    """A :class:`SqlSpaceSource` on a database URL, for processes without an app (a worker, a CLI
    command). Its engine is opened on first use in each process: an engine must not cross a fork
    (Celery's prefork pool forks after the source is installed).
    """

    def __init__(self, url: str) -> None:
        super().__init__(self._session)
        self.url = url
        self._engine: Engine | None = None
        self._pid: int | None = None

    def _session(self) -> Session:
        if self._engine is None or self._pid != os.getpid():
            self._engine, self._pid = make_engine(self.url), os.getpid()
        return make_sessionmaker(self._engine)()

    def close(self) -> None:
        """Dispose of this process's engine (the next look-up opens a new one)."""
        if self._engine is not None and self._pid == os.getpid():
            self._engine.dispose()
        self._engine = None


def install_space_source(source: SqlSpaceSource) -> SqlSpaceSource:
    """Make ``supernet.get_space`` find the spaces of ``source``'s database in this process.

    One process serves one database: spaces cached from a source installed before are forgotten.
    """
    supernet.set_space_source(source)
    return source


def uninstall_space_source(source: SqlSpaceSource) -> None:
    """Remove ``source`` if it is still the installed one (an app shutting down)."""
    if supernet.space_source() is source:
        supernet.set_space_source(None)


def register_space(session: Session, definition: SpaceDefinition, max_encoding_width: int) -> SearchSpace:
    """Store a new space (the caller commits, then :func:`publish`-es the result).

    Args:
        session: A write session.
        definition: The space.
        max_encoding_width: The widest one-hot code accepted (``Settings.max_encoding_width``):
            fits and front searches cost at least linear, some quadratic, in it.

    Returns:
        The space the definition builds.

    Raises:
        ConflictError: The name is a preset's or a registered space's, ignoring case (``loc``
            names the field).
        InvalidError: The space's one-hot code is wider than ``max_encoding_width``.
    """
    name = definition.name
    preset = next((p for p in supernet.preset_names() if p.lower() == name.lower()), None)
    if preset is not None:
        also = "" if preset == name else f" ({preset!r}; names are compared ignoring case)"
        raise ConflictError(
            f"space {name!r} is a preset{also}: presets are built in; register a copy under another name",
            ["body", "name"],
        )
    space = space_from_definition(definition)
    width = space.encoding_dim("onehot")
    if width > max_encoding_width:
        raise InvalidError(
            f"space {name!r} encodes a subnet in {width:,} one-hot columns (depths up to "
            f"{space.max_depth} x {sum(len(d) for d in space.dimensions)} choice values); the most "
            f"this server fits is {max_encoding_width:,} (max_encoding_width): offer fewer layers or "
            "fewer values per choice",
            ["body", "choices"],
        )
    repo.create_space_row(session, definition.name, definition.to_json())
    return space


def add_task(session: Session, space: str, task: TaskDefinition) -> SearchSpace:
    """Add ``task`` to the registered ``space`` (the caller commits, then :func:`publish`-es).

    Nothing stored under the space changes: its subnets, arch strings and encodings do not depend
    on its tasks. The new task's first scores borrow from the other tasks when the service fits
    with ``GPNAS_PREDICTOR_SCORE=gpnas-transfer`` (the other tasks' scores are its related outputs).

    Returns:
        The space with the task.

    Raises:
        ConflictError: ``space`` is a preset, or has a task of that name.
        NotFoundError: No space of that name is registered.
        InvalidError: The task does not fit the space (a head on a cell space).
    """
    if supernet.is_preset(space):
        raise ConflictError(
            f"space {space!r} is a preset: presets keep their tasks; register a copy with the task "
            f"under another name (`gpnas spaces show {space}` prints its definition)"
        )
    row = repo.get_space_row(session, space, lock=True)
    if row is None:
        raise NotFoundError(f"unknown space {space!r}; register it with POST /v1/spaces")
    definition = stored_definition(row.definition)
    if task.name in definition.task_names:
        raise ConflictError(f"space {space!r} has a task {task.name!r} already", ["body", "name"])
    if task.head is not None and definition.family != "ufo":
        raise InvalidError(f"{definition.family} spaces have no task heads; leave it null", ["body", "head"])
    try:
        extended = definition.with_task(task)
    except DefinitionError as error:  # e.g. ffn_paths that the space's ffn_path choice does not offer
        raise InvalidError(str(error), ["body"]) from None
    repo.update_space_definition(session, row, extended.to_json())
    return space_from_definition(extended)


def publish(space: SearchSpace) -> None:
    """Let this process see ``space`` at once (after the transaction that stored it committed)."""
    supernet.register_space(space, replace=True)
