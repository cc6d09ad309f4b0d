"""UFO 2.0 deployments: the union of several tasks' weight slices, stored and run as one model.

Every task's output must equal its single-task extraction, the model must hold exactly
``deployment_params`` weights (checked against an independent count: the supernet entries that
receive a gradient from some task's path), and a shared-input forward must compute the common
layers once (checked with torch's MAC counter).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from supernet import (
    Deployment,
    build_supernet,
    deployment_choice_params,
    deployment_choices,
    deployment_macs,
    deployment_params,
    deployment_tree,
    deployment_weight_mb,
    example_input,
    export_deployment_onnx,
    reused_layers,
    space_from_definition,
)

# Paths of the tiny multipath space (depths 10-12; per layer s/t, mlp_ratio index, heads index).
SHARED = "12" + "s11" * 12
SHARED_NARROW = "12" + "s11" * 4 + "s22" * 8  # same first 4 layers as SHARED
EXPERTS = "10" + "t11" * 3 + "s11" * 7 + "000" * 2  # its own expert in the first three layers
MIXED = "11" + "s12t31s23t11s32t22s13t33s21t12s31" + "000"


def n_unique(model: torch.nn.Module) -> int:
    """Elements of the distinct storages behind ``model``'s parameters."""
    storages = {
        p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() // p.element_size()
        for p in model.parameters()
    }
    return sum(storages.values())


def used_weights(net, dep: Deployment) -> int:
    """Independent count of a deployment's weights: the supernet entries some task's path reads,
    found as the entries with a nonzero gradient of that task's output."""
    used = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in net.named_parameters()}
    x = example_input(net.space.geometry, 2, seed=3)
    for task, sub in dep:
        net.zero_grad(set_to_none=True)
        # A random projection of the output reaches every entry (a plain sum would cancel in
        # the final LayerNorm).
        out = net(x, sub, task)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(4))).sum().backward()
        for name, p in net.named_parameters():
            if p.grad is not None:
                used[name] |= p.grad != 0
    for name, mask in used.items():
        if name.endswith("attn.qkv.bias"):
            # Softmax is invariant to the key bias (it adds the same q.b to every key's logit), so
            # it gets no gradient: the keys' entries are those of the queries.
            mask.view(3, -1)[1] = mask.view(3, -1)[0]
    return int(sum(mask.sum() for mask in used.values()))


def deployments(space) -> list[Deployment]:
    tasks = space.tasks
    parse = space.parse
    if space.name == "ufo2-multipath":
        return [
            Deployment.of(space.name, {tasks[0]: parse(SHARED), tasks[1]: parse(SHARED)}),
            Deployment.of(space.name, {tasks[0]: parse(SHARED), tasks[1]: parse(SHARED_NARROW)}),
            Deployment.of(
                space.name,
                {tasks[0]: parse(EXPERTS), tasks[1]: parse(MIXED), tasks[2]: parse(SHARED_NARROW)},
            ),
            Deployment.of(space.name, dict(zip(tasks, space.sample(4, seed=1), strict=True))),
        ]
    subs = space.sample(3, seed=2)
    return [
        Deployment.of(space.name, {tasks[0]: subs[0], tasks[1]: subs[0]}),
        Deployment.of(space.name, dict(zip(tasks[:3], subs, strict=True))),
    ]


@pytest.mark.parametrize("name", ["ufo2-multipath", "ufo-track2"])
def test_each_task_equals_its_single_extraction(name: str, make_supernet) -> None:
    net = make_supernet(name)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for dep in deployments(net.space):
        model = net.extract_deployment(dep).eval()
        shared = model.forward_shared(x)
        separate = model.forward_separate({task: x for task in dep.tasks})
        assert list(shared) == list(dep.tasks)
        for task, sub in dep:
            single = net.extract(sub, task)(x)
            torch.testing.assert_close(model(x, task), single, atol=1e-5, rtol=0)
            torch.testing.assert_close(shared[task], single, atol=1e-5, rtol=0)
            torch.testing.assert_close(separate[task], single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["ufo2-multipath", "ufo-track2"])
def test_the_model_stores_exactly_the_union_of_the_paths(name: str, make_supernet) -> None:
    net = make_supernet(name)
    space = net.space
    for dep in deployments(space):
        model = net.extract_deployment(dep)
        counted = deployment_params(space, dep)
        assert n_unique(model) == counted
        assert used_weights(net, dep) == counted
        # Nothing points back into the supernet.
        ours = {p.untyped_storage().data_ptr() for p in model.parameters()}
        assert ours.isdisjoint(p.untyped_storage().data_ptr() for p in net.parameters())
        assert deployment_weight_mb(space, dep, "float16") == pytest.approx(2 * counted / 1e6)


