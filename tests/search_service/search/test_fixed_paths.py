"""A task whose ffn_path is fixed (e.g. by its trained gates) is searched only over the paths that
keep it: fronts and deployment queries alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_service.search import TaskGoal, compute_front, solve_deployment
from supernet import DefinitionError, SpaceDefinition, space_from_definition

FIXED = ["task", "shared", "task"]


def definition(**task_overrides) -> dict:
    return {
        "name": "gated",
        "family": "ufo",
        "arch_format": "multipath",
        "tasks": [{"name": "a", "head": 4, "ffn_paths": FIXED} | task_overrides, {"name": "b", "head": 4}],
        "depths": [2, 3],
        "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [2.0, 1.0], "num_heads": [2, 1]},
        "geometry": {"embed_dim": 16, "head_dim": 4, "patch_size": 8, "image_size": 16},
    }


class Linear:
    """A deterministic model on the one-hot code (a stand-in fitted predictor)."""

    def __init__(self, space, seed: int) -> None:
        self.space = space
        self.w = torch.as_tensor(np.random.default_rng(seed).uniform(0.1, 1.0, space.encoding_dim()))

    def predict(self, subnets):
        mean = self.space.encode(subnets) @ self.w
        return mean, 0.05 * mean


def ffn_paths(space, sub) -> list[str]:
    return [layer["ffn_path"] for layer in space.config(sub)["layers"]]


def test_definitions_carry_fixed_paths_and_check_them() -> None:
    space = space_from_definition(definition())
    assert space.fixed_ffn_paths == {"a": tuple(FIXED)}
    again = space.to_definition()
    assert again.tasks[0].ffn_paths == FIXED and again.tasks[1].ffn_paths is None
    assert "ffn_paths" not in again.to_json().split('"b"')[1]  # left out where nothing is fixed
    with pytest.raises(DefinitionError, match=r"tasks\[0\]\.ffn_paths: one per layer position, 3; got 2"):
        SpaceDefinition.load(definition(ffn_paths=["task", "task"]))
    no_path = definition()
    no_path["choices"] = {"mlp_ratio": [2.0], "num_heads": [2]}
    no_path["arch_format"], no_path["per_task"] = "indices", []
    with pytest.raises(DefinitionError, match="no ffn_path choice to fix"):
        SpaceDefinition.load(no_path)


def test_fronts_and_deployments_keep_a_tasks_fixed_paths() -> None:
    space = space_from_definition(definition())
    score, latency = Linear(space, 1), Linear(space, 2)
    for exact_limit in (1_000_000, 0):  # enumerated, then NSGA-II
        front = compute_front(space, score, latency, task="a", exact_limit=exact_limit, max_evaluations=400)
        assert front.points and all(
            ffn_paths(space, p.subnet) == FIXED[: p.subnet.depth] for p in front.points
        )
        free = compute_front(space, score, latency, task="b", exact_limit=exact_limit, max_evaluations=400)
        assert any(ffn_paths(space, p.subnet) != FIXED[: p.subnet.depth] for p in free.candidates.points())
    goals = [TaskGoal("a", 1.0, None, (0.0, 10.0)), TaskGoal("b", 1.0, None, (0.0, 10.0))]
    models = {"a": score, "b": Linear(space, 3)}
    for exact_limit in (2_000_000, 0):
        answer = solve_deployment(space, goals, models, latency, exact_limit=exact_limit, time_limit_s=None)
        a = answer.deployment["a"]
        assert ffn_paths(space, a) == FIXED[: a.depth]
        # The best under the restriction: the unrestricted optimum of task a alone may differ.
        best_a = max(
            (s for s in space.enumerate() if ffn_paths(space, s) == FIXED[: s.depth]),
            key=lambda s: float(score.predict([s])[0][0]),
        )
        assert float(score.predict([a])[0][0]) == pytest.approx(float(score.predict([best_a])[0][0]))


def test_trained_gates_give_a_space_whose_tasks_take_the_gated_paths() -> None:
    from supernet.training import LearnedGates, gated_definition

    space = space_from_definition(definition(ffn_paths=None))
    gates = LearnedGates(space.name, {"a": (0.9, 0.2, 0.5), "b": (0.1, 0.1, 0.4)})
    gated = space_from_definition(SpaceDefinition.from_text(gated_definition(space, gates).to_yaml()))
    assert gated.name == "gated-gated"
    assert gated.fixed_ffn_paths == {"a": ("task", "shared", "task"), "b": ("shared", "shared", "shared")}


def test_gates_on_a_space_without_both_ffn_paths_say_so() -> None:
    from supernet.training import LearnedGates, fix_ffn_paths

    definition = {
        "name": "task-only",
        "tasks": [{"name": "face"}],
        "depths": [2],
        "choices": {"ffn_path": ["task"], "mlp_ratio": [2.0], "num_heads": [2]},
        "per_task": ["ffn"],
        "geometry": {"embed_dim": 8, "patch_size": 8, "image_size": 16, "head_dim": 4},
    }
    space = space_from_definition(definition)
    gates = LearnedGates(space="task-only", p_task={"face": (0.9, 0.2)})
    with pytest.raises(ValueError, match="need both"):
        fix_ffn_paths(space, space.sample(1, seed=0), gates, "face")
