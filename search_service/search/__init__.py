"""Pareto search on predicted (score, latency): exact fronts, NSGA-II, budget queries (with a
parameter cap), and (score, parameters) fronts.

A pure package (numpy, torch, botorch): no web framework or database imports.
"""

from ._deployment import (
    DeploymentAnswer,
    NoFeasibleDeploymentError,
    SharedLatency,
    TaskAnswer,
    TaskGoal,
    solve_deployment,
)
from ._front import (
    DEFAULT_CONFIDENCES,
    FRONT_OBJECTIVES,
    CandidateSet,
    Choice,
    EncodedPredictor,
    FrontObjective,
    FrontPoint,
    FrontResult,
    NothingFitsError,
    Predictor,
    budget_query,
    candidate_front,
    compute_front,
    enumerate_codes,
    resolve_front,
)
from ._nsga2 import Archive, EvolutionConfig, Evolver, Objective, evolve, homogeneous_codes, random_codes
from ._pareto import crowding_distance, hypervolume, non_dominated_sort, pareto_mask

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
    "FrontObjective",
    "FrontPoint",
    "FrontResult",
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