def test_sharing_stores_less_than_the_independent_models(make_supernet) -> None:
    net = make_supernet("ufo2-multipath")
    space = net.space
    a, b, c = space.tasks[:3]
    one = {task: space.param_count(space.parse(SHARED), task) for task in (a, b)}
    same = Deployment.of(space.name, {a: space.parse(SHARED), b: space.parse(SHARED)})
    head = space.param_count(space.parse(SHARED), b) - space.param_count(space.parse(SHARED))
    # Same all-shared path: the second task adds only its head.
    assert deployment_params(space, same) == one[a] + head
    # Own experts are stored per task, so the same path on experts shares only the rest.
    expert = space.parse(EXPERTS)
    dep = Deployment.of(space.name, {a: expert, c: expert})
    e, hidden = space.geometry.embed_dim, space.geometry.ffn_hidden(space.dimensions[1].values[0])
    expert_params = 3 * (2 * e * hidden + hidden + e)
    assert deployment_params(space, dep) == space.param_count(expert, a) + head + expert_params
    # A one-task deployment is the single extraction.
    for sub in space.sample(5, seed=3):
        assert deployment_params(space, Deployment.of(space.name, {a: sub})) == space.param_count(sub, a)


def test_shared_input_computes_common_layers_once(make_supernet) -> None:
    net = make_supernet("ufo2-multipath")
    space = net.space
    a, b, c = space.tasks[:3]
    same = Deployment.of(space.name, {a: space.parse(SHARED), b: space.parse(SHARED)})
    layers, last = deployment_tree(space, same)
    assert len(layers) == 12 and last[a] == last[b] and layers[0].tasks == (a, b)
    prefix = Deployment.of(space.name, {a: space.parse(SHARED), b: space.parse(SHARED_NARROW)})
    layers, _ = deployment_tree(space, prefix)
    assert len(layers) == 4 + 2 * 8 and [n.tasks for n in layers[:4]] == [(a, b)] * 4
    # Expert layers are never shared, and nothing after them either.
    experts = Deployment.of(space.name, {a: space.parse(EXPERTS), c: space.parse(EXPERTS)})
    assert len(deployment_tree(space, experts)[0]) == 2 * 10

    for dep in [same, prefix, experts, *deployments(space)]:
        model = net.extract_deployment(dep).eval()
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            model.forward_shared(torch.randn(1, 3, 32, 32))
        assert counter.get_total_flops() == 2 * deployment_macs(space, dep, "shared")
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            model.forward_separate({task: torch.randn(1, 3, 32, 32) for task in dep.tasks})
        assert counter.get_total_flops() == 2 * deployment_macs(space, dep, "separate")
    assert deployment_macs(space, same, "shared") < deployment_macs(space, same, "separate")


@pytest.mark.parametrize("name", ["ufo2-multipath", "ufo-track2"])
def test_vectorised_counts_match_the_tree(name: str, make_supernet) -> None:
    space = make_supernet(name).space
    deps = deployments(space)
    rng = np.random.default_rng(0)
    for _ in range(30):  # random deployments that share prefixes by copying a path and cutting it
        tasks = list(rng.choice(space.tasks, size=3, replace=False))
        base = space.sample(1, seed=int(rng.integers(1 << 30)))[0]
        subs = [base, *space.sample(2, seed=int(rng.integers(1 << 30)))]
        cut = int(rng.integers(0, base.depth))
        subs[1] = type(base)(space.name, base.depth, base.layers[:cut] + subs[1].layers[cut : base.depth])
        if subs[1].depth != len(subs[1].layers):
            continue
        deps.append(Deployment.of(space.name, dict(zip(tasks, subs, strict=True))))
    for dep in deps:
        codes = deployment_choices(space, dep)
        assert deployment_choice_params(space, dep.tasks, codes)[0] == deployment_params(space, dep)
        tree, _ = deployment_tree(space, dep)
        computed = (codes[..., 0] >= 0) & ~reused_layers(space, codes)
        assert computed.sum() == len(tree)


