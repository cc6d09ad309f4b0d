"""Deployment latency from single paths: exact on latencies that a per-layer cost line generates.

The synthetic device's latency is ``intercept + w . costs`` of every layer computed, so a shared
input's true latency is the intercept's shared part once plus each :class:`SharedLayer` of
:func:`supernet.deployment_tree` once, computed here independently of the model (from the tree
and the layers' shapes rather than from choice matrices and :func:`supernet.reused_layers`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from predictors import STD_RULES, CostModel, DeploymentLatencyModel, create_predictor
from supernet import (
    MULTIPATH_TASKS,
    UFO_COSTS,
    Deployment,
    LayerSpec,
    MultipathSpace,
    Subnet,
    Track2Space,
    ViTGeometry,
    deployment_tree,
    get_space,
)

TINY = ViTGeometry(embed_dim=64, patch_size=8, image_size=32, head_dim=8, in_chans=3)
SPACE = MultipathSpace(MULTIPATH_TASKS, geometry=TINY)
# Intercept (ms) and ms per unit of UFO_COSTS (linear, attention, FFN MACs; layers; heads).
W = np.array([0.4, 3e-7, 5e-7, 2e-7, 0.02, 0.003])
HEADS_MS = 0.1  # part of the intercept that runs per task (final norm, head) at fixed_share < 1

SHARED = SPACE.parse("12" + "s11" * 12)
NARROW = SPACE.parse("12" + "s11" * 4 + "s22" * 8)  # the first 4 layers of SHARED
EXPERTS = SPACE.parse("10" + "t11" * 3 + "s11" * 7 + "000" * 2)  # own expert in the first three
MIXED = SPACE.parse("11" + "s12t31s23t11s32t22s13t33s21t12s31" + "000")


def path_ms(subs: list[Subnet]) -> np.ndarray:
    return W[0] + SPACE.costs(subs) @ W[1:]


def layer_ms(spec: LayerSpec) -> float:
    g = SPACE.geometry
    e, t, a = g.embed_dim, g.num_tokens, spec.num_heads * g.head_dim
    costs = [4 * t * e * a, 2 * t * t * a, 2 * t * e * spec.ffn_hidden, 1, spec.num_heads]
    return float(np.dot(W[1:], costs))


def shared_truth(dep: Deployment, per_task_ms: float = 0.0) -> float:
    """The synthetic device's shared-input latency: the per-forward part once, each tree layer
    once, the per-task part per task."""
    layers, _ = deployment_tree(SPACE, dep)
    return W[0] - per_task_ms + len(dep) * per_task_ms + sum(layer_ms(node.spec) for node in layers)


class ExactPaths:
    """The device's latency predictor when it is exact (any object with ``predict`` will do)."""

    def __init__(self, std: float = 0.0) -> None:
        self.std, self.calls = std, 0

    def predict(self, subnets):
        self.calls += 1
        mean = torch.as_tensor(path_ms(list(subnets)))
        return mean, torch.full_like(mean, self.std)


@pytest.fixture(scope="module")
def model() -> DeploymentLatencyModel:
    """The synthetic device's whole intercept is its stem, computed once per forward."""
    train = SPACE.sample(48, seed=0)
    return DeploymentLatencyModel.fit(
        SPACE, train, path_ms(train), stem_ms=W[0], head_ms=0.0, fixed_rel_std=0.0, joint_rel_std=0.0
    )


def with_heads() -> DeploymentLatencyModel:
    """The synthetic device with :data:`HEADS_MS` of its intercept run per task."""
    train = SPACE.sample(48, seed=1)
    return DeploymentLatencyModel.fit(
        SPACE, train, path_ms(train), stem_ms=W[0] - HEADS_MS, head_ms=HEADS_MS, fixed_rel_std=0.0
    )


def exact(deps: list[Deployment]) -> tuple[np.ndarray, np.ndarray]:
    """Precomputed exact path latencies (``n x T``, NaN padding) and zero stds."""
    most = max(len(d) for d in deps)
    mean = np.full((len(deps), most), np.nan)
    for i, dep in enumerate(deps):
        mean[i, : len(dep)] = path_ms([sub for _, sub in dep])
    return mean, np.where(np.isnan(mean), np.nan, 0.0)


