"""Deployment queries (``POST /v1/deployments/query``, ``gpnas deploy``): several tasks on one chip.

The answer is a search of seconds over the newest predictors (:func:`search.solve_deployment`),
run where the service runs heavy work (this process without a broker, a worker with one). It
is stored under a key made of the request and the predictor versions, so asking again is
answered from the table, the same way, until a refit changes a predictor.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import cast

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from predictors import DeploymentLatencyModel, Predictor
from supernet import DTYPE_BYTES, UFOSpace, get_space

from .. import repositories as repo
from ..admission import Admission, Connection
from ..core.config import Settings
from ..domain import Metric, WorkKind, WorkStatus
from ..errors import ConflictError, InvalidError, NotFoundError, ServiceError
from ..models import DeploymentAnswerRow
from ..schemas import (
    DeploymentPrediction,
    DeploymentQueryRequest,
    DeploymentQueryResponse,
    DeploymentTaskAnswer,
)
from ..search import NoFeasibleDeploymentError, SharedLatency, TaskGoal, decode_front, solve_deployment
from ..work import Outcome, WorkContext, items, record_failure, request_outcome
from ..work._schedule import Runner
from .artifacts import deployment_artifact


def shared_latency_model(session: Session, space: UFOSpace, device: str) -> SharedLatency:
    """The joint forward of a deployment on one shared image, from its paths' predicted
    latencies: :class:`predictors.DeploymentLatencyModel` fitted on ``device``'s measured paths
    (its cost line gives the share of each path a shared input does not compute again;
    ``benchmarks/deployment_latency.py``: 2.3-2.6% median error on this CPU)."""
    data = repo.training_data(session, space.name, Metric.LATENCY, device)
    model = DeploymentLatencyModel.fit(space, space.parse_many(data.archs), data.values, data.stds)

    def predict(codes: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        joint, joint_std = model.predict_choices(codes, mean, std, "shared")
        return joint.numpy(), joint_std.numpy()

    return predict


def predictor_versions(session: Session, body: DeploymentQueryRequest) -> dict[str, int]:
    """Ids of the newest score predictor of every task and latency predictor of the device.

    Raises:
        NotFoundError: Unknown device, or a task or the device without measurements.
        ConflictError: Measurements exist but are not fitted yet.
    """
    repo.get_device(session, body.device)
    targets = [(Metric.SCORE, t.task, f"score/{t.task}") for t in body.tasks]
    versions, missing, unfitted = {}, [], []
    for metric, target, name in [*targets, (Metric.LATENCY, body.device, f"latency/{body.device}")]:
        row = repo.latest_predictor(session, body.space, metric, target)
        if row is not None:
            versions[name] = row.id
        elif repo.count_measured_subnets(session, body.space, metric, target) == 0:
            missing.append(f"no {metric} measurements of {target!r}")
        else:
            unfitted.append(name)
    if missing:
        raise NotFoundError(f"cannot answer for space {body.space!r}: " + ", ".join(missing))
    if unfitted:
        raise ConflictError(
            f"predictors {', '.join(unfitted)} are not fitted yet (too few measurements, or a refit "
            "is pending: POST /v1/refit); retry shortly"
        )
    return versions


def answer_key(body: DeploymentQueryRequest, versions: dict[str, int]) -> str:
    """The work item (and stored answer) of ``body`` on the predictor versions ``versions``."""
    canonical = json.dumps([body.model_dump(mode="json"), versions], sort_keys=True)
    return items.deployment_key(hashlib.sha256(canonical.encode()).hexdigest())


def _max_params(body: DeploymentQueryRequest) -> int | None:
    if body.max_weight_mb is None:
        return body.max_params
    return max(1, math.floor(body.max_weight_mb * 1e6 / DTYPE_BYTES[body.dtype]))


def compute_answer(
    session: Session, body: DeploymentQueryRequest, settings: Settings
) -> DeploymentQueryResponse:
    """Search the deployment ``body`` asks for on the newest predictors.

    Raises:
        NotFoundError, ConflictError: See :func:`predictor_versions`.
        InvalidError: The space has no supernet, or no deployment meets the budgets (naming the
            constraint that the closest deployment found misses).
    """
    # The request's validation admits UFO spaces only.
    space = cast(UFOSpace, get_space(body.space))
    versions = predictor_versions(session, body)
    latency_row = repo.latest_predictor(session, body.space, Metric.LATENCY, body.device)
    assert latency_row is not None  # predictor_versions checked it
    latency = Predictor.from_bytes(latency_row.blob, space)
    scores, goals, seeds = {}, [], {}
    for goal in body.tasks:
        row = repo.latest_predictor(session, body.space, Metric.SCORE, goal.task)
        assert row is not None
        scores[goal.task] = Predictor.from_bytes(row.blob, space)
        values = repo.training_data(session, body.space, Metric.SCORE, goal.task).values
        goals.append(TaskGoal(goal.task, goal.weight, goal.latency_budget_ms, (min(values), max(values))))
        front = repo.latest_front(session, body.space, goal.task, body.device)
        if front is not None:
            seeds[goal.task] = decode_front(front.data, body.space, goal.task).candidates.subnets
    shared = shared_latency_model(session, space, body.device) if body.input == "shared" else None
    try:
        answer = solve_deployment(
            space,
            goals,
            scores,
            latency,
            confidence=body.confidence,
            max_params=_max_params(body),
            input=body.input,
            shared_latency=shared,
            seeds=seeds,
            time_limit_s=settings.deployment_time_limit_s,
        )
    except NoFeasibleDeploymentError as error:
        cap_field = "max_weight_mb" if body.max_weight_mb is not None else "max_params"
        field = "tasks" if error.budget_misses else cap_field

        def in_megabytes(held: int, _: int) -> str:
            # Name the cap the user gave, in its unit, not the parameter count it became.
            weight = held * DTYPE_BYTES[body.dtype] / 1e6
            return f"its {body.dtype} weights take {weight:,.4g} MB, over max_weight_mb {body.max_weight_mb}"

        message = error.describe(in_megabytes if body.max_weight_mb is not None else None)
        raise InvalidError(message, ["body", field]) from None
    tasks = []
    for task_answer in answer.tasks:
        sub = task_answer.subnet
        tasks.append(
            DeploymentTaskAnswer(
                task=task_answer.task,
                arch=space.format(sub),
                config=space.config(sub),
                params_alone=space.param_count(sub, task_answer.task),
                predicted=DeploymentPrediction(
                    score=task_answer.score,
                    score_std=task_answer.score_std,
                    normalised_score=task_answer.normalised_score,
                    latency_ms=task_answer.latency_ms,
                    latency_std=task_answer.latency_std,
                    p_feasible=task_answer.p_feasible,
                ),
            )
        )
    return DeploymentQueryResponse(
        space=body.space,
        device=body.device,
        input=body.input,
        tasks=tasks,
        params=answer.params,
        weight_mb=answer.params * DTYPE_BYTES[body.dtype] / 1e6,
        dtype=body.dtype,
        independent_params=sum(t.params_alone for t in tasks),
        objective=answer.objective,
        method=answer.method,
        evaluations=answer.evaluations,
        predictor_versions=versions,
    )


def store_answer(session: Session, key: str, answer: DeploymentQueryResponse) -> int:
    """Insert ``answer`` under ``key`` (or find the equal one another process stored); its id."""
    try:
        with session.begin_nested():
            row = DeploymentAnswerRow(
                key=key, space=answer.space, device=answer.device, answer=answer.model_dump_json()
            )
            session.add(row)
        return row.id
    except IntegrityError:
        existing = stored_answer_row(session, key)
        assert existing is not None, "the insert lost to a row with this key"
        return existing.id


def stored_answer_row(session: Session, key: str) -> DeploymentAnswerRow | None:
    return session.scalar(select(DeploymentAnswerRow).where(DeploymentAnswerRow.key == key))


def answer_and_store_deployment(ctx: WorkContext, body: DeploymentQueryRequest, key: str) -> Outcome:
    """The deployment query's task function: search the deployment ``body`` asks for and store
    the answer under ``key``, once per key; a :class:`ServiceError` (nothing fits, predictors
    missing) is recorded as the item's error for the waiting API process to raise."""
    outcome = request_outcome(ctx, key)
    if outcome.existing is not None or outcome.error is not None:
        return outcome
    with ctx.write_sessions() as session:
        items.started(session, key, WorkKind.DEPLOYMENT, body.space)
        session.commit()
    try:
        with ctx.read_sessions() as session:
            answer = compute_answer(session, body, ctx.settings)
    except ServiceError as error:
        outcome.error = record_failure(ctx, key, WorkKind.DEPLOYMENT, body.space, error)
        return outcome
    with ctx.write_sessions() as session:
        outcome.stored = store_answer(session, key, answer)
        items.finished(
            session, key, WorkKind.DEPLOYMENT, body.space, WorkStatus.DONE, result_id=outcome.stored
        )
        session.commit()
    return outcome


