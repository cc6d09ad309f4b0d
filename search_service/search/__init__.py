"""The predicted Pareto front, in one package: its types, its stored form, its computation (exact
fronts, NSGA-II), budget queries (with a parameter cap), (score, parameters) fronts, the cache of
stored fronts, and multi-task deployment queries.

Modules: :mod:`._result` (what a front is: points, candidates, their dict form), :mod:`._codec`
(the bytes stored in the ``fronts`` table), :mod:`._compute` (searching a front), :mod:`._bounds`
(scores within their label's bounds), :mod:`._budget` (budget queries), :mod:`._cache` (decoded
stored fronts, in memory), :mod:`._deployment` (multi-task deployments), :mod:`._nsga2` and
:mod:`._pareto` (the search's building blocks).

No web framework or database imports: the cache reads the stored fronts through the
:class:`StoredFrontReads` its caller passes. Routes, CLI commands and work functions call the
package and hold no front logic.
"""

from ._budget import Choice, NothingFitsError, budget_query
from ._cache import FrontCache, LoadedFront, StoredFrontReads
from ._codec import decode_front, encode_front
from ._compute import EncodedPredictor, Predictor, compute_front, enumerate_codes
from ._deployment import (
    DeploymentAnswer,
    NoFeasibleDeploymentError,
    SharedLatency,
    TaskAnswer,
    TaskGoal,
    solve_deployment,
)
from ._nsga2 import Archive, EvolutionConfig, Evolver, Objective, evolve, homogeneous_codes, random_codes
from ._pareto import crowding_distance, hypervolume, non_dominated_sort, pareto_mask
from ._result import (
    DEFAULT_CONFIDENCES,
    FRONT_OBJECTIVES,
    CandidateSet,
    FrontObjective,
    FrontPoint,
    FrontResult,
    candidate_front,
    resolve_front,
)

__all__ = [
    "DEFAULT_CONFIDENCES",
    "FRONT_OBJECTIVES",
    "Archive",
    "CandidateSet",
    "Choice",
    "DeploymentAnswer",
    "EncodedPredictor",
    "EvolutionConfig",
    "Evolver",
    "FrontCache",
    "FrontObjective",
    "FrontPoint",
    "FrontResult",
    "LoadedFront",
    "StoredFrontReads",
    "NoFeasibleDeploymentError",
    "NothingFitsError",
    "Objective",
    "Predictor",
    "SharedLatency",
    "TaskAnswer",
    "TaskGoal",
    "budget_query",
    "candidate_front",
    "compute_front",
    "crowding_distance",
    "decode_front",
    "encode_front",
    "enumerate_codes",
    "evolve",
    "homogeneous_codes",
    "hypervolume",
    "non_dominated_sort",
    "pareto_mask",
    "random_codes",
    "resolve_front",
    "solve_deployment",
]