def deployments() -> list[Deployment]:
    return [
        Deployment.of(SPACE.name, {"face": SHARED, "person": SHARED}),
        Deployment.of(SPACE.name, {"face": SHARED, "person": NARROW}),
        Deployment.of(SPACE.name, {"face": SHARED, "person": NARROW, "vehicle": EXPERTS}),
        Deployment.of(SPACE.name, {"face": EXPERTS, "person": EXPERTS, "vehicle": MIXED, "product": NARROW}),
        Deployment.of(SPACE.name, {"product": MIXED, "face": SHARED}),
        Deployment.of(SPACE.name, {"product": NARROW, "face": SHARED, "person": SHARED}),
        *(
            Deployment.of(SPACE.name, dict(zip(SPACE.tasks[:k], SPACE.sample(k, seed=k), strict=False)))
            for k in (2, 3, 4)
        ),
    ]


def test_the_cost_line_of_exact_paths_is_exact_and_the_stem_is_priced_by_its_macs(model):
    test = SPACE.sample(20, seed=9)
    assert model.cost_model.predict(SPACE.costs(test)) == pytest.approx(path_ms(test), rel=1e-9)
    assert model.saving_rel_std < 1e-9  # out-of-fold error of an exact line
    train = SPACE.sample(30, seed=4)
    default = DeploymentLatencyModel.fit(SPACE, train, path_ms(train))
    per_mac = np.median(path_ms(train) / SPACE.macs(train))
    g = SPACE.geometry
    assert default.stem_ms == pytest.approx(per_mac * g.num_patches * g.embed_dim * 3 * g.patch_size**2)
    assert default.head_ms == pytest.approx(per_mac * g.embed_dim * MULTIPATH_TASKS["face"])
    assert default.std_rule == "correlated" and default.fixed_rel_std == 1.0 and default.joint_rel_std == 0.02


def test_shared_input_prediction_is_exact_on_a_per_layer_cost_device(model):
    deps = deployments()
    truth = np.array([shared_truth(dep) for dep in deps])
    mean, std = model.predict(deps, ExactPaths())
    assert mean.shape == std.shape == (len(deps),) and mean.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), truth, rtol=1e-6)
    np.testing.assert_allclose(std.numpy(), 0.0, atol=1e-9)
    np.testing.assert_allclose(model.predict(deps, exact(deps))[0].numpy(), truth, rtol=1e-6)
    # Sharing saves something wherever two paths agree on their first layer, and the stem always.
    separate, _ = model.predict(deps, ExactPaths(), input="separate")
    assert (mean < separate).all()
    np.testing.assert_allclose(model.savings(deps, ExactPaths()), separate.numpy() - truth, rtol=1e-6)


def test_per_task_part_of_the_fixed_cost_is_not_shared():
    deps = deployments()
    truth = np.array([shared_truth(dep, HEADS_MS) for dep in deps])
    np.testing.assert_allclose(with_heads().predict(deps, ExactPaths())[0].numpy(), truth, rtol=1e-6)


def test_layers_take_the_paths_scale_and_the_lines_shares(model):
    # A device twice as slow in its layers as the line says: the shared forward follows the
    # paths' latencies, the line only says which share of each path is reused.
    deps = deployments()
    mean, std = exact(deps)
    slow = W[0] + 2 * (mean - W[0])
    predicted = model.predict(deps, (slow, std))[0].numpy()
    truth = np.array([W[0] + 2 * (shared_truth(dep) - W[0]) for dep in deps])
    np.testing.assert_allclose(predicted, truth, rtol=1e-6)
    shares = model.reused_shares(model.choices(deps))
    assert shares.shape == (len(deps), 4) and (shares >= 0).all() and (shares <= 1 + 1e-12).all()
    assert shares[0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0])  # identical paths


def test_one_task_deployment_predicts_its_path(model):
    deps = [
        Deployment.of(SPACE.name, {task: sub})
        for task, sub in zip(SPACE.tasks, (SHARED, MIXED, EXPERTS, NARROW), strict=True)
    ]
    means = np.array([[3.0], [4.0], [5.0], [6.0]])
    stds = np.array([[0.3], [0.1], [0.5], [0.2]])
    train = SPACE.sample(30, seed=5)
    for rule in STD_RULES:
        rule_model = DeploymentLatencyModel.fit(SPACE, train, path_ms(train), std_rule=rule)
        for input in ("shared", "separate"):
            mean, std = rule_model.predict(deps, (means, stds), input=input)
            np.testing.assert_allclose(mean.numpy(), means[:, 0])
            np.testing.assert_allclose(std.numpy(), stds[:, 0])
        assert rule_model.savings(deps, (means, stds)) == pytest.approx(np.zeros(4))


