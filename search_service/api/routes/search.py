"""Budget queries and Pareto fronts, answered from the newest stored front (cached in memory)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from supernet import get_space

from ... import repositories as repo
from ...domain import Metric
from ...errors import ConflictError, InvalidError, NotFoundError
from ...refit import Refitter
from ...schemas import (
    INT32,
    FrontObjectiveName,
    MaxParams,
    Name,
    ParetoPage,
    ParetoPoint,
    Predicted,
    QueryRequest,
    QueryResponse,
    SpaceName,
)
from ...search import FrontCache, FrontPoint, LoadedFront, NothingFitsError, budget_query
from ...services import artifacts
from ...space_checks import checked_query, known_space, known_task
from ..deps import FrontCacheDep, RefitterDep, SessionDep

router = APIRouter(prefix="/v1", tags=["search"])

_NOT_COMPUTED: dict[int | str, dict[str, Any]] = {
    404: {"description": "No data, or too little to fit (fewer measured subnets than min_train)"},
    409: {
        "description": "The front is being computed (retry later), or its last refit failed (the "
        "answer says why; retrying does not help until the data changes)"
    },
}


def _front(
    session: Session, cache: FrontCache, refitter: Refitter, space: str, task: str, device: str
) -> LoadedFront:
    """The newest front, or a 4xx saying which data is missing, why its refit failed, or that it is
    being computed (only then is retrying worth it)."""
    loaded = cache.get(repo.StoredFronts(session), space, task, device)
    if loaded is not None:
        return loaded
    repo.get_device(session, device)
    min_train = refitter.settings.min_train
    missing = []
    for metric, target, what in ((Metric.LATENCY, device, "device"), (Metric.SCORE, task, "task")):
        n = repo.count_measured_subnets(session, space, metric, target)
        if n == 0:
            kind = "latency" if metric is Metric.LATENCY else "score"
            missing.append(f"no {kind} measurements of {what} {target!r}")
        elif n < min_train:
            subnets = "subnet" if n == 1 else "subnets"
            missing.append(
                f"{what} {target!r} has {n} measured {subnets}; fits need at least {min_train} (min_train)"
            )
    if missing:
        raise NotFoundError(
            f"cannot search space {space!r}: " + " and ".join(missing) + " (POST /v1/measurements)"
        )
    name = f"the front of {space!r} for task {task!r} on device {device!r}"
    failure = refitter.last_failure(session, space, task, device)
    if failure is not None:
        raise ConflictError(
            f"{name} cannot be computed: {failure}. It is retried once the data changes: add "
            "measurements, or retract wrong ones (DELETE /v1/measurements/{id})"
        )
    refitter.notify()
    raise ConflictError(
        f"{name} is not computed yet (it is fitted in the background after new measurements, or "
        "with POST /v1/refit); retry shortly"
    )


def _macs(point: FrontPoint) -> int | None:
    return None if point.macs is None else round(point.macs)


@router.post("/query", response_model=QueryResponse, responses=_NOT_COMPUTED)
async def query(body: Annotated[QueryRequest, Depends(checked_query)], request: Request) -> Response:
    """The subnet with the best predicted score whose latency meets the budget with probability
    ``confidence`` (Gaussian latency posterior) and, given ``max_params``, that has at most that
    many parameters. 422 when nothing fits, on the field whose constraint ruled the candidates
    out: ``latency_budget_ms`` (naming the fastest candidate) or ``max_params`` (naming the
    smallest)."""
    # The hot path: async and without dependencies to solve, so a cached front is answered on the
    # event loop with no thread hand-off (the database is read at most once per front_cache_s),
    # and the answer is serialised once here rather than validated again against response_model.
    cache, refitter = request.app.state.front_cache, request.app.state.refitter
    loaded = cache.peek(body.space, body.task, body.device)
    if loaded is None:
        loaded = await run_in_threadpool(_front_in_session, request, cache, refitter, body)
    try:
        choice = budget_query(
            loaded.result.candidates, body.latency_budget_ms, body.confidence, body.max_params
        )
    except NothingFitsError as error:
        raise InvalidError(str(error), ["body", error.field]) from None
    except ValueError as error:  # a cap on a front without parameter counts
        raise InvalidError(str(error), ["body", "max_params"]) from None
    point = choice.point
    answer = QueryResponse(
        arch=point.arch,
        config=get_space(body.space).config(point.subnet),
        params=point.params,
        macs=_macs(point),
        predicted=Predicted(
            score=point.score,
            score_std=point.score_std,
            latency_ms=point.latency_ms,
            latency_std=point.latency_std,
            p_feasible=choice.p_feasible,
        ),
        front_version=loaded.version,
        artifact=artifacts.subnet_artifact(body.space, point.arch, body.task),
    )
    return Response(answer.model_dump_json(), media_type="application/json")


def _front_in_session(
    request: Request, cache: FrontCache, refitter: Refitter, body: QueryRequest
) -> LoadedFront:
    with request.app.state.read_sessions() as session:
        return _front(session, cache, refitter, body.space, body.task, body.device)


@router.get("/pareto", response_model=ParetoPage, responses=_NOT_COMPUTED)
def pareto(
    session: SessionDep,
    cache: FrontCacheDep,
    refitter: RefitterDep,
    space: Annotated[SpaceName, Query()],
    task: Annotated[Name, Query()],
    device: Annotated[Name, Query()],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT32)] = 0,
    objective: Annotated[
        FrontObjectiveName,
        Query(description="`latency`: the (score, latency) front; `params`: the (score, parameters) front."),
    ] = "latency",
    max_params: Annotated[
        MaxParams | None, Query(description="The front of the subnets with at most this many parameters.")
    ] = None,
) -> ParetoPage:
    """The predicted Pareto front (score up, latency down) ordered by latency, a page at a time;
    with ``objective=params`` the front on (score up, parameters down), ordered by parameters.

    ``max_params`` restricts the front to the subnets with at most that many parameters (the
    front among them, not the full front cut off). Every point has its exact ``params`` and
    ``macs``. ``measured`` is true for subnets with both a measured score on the task and a
    measured latency on the device; the numbers shown are the predictions in every case.
    """
    known_space(space, ["query", "space"])
    known_task(space, task, ["query", "task"])  # reads a registered space again if the task is new
    loaded = _front(session, cache, refitter, space, task, device)
    try:
        front = loaded.result.front_on(objective, max_params)
    except ValueError as error:  # a front without parameter counts
        raise InvalidError(str(error), ["query", "max_params" if max_params else "objective"]) from None
    points = front[offset : offset + limit]
    archs = [p.arch for p in points]
    measured = repo.archs_measured_on_both(session, space, task, device, archs)
    return ParetoPage(
        points=[
            ParetoPoint(
                arch=p.arch,
                score=p.score,
                score_std=p.score_std,
                latency_ms=p.latency_ms,
                latency_std=p.latency_std,
                params=p.params,
                macs=_macs(p),
                measured=p.arch in measured,
            )
            for p in points
        ],
        total=len(front),
        limit=limit,
        offset=offset,
        version=loaded.version,
        objective=objective,
        max_params=max_params,
    )
