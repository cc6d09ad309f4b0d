"""Exact parameter counts of every preset (``SearchSpace.params`` / ``choice_params``).

UFO counts are checked against ``UFOSpace.param_count`` (which the supernet tests check against
extracted modules) and against extracted tiny modules directly; FBNet and NAS-Bench-201 counts
against the macro-architectures rebuilt here in torch, layer by layer, from their published
descriptions (HW-NAS-Bench's ``FBNet_Infer``, NAS-Bench-201's CIFAR ``TinyNetwork``), with
``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from supernet import Dimension, SearchSpace, Subnet, build_supernet, get_space

PRESETS = ("ufo-track2", "ufo2-multipath", "fbnet", "nasbench201")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_counts_parameters_as_int64(name: str) -> None:
    space = get_space(name)
    assert space.has_params
    subs = space.sample(50, seed=0)
    params = space.params(subs)
    assert params.shape == (50,) and params.dtype == np.int64 and (params > 0).all()
    np.testing.assert_array_equal(space.choice_params(space.choice_matrix(subs)), params)
    # The vectorised count is per row: a batch equals its rows counted one at a time.
    assert [int(space.params([s])[0]) for s in subs] == params.tolist()


@pytest.mark.parametrize("name", ["ufo-track2", "ufo2-multipath"])
def test_ufo_choice_params_equal_param_count_for_every_task(name: str) -> None:
    space = get_space(name)
    subs = space.sample(200, seed=1)
    for task in (None, *space.tasks):
        got = space.params(subs, task)
        assert got.tolist() == [space.param_count(s, task) for s in subs]


def test_ufo_hand_computed_count_and_task_heads() -> None:
    # Track 2, depth 10, every layer 12 heads (768 channels) and ratio 4.0 (3072 hidden).
    space = get_space("ufo-track2")
    sub = space.parse("j" + "111" * 10 + "000" * 2)
    e, a, h, tokens = 768, 768, 3072, 197
    stem = 3 * 16 * 16 * e + e + e + tokens * e
    layer = 2 * e + (e * 3 * a + 3 * a) + (a * e + e) + 2 * e + (e * h + h) + (h * e + e)
    assert space.params([sub])[0] == stem + 10 * layer + 2 * e
    # Track-2 tasks use the embedding (no head); UFO 2.0 tasks add a 768 -> 512 linear head.
    assert space.params([sub], "veri")[0] == space.params([sub])[0]
    multipath = get_space("ufo2-multipath")
    path = multipath.sample(5, seed=2)
    np.testing.assert_array_equal(
        multipath.params(path, "face") - multipath.params(path), np.full(5, 768 * 512 + 512)
    )
    # Which FFN a layer runs (shared or the task's expert) does not change the subnet's size.
    shared = Subnet(multipath.name, 10, ((0, 0, 0),) * 10)
    expert = Subnet(multipath.name, 10, ((1, 0, 0),) * 10)
    assert multipath.params([shared], "face")[0] == multipath.params([expert], "face")[0]


def test_ufo_counts_equal_extracted_modules(tiny: dict[str, int]) -> None:
    net = build_supernet("ufo2-multipath", seed=0, **tiny)
    space = net.space
    subs = space.sample(12, seed=4)
    for task in space.tasks[:2]:
        counts = space.params(subs, task)
        assert counts.tolist() == [n_params(net.extract(s, task)) for s in subs]


def test_unknown_tasks_are_refused_by_spaces_with_heads() -> None:
    space = get_space("ufo2-multipath")
    with pytest.raises(ValueError, match="unknown task 'cat'"):
        space.params(space.sample(2, seed=0), "cat")
    # FBNet and NAS-Bench-201 tasks all run one network: the task changes nothing.
    cells = get_space("nasbench201")
    subs = cells.sample(3, seed=0)
    np.testing.assert_array_equal(cells.params(subs, "cifar10"), cells.params(subs))


def test_a_space_without_a_count_says_so() -> None:
    space = SearchSpace("plain", [], [Dimension("op", (0, 1))], [2])
    assert not space.has_params
    with pytest.raises(NotImplementedError, match="no parameter count"):
        space.params(space.sample(2, seed=0))


# ---------------------------------------------------------------------------- FBNet in torch
def _conv_bn(c_in: int, c_out: int, kernel: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, groups=groups, bias=False), nn.BatchNorm2d(c_out)]


def _fbnet_model(arch: str) -> nn.Module:
    """HW-NAS-Bench's ImageNet FBNet_Infer: stem, 22 searchable layers, header, classifier."""
    blocks = {  # op -> (kernel, expansion, groups); 8 is skip
        0: (3, 1, 1), 1: (3, 1, 2), 2: (3, 3, 1), 3: (3, 6, 1),
        4: (5, 1, 1), 5: (5, 1, 2), 6: (5, 3, 1), 7: (5, 6, 1),
    }  # fmt: skip
    stages = ((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
    modules: list[nn.Module] = _conv_bn(3, 16, 3)
    ops = iter(int(c) for c in arch)
    c_in = 16
    for c_out, layers, first_stride in stages:
        for i in range(layers):
            op = next(ops)
            stride = first_stride if i == 0 else 1
            if op == 8:
                if stride != 1 or c_in != c_out:
                    modules += _conv_bn(c_in, c_out, 1)
            else:
                kernel, expansion, groups = blocks[op]
                hidden = c_in * expansion
                modules += _conv_bn(c_in, hidden, 1, groups)
                modules += _conv_bn(hidden, hidden, kernel, hidden)
                modules += _conv_bn(hidden, c_out, 1, groups)
            c_in = c_out
    modules += [*_conv_bn(352, 1984, 1), nn.Linear(1984, 1000)]
    return nn.ModuleList(modules)


def test_fbnet_counts_equal_the_hw_nas_bench_model() -> None:
    space = get_space("fbnet")
    archs = ["8" * 22, "7" * 22, "1" * 22, "5" * 22] + [space.format(s) for s in space.sample(12, seed=5)]
    counts = space.params(space.parse_many(archs))
    assert counts.tolist() == [n_params(_fbnet_model(a)) for a in archs]
    # Every op changes the count somewhere: the table is not constant.
    assert len(set(counts.tolist())) == len(archs)


# ----------------------------------------------------------------------- NAS-Bench-201 in torch
def _relu_conv_bn(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    return [nn.ReLU(), *_conv_bn(c_in, c_out, kernel)]


def _nb201_model(space: SearchSpace, sub: Subnet) -> nn.Module:
    """NAS-Bench-201's CIFAR-10 TinyNetwork (C = 16, N = 5): stem, 3 x 5 cells, 2 residual
    reductions, final BN and classifier."""
    ops = [space.dimensions[0].values[layer[0]] for layer in sub.layers]
    modules: list[nn.Module] = _conv_bn(3, 16, 3)
    for stage, c in enumerate((16, 32, 64)):
        if stage:  # ResNet basic block C/2 -> C with a pooled 1x1 shortcut
            modules += [*_relu_conv_bn(c // 2, c, 3), *_relu_conv_bn(c, c, 3)]
            modules += [nn.AvgPool2d(2), nn.Conv2d(c // 2, c, 1, bias=False)]
        for _ in range(5):
            for op in ops:
                if op == "nor_conv_3x3":
                    modules += _relu_conv_bn(c, c, 3)
                elif op == "nor_conv_1x1":
                    modules += _relu_conv_bn(c, c, 1)
                # none (zero), skip_connect (identity at stride 1) and avg_pool_3x3 hold no weights
    modules += [nn.BatchNorm2d(64), nn.Linear(64, 10)]
    return nn.ModuleList(modules)


def test_nasbench201_counts_equal_the_tiny_network_and_its_published_range() -> None:
    space = get_space("nasbench201")
    subs = space.sample(25, seed=6)
    assert space.params(subs).tolist() == [n_params(_nb201_model(space, s)) for s in subs]
    every = space.params(list(space.enumerate()))
    # NAS-Bench-201 (CIFAR-10) reports 0.073306 M to 1.531546 M parameters over its 15,625 cells.
    assert (every.min(), every.max()) == (73_306, 1_531_546)
    # Weights on edges off every input-output path are in the model, so they count.
    dead = space.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert space.params([dead])[0] == 73_306 + 5 * sum(9 * c * c + 2 * c for c in (16, 32, 64))