def test_identical_paths_save_one_path_but_its_per_task_part():
    model = with_heads()
    for sub in (SHARED, NARROW, SPACE.parse("10" + "s23s32" * 5 + "000" * 2)):
        one = float(path_ms([sub])[0])
        dep = Deployment.of(SPACE.name, {"face": sub, "vehicle": sub})
        paths = (np.array([[one, one]]), np.zeros((1, 2)))
        (saving,) = model.savings([dep], paths)
        assert saving == pytest.approx(one - HEADS_MS, rel=1e-6)
        assert float(model.predict([dep], paths)[0][0]) == pytest.approx(one + HEADS_MS, rel=1e-6)
    # Expert layers are never shared: only the stem is, and the shared layers after them are not
    # shared either (their inputs differ).
    dep = Deployment.of(SPACE.name, {"face": EXPERTS, "vehicle": EXPERTS})
    assert model.savings([dep], ExactPaths())[0] == pytest.approx(W[0] - HEADS_MS, rel=1e-6)


def test_separate_inputs_and_per_task_latencies(model):
    deps = deployments()
    paths = ExactPaths(std=0.05)
    per_task, per_task_std = model.predict_tasks(deps, paths)
    most = max(len(d) for d in deps)
    assert per_task.shape == per_task_std.shape == (len(deps), most)
    for row, dep in enumerate(deps):
        expected = path_ms([sub for _, sub in dep])
        np.testing.assert_allclose(per_task[row, : len(dep)].numpy(), expected)
        assert torch.isnan(per_task[row, len(dep) :]).all()
    mean, std = model.predict(deps, paths, input="separate")
    np.testing.assert_allclose(mean.numpy(), np.nansum(per_task.numpy(), 1))
    np.testing.assert_allclose(std.numpy(), [0.05 * len(d) for d in deps])  # correlated errors
    # The predictor is asked once for every path of every deployment.
    counted = ExactPaths()
    model.predict(deps, counted)
    assert counted.calls == 1


def test_std_counts_each_paths_error_for_the_part_that_runs(model):
    dep = [Deployment.of(SPACE.name, {"face": SHARED, "person": NARROW})]
    means, stds = np.array([[10.0, 8.0]]), np.array([[0.3, 0.4]])
    (_, reused), *_ = model.reused_shares(model.choices(dep))
    assert 0 < reused < 1  # NARROW's first four layers are SHARED's
    std = {}
    for rule in STD_RULES:
        ruled = dataclasses.replace(model, std_rule=rule)
        std[rule] = float(ruled.predict(dep, (means, stds))[1][0])
    assert std["correlated"] == pytest.approx(0.3 + (1 - reused) * 0.4)
    assert std["independent"] == pytest.approx(np.hypot(0.3, (1 - reused) * 0.4))
    # The cost line's error on the layers' saving, and the fixed parts' error, add in quadrature.
    noisy = dataclasses.replace(model, saving_rel_std=0.1)
    layers = reused * (8.0 - W[0])
    assert float(noisy.predict(dep, (means, stds))[1][0]) == pytest.approx(
        np.hypot(std["correlated"], 0.1 * layers)
    )
    unrelated = [Deployment.of(SPACE.name, {"face": EXPERTS, "person": MIXED})]
    fixed = dataclasses.replace(model, fixed_rel_std=0.5)
    assert float(fixed.predict(unrelated, (means, np.zeros((1, 2))))[1][0]) == pytest.approx(0.5 * W[0])
    # Running the paths as one model is its own error, relative to the joint latency, on either
    # input; a one-task deployment is its path and has none.
    joint = dataclasses.replace(model, joint_rel_std=0.02)
    for input in ("shared", "separate"):
        mean, std = joint.predict(unrelated, (means, np.zeros((1, 2))), input=input)
        assert float(std[0]) == pytest.approx(0.02 * float(mean[0]))
    one = [Deployment.of(SPACE.name, {"face": SHARED})]
    assert float(joint.predict(one, (np.array([[5.0]]), np.array([[0.1]])))[1][0]) == pytest.approx(0.1)


def test_the_joint_forward_is_never_faster_than_its_slowest_path(model):
    # Inconsistent path predictions (identical paths predicted far apart) cannot make the
    # joint forward faster than the slowest of them.
    dep = [Deployment.of(SPACE.name, {"face": SHARED, "person": SHARED})]
    mean, _ = model.predict(dep, (np.array([[1.0, 100.0]]), np.zeros((1, 2))))
    assert float(mean[0]) == pytest.approx(100.0)


