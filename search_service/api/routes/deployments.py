"""Deployment queries: the best paths for several tasks deployed together on one chip."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ...admission import ADMISSION_RESPONSES
from ...schemas import DeploymentQueryRequest, DeploymentQueryResponse
from ...services import deployments as service
from ...space_checks import checked_deployment_query
from ..deps import AdmissionDep, ReaderDep, caller_of

router = APIRouter(prefix="/v1/deployments", tags=["deployments"])


@router.post(
    "/query",
    response_model=DeploymentQueryResponse,
    responses={
        404: {"description": "Unknown device, or a task or the device without measurements"},
        409: {"description": "A predictor is not fitted yet (retry shortly)"},
        422: {
            "description": "Bad request, or no deployment meets the budgets (the answer names the closest)"
        },
        **ADMISSION_RESPONSES,
    },
)
async def query_deployment(
    body: Annotated[DeploymentQueryRequest, Depends(checked_deployment_query)],
    request: Request,
    reader: ReaderDep,
    admission: AdmissionDep,
) -> DeploymentQueryResponse:
    """Per task a path (arch, config, predicted score and latency with std and P(feasible)) that
    together maximise the weighted sum of the tasks' normalised predicted scores, each task
    meeting its latency budget with probability ``confidence``, within the memory cap
    (``max_params``, or ``max_weight_mb`` of ``dtype`` weights); weights the tasks share are
    stored once. The answer is stored: the same query on the same predictors returns it again.
    A new answer is searched in the server's queue of heavy work (``heavy_*`` settings).
    """
    state = request.app.state
    return await service.query_deployment(
        state.read_sessions, body, state.refitter.runner, admission, caller_of(reader), request
    )
