"""Deployment queries: exhaustive and evolutionary answers equal a brute force over every
combination of paths, on small spaces where the brute force is cheap."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from scipy.special import ndtri

from search_service.search import NoFeasibleDeploymentError, TaskGoal, solve_deployment
from supernet import (
    Deployment,
    MultipathSpace,
    Subnet,
    ViTGeometry,
    deployment_choices,
    deployment_params,
    reused_layers,
)

GEOMETRY = ViTGeometry(embed_dim=16, head_dim=4, patch_size=8, image_size=16)


def small_space(mlp_ratios=(2.0, 1.0)) -> MultipathSpace:
    return MultipathSpace(
        {"a": 4, "b": 4, "c": None}, depths=(1, 2), mlp_ratios=mlp_ratios, num_heads=(2, 1), geometry=GEOMETRY
    )


class TableModel:
    """A fixed random score per (layer, choice) summed over the path; std a share of the mean."""

    def __init__(self, space, seed: int, scale: float = 1.0, relative_std: float = 0.05) -> None:
        rng = np.random.default_rng(seed)
        self.space = space
        self.table = rng.uniform(0.2, 1.0, (space.max_depth, *[len(d) for d in space.dimensions])) * scale
        self.relative_std = relative_std

    def values(self, codes: np.ndarray) -> np.ndarray:
        active = codes[:, :, 0] >= 0
        safe = np.where(codes >= 0, codes, 0)
        layer = np.arange(self.space.max_depth)[None, :]
        picked = self.table[(layer, *np.moveaxis(safe, 2, 0))]
        return np.where(active, picked, 0.0).sum(1) + 0.1

    def predict(self, subnets: Sequence[Subnet]) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.values(self.space.choice_matrix(subnets))
        return torch.as_tensor(mean), torch.as_tensor(self.relative_std * mean)


def shared_latency_of(latency: TableModel):
    """Joint latency: the paths' latencies minus the layers a shared input reuses."""

    def shared(codes, mean, std):
        reused = reused_layers(latency.space, codes)
        n, tasks, depth, _ = codes.shape
        safe = np.where(codes >= 0, codes, 0)
        layer = np.arange(depth)[None, None, :]
        cost = latency.table[(layer, *np.moveaxis(safe, 3, 0))]
        saved = np.where(reused, cost, 0.0).sum((1, 2))
        return mean.sum(1) - saved, np.sqrt((std**2).sum(1))

    return shared


def brute_force(space, goals, scores, latency, confidence, max_params, shared=None):
    """The best objective over every combination of paths, one deployment at a time."""
    subs = list(space.enumerate())
    z = ndtri(confidence)
    predicted = {
        g.task: dict(
            zip(subs, zip(*(v.numpy() for v in scores[g.task].predict(subs)), strict=True), strict=True)
        )
        for g in goals
    }
    lat = dict(zip(subs, zip(*(v.numpy() for v in latency.predict(subs)), strict=True), strict=True))
    best = -np.inf
    for combo in itertools.product(subs, repeat=len(goals)):
        dep = Deployment(space.name, tuple((g.task, s) for g, s in zip(goals, combo, strict=True)))
        if max_params is not None and deployment_params(space, dep) > max_params:
            continue
        if shared is None:
            uppers = [lat[s][0] + z * lat[s][1] for s in combo]
        else:
            codes = deployment_choices(space, dep)
            mean = np.array([[lat[s][0] for s in combo]])
            std = np.array([[lat[s][1] for s in combo]])
            m, sd = shared(codes, mean, std)
            uppers = [m[0] + z * sd[0]] * len(goals)
        budgets = [np.inf if g.latency_budget_ms is None else g.latency_budget_ms for g in goals]
        if any(u > b for u, b in zip(uppers, budgets, strict=True)):
            continue
        objective = sum(
            g.weight * (predicted[g.task][s][0] - g.score_range[0]) / g.scale
            for g, s in zip(goals, combo, strict=True)
        )
        best = max(best, objective)
    return best


def problem(space, tasks):
    scores = {task: TableModel(space, seed=i + 1, scale=10.0 * (i + 1)) for i, task in enumerate(tasks)}
    latency = TableModel(space, seed=99)
    ranges = {task: (0.0, 20.0 * (i + 1)) for i, task in enumerate(tasks)}
    return scores, latency, ranges


