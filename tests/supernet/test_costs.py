"""Analytic cost components of the search spaces (supernet.SearchSpace.costs / macs / cost_extremes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from supernet import SearchSpace, get_space

PRESETS = ("ufo-track2", "ufo2-multipath", "fbnet", "nasbench201")


@pytest.mark.parametrize("name", PRESETS)
def test_costs_shape_and_sign(name):
    space = get_space(name)
    subs = space.sample(64, seed=0)
    costs = space.costs(subs)
    assert costs.shape == (64, len(space.cost_names)) and costs.dtype == np.float64
    assert (costs >= 0).all()
    assert space.macs(subs).shape == (64,)
    assert space.has_costs


def test_base_space_has_no_costs():
    from supernet import Dimension

    space = SearchSpace("plain", [], [Dimension("op", (0, 1))], [2])
    assert not space.has_costs
    with pytest.raises(NotImplementedError):
        space.costs(space.sample(2, seed=0))


@pytest.mark.parametrize("name", ["ufo-track2", "ufo2-multipath"])
def test_ufo_mac_components_sum_to_flops(name):
    space = get_space(name)
    subs = space.sample(200, seed=1)
    costs = space.costs(subs)
    g = space.geometry
    patch_embed = g.num_patches * g.embed_dim * g.in_chans * g.patch_size**2
    flops = np.array([space.flops(s) for s in subs], dtype=float)
    mac_columns = [i for i, n in enumerate(space.cost_names) if n.endswith("_macs")]
    np.testing.assert_allclose(costs[:, mac_columns].sum(1) + patch_embed, flops, rtol=1e-12)
    np.testing.assert_allclose(space.macs(subs), flops, rtol=1e-12)


def test_ufo_hand_computed_layer_and_tokens():
    # Track 2 depth 10, every layer 12 heads (768 channels) and ratio 4.0 (3072 hidden), 197 tokens.
    space = get_space("ufo-track2")
    sub = space.parse("j" + "111" * 10 + "000" * 2)
    t, e, a, h = 197, 768, 768, 3072
    expected = [10 * 4 * t * e * a, 10 * 2 * t * t * a, 10 * 2 * t * e * h, 10, 120]
    np.testing.assert_allclose(space.costs([sub])[0], expected)
    # A larger image changes the token count, so attention grows quadratically, linears linearly.
    big = space.with_geometry(image_size=384)
    t2 = (384 // 16) ** 2 + 1
    linear, attention = big.costs([sub])[0][:2]
    assert linear == pytest.approx(expected[0] * t2 / t)
    assert attention == pytest.approx(expected[1] * (t2 / t) ** 2)


def test_fbnet_hand_computed_layers():
    space = get_space("fbnet")
    # Layer 0 (16 -> 16 channels, stride 1, 112x112): k3_e1 vs skip; skip is the identity there.
    base = space.parse("8" * 22)
    one = space.parse("0" + "8" * 21)
    delta = space.costs([one])[0] - space.costs([base])[0]
    side = 112
    names = space.cost_names
    assert delta[names.index("expand_macs")] == 16 * 16 * side**2
    assert delta[names.index("depthwise_macs")] == 16 * 9 * side**2
    assert delta[names.index("project_macs")] == 16 * 16 * side**2
    # Activation elements: expanded, depthwise output, block output and the residual add.
    assert delta[names.index("activation_elements_stage1")] == 4 * 16 * side**2
    assert delta[names.index("blocks")] == 1
    # Layer 1 (16 -> 24, stride 2): skip is a strided 1x1 conv (HW-NAS-Bench's Skip), not free.
    assert space.costs([base])[0][names.index("project_macs")] > 0
    k5_g2 = space.parse("8" + "5" + "8" * 20)
    d = space.costs([k5_g2])[0] - space.costs([base])[0]
    expected_project = 16 * 24 * 56**2 / 2 - 16 * 24 * 56**2  # grouped projection minus the skip conv
    assert d[names.index("expand_macs")] == 16 * 16 * 112**2 / 2
    assert d[names.index("depthwise_macs")] == 16 * 25 * 56**2
    assert d[names.index("project_macs")] == pytest.approx(expected_project)
    assert d[names.index("grouped_blocks")] == 1


def test_nasbench201_dead_edges_cost_nothing():
    space = get_space("nasbench201")
    names = space.cost_names
    live_columns = [i for i, n in enumerate(names) if not n.startswith("dead_")]
    empty = space.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    # Only the input -> node 3 edge: one live 3x3 conv per cell, 15 cells.
    direct = space.parse("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    conv = 5 * (16**2 * 32**2 + 32**2 * 16**2 + 64**2 * 8**2)
    np.testing.assert_allclose(space.costs([direct])[0][live_columns], [9 * conv, 0, 0, 0, 15])
    # Node 1 never reaches the output (edges 1->2 and 1->3 are none): its 3x3 conv is dead.
    dead_out = space.parse("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    # Node 2 is unreachable (its in-edges are none): its 1x1 conv towards node 3 is dead.
    dead_in = space.parse("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|")
    for sub in (dead_out, dead_in):
        np.testing.assert_allclose(
            space.costs([sub])[0][live_columns], space.costs([direct])[0][live_columns]
        )
        assert space.macs([sub])[0] == space.macs([direct])[0]
    assert space.costs([dead_out])[0][names.index("dead_conv3x3_macs")] == 9 * conv
    assert space.costs([dead_in])[0][names.index("dead_conv1x1_macs")] == conv
    assert space.costs([empty])[0].sum() == 0
    assert space.live_edges(space.choice_matrix([dead_in])).tolist() == [[False] * 3 + [True, False, False]]


def test_nasbench201_cost_extremes_match_exhaustive_search():
    space = get_space("nasbench201")
    cells = list(space.enumerate())
    macs = space.macs(cells)
    cheapest, costliest = space.cost_extremes()
    assert space.macs([cheapest])[0] == macs.min()
    assert space.macs([costliest])[0] == macs.max()
    assert space.format(costliest) == "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+" + (
        "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )


@pytest.mark.parametrize("name", ["ufo-track2", "ufo2-multipath", "fbnet"])
def test_cost_extremes_bound_samples(name):
    space = get_space(name)
    cheapest, costliest = space.cost_extremes()
    macs = space.macs(space.sample(5000, seed=2))
    low, high = space.macs([cheapest, costliest])
    assert low <= macs.min() and high >= macs.max()
    assert low < high


def test_cost_extremes_exhaustive_on_a_small_layered_space():
    # The per-layer rule is exact when costs add up per layer: check against brute force on a
    # small UFO space with several depths.
    from supernet import MultipathSpace

    space = MultipathSpace({"a": None}, depths=(1, 2, 3), mlp_ratios=(4.0, 2.0), num_heads=(2, 6))
    subs = list(space.enumerate())
    macs = space.macs(subs)
    cheapest, costliest = space.cost_extremes()
    assert space.macs([cheapest])[0] == macs.min()
    assert space.macs([costliest])[0] == macs.max()


@pytest.mark.parametrize("name", ["fbnet", "nasbench201"])
def test_macs_rank_real_latency(data_dir, name):
    """MACs rank real device latencies: median Spearman over devices (measured 0.62 on fbnet,
    0.71 on nasbench201), and positive on every device."""
    df = pd.read_csv(data_dir / "device_latency" / f"{name}.csv", dtype={"arch": str})
    space = get_space(name)
    macs = space.macs(space.parse_many(df.arch.tolist()))
    rhos = [spearmanr(macs, df[c])[0] for c in df.columns[1:]]
    assert np.median(rhos) > 0.5
    assert min(rhos) > 0.1


def test_costs_explain_real_latency(data_dir):
    """A non-negative line on [1, costs] fits each nasbench201 device far better than MACs alone."""
    from scipy.optimize import nnls

    df = pd.read_csv(data_dir / "device_latency" / "nasbench201.csv")
    space = get_space("nasbench201")
    costs = space.costs(space.parse_many(df.arch.tolist()))
    A = np.hstack([np.ones((len(costs), 1)), costs])
    A = A / A.max(0)
    rhos = []
    for device in df.columns[1:]:
        y = df[device].to_numpy(float)
        w = nnls(A / y[:, None], np.ones(len(y)))[0]
        rhos.append(spearmanr(A @ w, y)[0])
    assert np.mean(rhos) > 0.95  # measured 0.97