async def query_deployment(
    read_sessions: sessionmaker[Session],
    body: DeploymentQueryRequest,
    runner: Runner,
    admission: Admission,
    caller: str,
    connection: Connection | None = None,
) -> DeploymentQueryResponse:
    """The stored answer of ``body`` on the newest predictors; when there is none, it is searched
    first (where ``runner`` runs work) once ``admission`` admits it. Equal queries share one search.

    Args:
        read_sessions: Sessions for reading.
        body: The query.
        runner: Where the search runs (this process, or a worker).
        admission: The queue of heavy work the search waits in.
        caller: Whose budget of heavy requests the query counts against.
        connection: The request; an abandoned query stops waiting (and its search is dropped if
            it had not started and nobody else asked for it).

    Raises:
        NotFoundError, ConflictError, InvalidError: See :func:`compute_answer`.
        TooManyRequestsError, UnavailableError, ClientDisconnectedError: See
            :meth:`~search_service.admission.Admission.run`; also UnavailableError when, with a
            broker, no worker answered within ``task_wait_s``.
    """

    def stored() -> tuple[str, DeploymentAnswerRow | None]:
        with read_sessions() as session:
            key = answer_key(body, predictor_versions(session, body))
            return key, stored_answer_row(session, key)

    def load(answer_id: int) -> DeploymentAnswerRow | None:
        with read_sessions() as session:
            return session.get(DeploymentAnswerRow, answer_id)

    key, row = await run_in_threadpool(stored)
    if row is None:
        answer_id = await admission.run(
            caller, lambda: runner.deployment(body, key), key=key, connection=connection
        )
        row = await run_in_threadpool(load, answer_id)
    assert row is not None
    answer = DeploymentQueryResponse.model_validate_json(row.answer)
    # Made here, not stored: answers stored before artifacts existed get it too.
    answer.artifact = deployment_artifact(answer.space, {t.task: t.arch for t in answer.tasks}, answer.input)
    return answer