@pytest.mark.parametrize("input", ["separate", "shared"])
@pytest.mark.parametrize("cap_share", [None, 0.75, 0.5])
def test_answers_equal_brute_force_on_a_small_space(input: str, cap_share) -> None:
    space = small_space()
    tasks = ["a", "b"]
    scores, latency, ranges = problem(space, tasks)
    goals = [
        TaskGoal("a", weight=2.0, latency_budget_ms=1.6, score_range=ranges["a"]),
        TaskGoal("b", weight=1.0, latency_budget_ms=1.3, score_range=ranges["b"]),
    ]
    shared = shared_latency_of(latency) if input == "shared" else None
    if input == "shared":  # one joint forward: give it room for both paths
        goals = [TaskGoal(g.task, g.weight, 2.2, g.score_range) for g in goals]
    largest = max(space.param_count(s, "a") for s in space.enumerate()) * 2
    max_params = None if cap_share is None else int(cap_share * largest)
    expected = brute_force(space, goals, scores, latency, 0.9, max_params, shared)
    assert np.isfinite(expected)
    for exact_limit in (2_000_000, 0):  # exhaustive, then the evolutionary search alone
        answer = solve_deployment(
            space,
            goals,
            scores,
            latency,
            confidence=0.9,
            max_params=max_params,
            input=input,
            shared_latency=shared,
            exact_limit=exact_limit,
            time_limit_s=None,
            seed=3,
        )
        assert answer.method == ("exact" if exact_limit else "evolution")
        assert answer.objective == pytest.approx(expected, abs=1e-9)
        assert answer.params == deployment_params(space, answer.deployment)
        if max_params is not None:
            assert answer.params <= max_params
        for task_answer, goal in zip(answer.tasks, goals, strict=True):
            assert (
                task_answer.latency_ms + ndtri(0.9) * task_answer.latency_std <= goal.latency_budget_ms + 1e-9
            )
            assert task_answer.p_feasible >= 0.9 - 1e-9


def test_three_tasks_and_seeds() -> None:
    space = small_space(mlp_ratios=(2.0,))
    tasks = ["a", "b", "c"]
    scores, latency, ranges = problem(space, tasks)
    goals = [TaskGoal(t, 1.0, 1.5, ranges[t]) for t in tasks]
    largest = max(space.param_count(s) for s in space.enumerate()) * 3
    expected = brute_force(space, goals, scores, latency, 0.9, int(0.5 * largest))
    seeds = {t: space.sample(3, seed=i) for i, t in enumerate(tasks)}
    answer = solve_deployment(
        space,
        goals,
        scores,
        latency,
        max_params=int(0.5 * largest),
        seeds=seeds,
        exact_limit=0,
        time_limit_s=None,
        seed=0,
    )
    assert answer.objective == pytest.approx(expected, abs=1e-9)
    assert [t.task for t in answer.tasks] == tasks


def test_memory_sharing_is_what_makes_a_tight_cap_feasible() -> None:
    space = small_space()
    scores, latency, ranges = problem(space, ["a", "b"])
    goals = [TaskGoal("a", 1.0, None, ranges["a"]), TaskGoal("b", 1.0, None, ranges["b"])]
    # Room for one path of the largest subnet (plus b's head), not for two different ones.
    big = max(space.enumerate(), key=lambda s: space.param_count(s, "a"))
    cap = space.param_count(big, "a") + 4 * 16 + 4
    answer = solve_deployment(space, goals, scores, latency, max_params=cap, time_limit_s=None)
    assert answer.params <= cap
    assert answer.objective == pytest.approx(brute_force(space, goals, scores, latency, 0.9, cap), abs=1e-9)


def test_nothing_feasible_names_the_binding_constraint() -> None:
    space = small_space()
    scores, latency, ranges = problem(space, ["a", "b"])
    goals = [TaskGoal("a", 1.0, 0.01, ranges["a"]), TaskGoal("b", 1.0, 100.0, ranges["b"])]
    with pytest.raises(NoFeasibleDeploymentError, match="task 'a' is predicted at .* budget of 0.01 ms"):
        solve_deployment(space, goals, scores, latency)
    goals = [TaskGoal("a", 1.0, None, ranges["a"]), TaskGoal("b", 1.0, None, ranges["b"])]
    with pytest.raises(NoFeasibleDeploymentError, match="parameters against max_params 10"):
        solve_deployment(space, goals, scores, latency, max_params=10, exact_limit=0, time_limit_s=None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"goals": []}, "at least one task"),
        ({"goals": [TaskGoal("a"), TaskGoal("a")]}, "each once"),
        ({"goals": [TaskGoal("zzz")]}, r"no score model for task\(s\) \['zzz'\]"),
        ({"max_params": 0}, "max_params must be positive"),
        ({"input": "shared"}, "needs a shared-latency model"),
        ({"confidence": 1.0}, "confidence must lie strictly between 0 and 1"),
    ],
)
def test_bad_queries_are_refused(kwargs, message) -> None:
    space = small_space()
    scores, latency, _ = problem(space, ["a", "b"])
    args = {"goals": [TaskGoal("a")]} | kwargs
    with pytest.raises(ValueError, match=message):
        solve_deployment(space, args.pop("goals"), scores, latency, **args)


def test_goal_validation() -> None:
    with pytest.raises(ValueError, match="task 'a': weight must be a positive number"):
        TaskGoal("a", weight=0.0)
    with pytest.raises(ValueError, match="task 'a': latency_budget_ms must be positive"):
        TaskGoal("a", latency_budget_ms=-1.0)
