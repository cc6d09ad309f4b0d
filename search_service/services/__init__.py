"""The application layer: what the API routes, the CLI commands and the workers call as thin
adapters (ingest, campaign planning, deployment answers, artifact builds, spaces, job completion,
level shifts; refits are :class:`~search_service.refit.Refitter`'s).

:data:`REQUEST_HANDLERS` hands the requests' task functions to the runners that run them (in
process, or on a Celery worker), so that the work layer below does not import this one.
"""

from ..work import RequestHandlers
from .artifacts import build_and_store_artifact
from .campaigns import plan_and_store_campaign
from .deployments import answer_and_store_deployment

REQUEST_HANDLERS = RequestHandlers(
    campaign=plan_and_store_campaign,
    deployment=answer_and_store_deployment,
    artifact=build_and_store_artifact,
)

__all__ = ["REQUEST_HANDLERS"]
