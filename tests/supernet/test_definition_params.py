"""Parameter counts of spaces defined as data, in any choice order, against the built modules.

A definition may list its choices, and the values of each choice, in any order (``ffn_path:
[task, shared]`` as well as ``[shared, task]``). Every count of a subnet or a deployment must
follow the choices' names and values, never their positions: checked here on random tiny
definitions against the parameters that the extracted torch modules actually store.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import nn

from supernet import (
    Deployment,
    UFOSpace,
    build_supernet,
    deployment_choices,
    deployment_params,
    deployment_tree,
    reused_layers,
    space_from_definition,
)

# Tiny shapes: a supernet builds and extracts in milliseconds.
GEOMETRY = {"embed_dim": 8, "patch_size": 8, "image_size": 16, "head_dim": 2, "in_chans": 3}
FFN_PATHS = (None, ["shared", "task"], ["task", "shared"], ["task"])


def n_params(model: nn.Module) -> int:
    # Distinct parameters only: a deployed model holds each weight once.
    return sum(p.numel() for p in model.parameters())


def _values(draw: st.DrawFn, pool: list[Any]) -> list[Any]:
    # Any non-empty subset, in any order (the order is the choice indices').
    return draw(st.permutations(pool).flatmap(lambda p: st.integers(1, len(p)).map(lambda k: p[:k])))


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``indices`` UFO definition: random choices and value orders, tasks, depths, stem."""
    choices: dict[str, list[Any]] = {
        "num_heads": _values(draw, [1, 2, 3, 4]),
        "mlp_ratio": _values(draw, [0.5, 1.0, 1.5, 2.0]),
    }
    paths = draw(st.sampled_from(FFN_PATHS))
    if paths is not None:
        choices["ffn_path"] = paths
    order = draw(st.permutations(list(choices)))
    n_tasks = draw(st.integers(1, 3))
    heads = draw(st.lists(st.none() | st.integers(1, 5), min_size=n_tasks, max_size=n_tasks))
    per_task = (["ffn"] if paths is not None else []) + (["stem"] if draw(st.booleans()) else [])
    return {
        "name": "random",
        "tasks": [{"name": f"t{i}", "head": head} for i, head in enumerate(heads)],
        "depths": _values(draw, [1, 2, 3, 4]),
        "choices": {name: choices[name] for name in order},
        "per_task": per_task,
        "geometry": GEOMETRY,
    }


@settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
@given(definition=definitions(), data=st.data())
def test_counts_follow_choice_names_in_any_order(definition: dict[str, Any], data: st.DataObject) -> None:
    note(f"definition: {definition}")
    space = space_from_definition(definition)
    assert isinstance(space, UFOSpace)
    net = build_supernet(space, seed=0)
    pool = space.sample(min(4, space.cardinality), seed=data.draw(st.integers(0, 2**16), label="seed"))
    # Drawn from a small pool, so tasks often share whole paths or prefixes of them.
    paths = {task: pool[data.draw(st.integers(0, len(pool) - 1), label=task)] for task in space.tasks}
    for task, sub in paths.items():
        assert space.param_count(sub, task) == n_params(net.extract(sub, task)), (task, space.format(sub))

    dep = Deployment.of(space.name, paths)
    assert deployment_params(space, dep) == n_params(net.extract_deployment(dep))
    # The vectorised layer reuse agrees with the tree that a shared-input forward runs.
    layers, _ = deployment_tree(space, dep)
    computed = sum(sub.depth for sub in paths.values()) - int(
        reused_layers(space, deployment_choices(space, dep)).sum()
    )
    assert computed == len(layers)