@pytest.mark.parametrize("input", ["shared", "separate"])
def test_onnx_has_one_output_per_task_and_stores_weights_once(input: str, make_supernet, tmp_path) -> None:
    net = make_supernet("ufo2-multipath")
    space = net.space
    a, b, c = space.tasks[:3]
    dep = Deployment.of(
        space.name, {a: space.parse(SHARED), b: space.parse(SHARED_NARROW), c: space.parse(MIXED)}
    )
    model = net.extract_deployment(dep).eval()
    # Exported at batch 1 with a dynamic batch axis, run at batch 2.
    path = export_deployment_onnx(model, tmp_path / "dep.onnx", input=input, dynamic_batch=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == [f"output_{t}" for t in dep.tasks]
    x = example_input(space.geometry, 2)
    feed = {i.name: x.numpy() for i in session.get_inputs()}
    assert list(feed) == (["images"] if input == "shared" else [f"images_{t}" for t in dep.tasks])
    outputs = session.run(None, feed)
    with torch.no_grad():
        for task, out in zip(dep.tasks, outputs, strict=True):
            np.testing.assert_allclose(out, model(x, task).numpy(), atol=1e-4)
    # Each weight once: the initializers are the union, and no node holds a folded copy of a slice.
    graph = onnx.load(str(path)).graph
    assert sum(int(np.prod(t.dims)) for t in graph.initializer) == deployment_params(space, dep)
    constants = [a.t for node in graph.node if node.op_type == "Constant" for a in node.attribute if a.t.dims]
    assert max(int(np.prod(t.dims)) for t in constants) < 100


def test_bad_deployments_are_refused(make_supernet) -> None:
    net = make_supernet("ufo2-multipath")
    space = net.space
    sub = space.parse(SHARED)
    with pytest.raises(ValueError, match="at least one task"):
        Deployment(space.name, ())
    with pytest.raises(ValueError, match="each task once"):
        Deployment(space.name, (("face", sub), ("face", sub)))
    with pytest.raises(ValueError, match="unknown task 'cat'"):
        deployment_params(space, Deployment.of(space.name, {"cat": sub}))
    with pytest.raises(ValueError, match="not 'ufo2-multipath'"):
        net.extract_deployment(Deployment.of("ufo-track2", {"face": sub}))
    other = make_supernet("ufo-track2").space.sample(1, seed=0)[0]
    with pytest.raises(ValueError, match="task 'face': .*belongs to space 'ufo-track2'"):
        deployment_params(space, Deployment.of(space.name, {"face": other}))
    model = net.extract_deployment({"face": SHARED, "person": MIXED})
    with pytest.raises(ValueError, match="task 'vehicle' is not in this deployment"):
        model(torch.randn(1, 3, 32, 32), "vehicle")
    with pytest.raises(ValueError, match="inputs must name the tasks"):
        model.forward_separate({"face": torch.randn(1, 3, 32, 32)})
    with pytest.raises(ValueError, match="input must be B x 3 x 32 x 32"):
        model.forward_shared(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="unknown dtype 'int4'"):
        deployment_weight_mb(space, model.deployment, "int4")


def stem_space():
    """A multipath space with a stem per task, as UFO's released supernet has."""
    return space_from_definition(
        {
            "name": "ufo-stems",
            "family": "ufo",
            "arch_format": "multipath",
            "tasks": [{"name": "a", "head": 4}, {"name": "b", "head": None}, {"name": "c", "head": 3}],
            "depths": [2, 3],
            "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [2.0, 1.0], "num_heads": [2, 1]},
            "per_task": ["ffn", "stem"],
            "geometry": {"embed_dim": 16, "head_dim": 4, "patch_size": 8, "image_size": 16},
        }
    )


def test_a_stem_per_task_is_stored_per_task_and_shares_no_layer() -> None:
    space = stem_space()
    assert space.per_task_stem and space.to_definition().per_task == ["ffn", "stem"]
    net = build_supernet(space, seed=0).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    keys = set(net.state_dict())
    assert {"stems.a.patch_embed.weight", "stems.b.cls_token", "stems.c.pos_embed"} <= keys
    assert "patch_embed.weight" not in keys
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    path = space.parse("03" + "s11" * 3)
    assert net.stem_parts("a")[2] is not net.stem_parts("b")[2]
    dep = Deployment.of(space.name, {"a": path, "b": path, "c": space.parse("02" + "t21s12" + "000")})
    model = net.extract_deployment(dep).eval()
    for task, sub in dep:
        single = net.extract(sub, task)
        torch.testing.assert_close(single(x), net(x, sub, task), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.forward_shared(x)[task], single(x), atol=1e-5, rtol=0)
    counted = deployment_params(space, dep)
    assert n_unique(model) == counted == used_weights(net, dep)
    stem = 3 * 8 * 8 * 16 + 16 + 16 + 5 * 16
    assert counted - deployment_params(space, Deployment.of(space.name, {"a": path, "b": path})) > stem
    layers, _ = deployment_tree(space, dep)
    assert len(layers) == 3 + 3 + 2  # nothing shared: every task starts from its own tokens
    assert not reused_layers(space, deployment_choices(space, dep)).any()
    with pytest.raises(ValueError, match="so a task is required"):
        net.extract(path)
