"""Requests checked against the spaces this server knows.

The wire schemas (:mod:`search_service.schemas`) are shapes that any process can build, a client
without this server's registry included. Whether a space is registered, a task belongs to it or
an arch is one of its subnets is this server's knowledge, checked here: the ``checked_*``
functions are the routes' body dependencies (``Annotated[QueryRequest, Depends(checked_query)]``),
so the CLI, which calls the app in process, gets the same answers. Each failure is a 422 shaped
like a validation error, at the field it concerns, with the registry's message. Checks that
need the database (a supernet version is registered) take the caller's session.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from supernet.spaces import SearchSpace, UFOSpace, get_space, space_with_task

from .errors import InvalidError
from .models import SupernetVersion
from .schemas import (
    ArtifactCreate,
    CampaignCreate,
    DeploymentQueryRequest,
    MeasurementBatch,
    MeasurementCreate,
    QueryRequest,
    RefitRequest,
)

Loc = Sequence[str | int]


def known_space(space: str, loc: Loc) -> SearchSpace:
    """The registered space ``space``; :class:`InvalidError` at ``loc`` naming the known ones."""
    try:
        return get_space(space)
    except ValueError as error:
        raise InvalidError(str(error), loc) from None


def known_task(space: str, task: str, loc: Loc) -> None:
    """:class:`InvalidError` at ``loc`` unless ``task`` is a task of ``space``."""
    tasks = space_with_task(space, task).tasks  # a registered space gains tasks in other processes
    if task not in tasks:
        raise InvalidError(
            f"task {task!r} is not a task of space {space!r}; its tasks: {', '.join(tasks) or 'none'}", loc
        )


def known_arch(space: str, arch: str, loc: Loc) -> str:
    """``arch`` in its space's canonical spelling; :class:`InvalidError` at ``loc`` saying why it
    is not a subnet of ``space``."""
    search_space = known_space(space, loc)
    try:
        return search_space.format(search_space.parse(arch))
    except (ValueError, KeyError, IndexError) as error:
        raise InvalidError(f"arch {arch!r} is not a subnet of {space!r}: {error}", loc) from None


def checked_measurements(body: MeasurementBatch) -> MeasurementBatch:
    """``body`` with every arch (and reference arch) in canonical spelling; a 422 at the first
    item whose space, task or arch this server does not know (the batch is then refused whole)."""
    for i, item in enumerate(body.measurements):
        loc: list[str | int] = ["body", "measurements", i]
        known_space(item.space, [*loc, "space"])
        if item.task is not None:
            known_task(item.space, item.task, loc)
        item.arch = known_arch(item.space, item.arch, loc)
        if item.reference_arch is not None:
            item.reference_arch = known_arch(item.space, item.reference_arch, loc)
    return body


def known_supernet_versions(session: Session, items: Sequence[MeasurementCreate]) -> None:
    """:class:`InvalidError` at the first item naming a ``supernet_version`` that is not
    registered for its space (``POST /v1/supernets``); the batch is then refused whole."""
    wanted = {(m.space, m.supernet_version) for m in items if m.supernet_version is not None}
    if not wanted:
        return
    spaces = {space for space, _ in wanted}
    registered: dict[str, list[int]] = {space: [] for space in spaces}
    for space, version in session.execute(
        select(SupernetVersion.space, SupernetVersion.version)
        .where(SupernetVersion.space.in_(spaces))
        .order_by(SupernetVersion.version)
    ):
        registered[space].append(version)
    for i, m in enumerate(items):
        if m.supernet_version is not None and m.supernet_version not in registered[m.space]:
            known = ", ".join(map(str, registered[m.space])) or "none (POST /v1/supernets)"
            raise InvalidError(
                f"supernet version {m.supernet_version} of space {m.space!r} is not registered; "
                f"its versions: {known}",
                ["body", "measurements", i, "supernet_version"],
            )


def checked_query(body: QueryRequest) -> QueryRequest:
    """``body`` once its space and task are known here."""
    known_space(body.space, ["body", "space"])
    known_task(body.space, body.task, ["body"])
    return body


def checked_campaign(body: CampaignCreate) -> CampaignCreate:
    """``body`` once its space (and task, for a score campaign) are known here."""
    known_space(body.space, ["body", "space"])
    if body.task is not None:
        known_task(body.space, body.task, ["body"])
    return body


def checked_refit(body: RefitRequest) -> RefitRequest:
    """``body`` once its space, when it names one, is known here."""
    if body.space is not None:
        known_space(body.space, ["body", "space"])
    return body


def checked_deployment_query(body: DeploymentQueryRequest) -> DeploymentQueryRequest:
    """``body`` once its space is a UFO space (only their tasks share one supernet) and each of
    its tasks is a task of it."""
    if not isinstance(known_space(body.space, ["body", "space"]), UFOSpace):
        raise InvalidError(
            f"space {body.space!r} has no deployments: only UFO spaces, whose tasks share one supernet, do",
            ["body"],
        )
    for task in body.tasks:
        known_task(body.space, task.task, ["body"])
    return body


def checked_artifact(body: ArtifactCreate) -> ArtifactCreate:
    """``body`` once its space is a UFO space (only they have a supernet to build from), its
    task(s) are tasks of it and its arch(s) are subnets of it, in canonical spelling (so that
    equal requests spelled differently are one artifact)."""
    if not isinstance(known_space(body.space, ["body", "space"]), UFOSpace):
        raise InvalidError(
            f"space {body.space!r} has no supernet to build an artifact from: only UFO spaces have one",
            ["body", "space"],
        )
    if body.arch is not None:
        if body.task is not None:
            known_task(body.space, body.task, ["body", "task"])
        body.arch = known_arch(body.space, body.arch, ["body", "arch"])
    if body.tasks is not None:
        canonical = {}
        for task, arch in body.tasks.items():
            known_task(body.space, task, ["body", "tasks", task])
            canonical[task] = known_arch(body.space, arch, ["body", "tasks", task])
        body.tasks = canonical
    return body