def test_choice_matrices_and_precomputed_paths_agree_with_deployments(model):
    deps = [d for d in deployments() if len(d) == 3]
    codes = model.choices(deps)
    assert codes.shape == (len(deps), 3, SPACE.max_depth, len(SPACE.dimensions))
    means, stds = model.path_latencies(deps, ExactPaths(0.1))
    from_codes = model.predict_choices(codes, means, stds)
    from_deps = model.predict(deps, (torch.as_tensor(means), torch.as_tensor(stds)))
    for a, b in zip(from_codes, from_deps, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy())
    assert model.layer_costs(codes).shape == (len(deps), 3, SPACE.max_depth)


def test_a_real_gp_predicts_the_paths(model):
    train = SPACE.sample(16, seed=3)
    gp = create_predictor("gpnas", SPACE, metric="latency_ms").fit(train, torch.as_tensor(path_ms(train)))
    deps = deployments()[:3]
    mean, std = model.predict(deps, gp)
    assert mean.shape == std.shape == (3,) and (std > 0).all() and torch.isfinite(mean).all()
    np.testing.assert_allclose(mean.numpy(), [shared_truth(d) for d in deps], rtol=0.2)


def test_errors_name_what_is_wrong(model):
    other = MultipathSpace({"face": 512, "person": 512}, name="other-multipath", geometry=TINY)
    with pytest.raises(ValueError, match="space 'other-multipath', not 'ufo2-multipath'"):
        model.predict(
            [Deployment.of("other-multipath", {"face": other.parse("12" + "s11" * 12)})], ExactPaths()
        )
    with pytest.raises(ValueError, match="unknown task"):
        model.predict([Deployment.of(SPACE.name, {"cat": SHARED})], ExactPaths())
    with pytest.raises(ValueError, match="n x T"):
        model.predict(deployments()[:2], (np.ones(2), np.ones(2)))
    with pytest.raises(ValueError, match="has 3 tasks"):
        model.predict(deployments()[1:3], (np.ones((2, 2)), np.ones((2, 2))))
    with pytest.raises(ValueError, match="finite"):
        model.predict(deployments()[:1], (np.array([[1.0, np.nan]]), np.ones((1, 2))))
    with pytest.raises(ValueError, match="input must be"):
        model.predict(deployments()[:1], ExactPaths(), input="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one deployment"):
        model.predict([], ExactPaths())
    with pytest.raises(ValueError, match="n x T x 12 x 3"):
        model.predict_choices(np.zeros((2, 12, 3), dtype=int), np.ones((2, 1)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="not a UFO space"):
        DeploymentLatencyModel(get_space("fbnet"), model.cost_model)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a UFO space"):
        DeploymentLatencyModel.fit(get_space("fbnet"), [], [])
    with pytest.raises(ValueError, match="needs 6"):
        DeploymentLatencyModel(SPACE, CostModel(np.ones(3), 0.0))
    with pytest.raises(ValueError, match="stem_ms must be >= 0"):
        DeploymentLatencyModel(SPACE, model.cost_model, stem_ms=-1.0)
    with pytest.raises(ValueError, match="std_rule"):
        DeploymentLatencyModel(SPACE, model.cost_model, std_rule="max")  # type: ignore[arg-type]
    assert len(model.cost_model.weights) == 1 + len(UFO_COSTS)


def test_track2_paths_share_their_common_prefix():
    space = Track2Space(geometry=TINY)
    train = space.sample(40, seed=0)
    model = DeploymentLatencyModel.fit(space, train, 0.2 + space.costs(train) @ W[1:], stem_ms=0.2)
    a, b = space.parse("l" + "111" * 12), space.parse("l" + "111" * 6 + "221" * 6)
    dep = Deployment.of(space.name, {"cplfw": a, "veri": b})
    costs = model.layer_costs(model.choices([dep]))[0, 1]
    shares = model.reused_shares(model.choices([dep]))[0]
    assert shares.tolist() == pytest.approx([0.0, costs[:6].sum() / costs.sum()])
    one = [0.2 + space.costs([sub]) @ W[1:] for sub in (a, b)]
    mean = float(model.predict([dep], (np.array([np.concatenate(one)]), np.zeros((1, 2))))[0][0])
    assert mean == pytest.approx(0.2 + float(one[0][0] - 0.2) + costs[6:].sum(), rel=1e-9)
