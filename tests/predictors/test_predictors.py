import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

import predictors.experimental  # noqa: F401  (registers ridge-summary)
from predictors import (
    GPNASPredictor,
    OutputTransform,
    Predictor,
    RidgePredictor,
    TransferPredictor,
    create_predictor,
    list_predictors,
    summary_dim,
    summary_features,
)
from supernet import get_space

FAST = ["gpnas", "gpnas-closed-form", "ridge", "ridge-summary", "gbt"]


@pytest.fixture(scope="module")
def fitted(ufo):
    subs, Y = ufo
    space = get_space("ufo-track2")
    return {name: create_predictor(name, space).fit(subs[:120], Y[:120, 1]) for name in FAST}


def test_registry_names():
    assert {"gpnas", "gpnas-closed-form", "ridge", "ridge-summary", "gbt", "gpnas-transfer"} <= set(
        list_predictors()
    )
    with pytest.raises(ValueError, match="unknown predictor"):
        create_predictor("nope", get_space("fbnet"))


@pytest.mark.parametrize("name", FAST)
def test_shapes_and_ranking(fitted, ufo, name):
    subs, Y = ufo
    mean, std = fitted[name].predict(subs[300:])
    assert mean.shape == std.shape == (100,)
    assert torch.isfinite(mean).all() and (std > 0).all()
    # market1501 is well predictable: every model must rank clearly better than chance.
    assert kendalltau(mean.numpy(), Y[300:, 1].numpy())[0] > 0.4


@pytest.mark.parametrize("name", FAST)
def test_round_trip_identical(fitted, ufo, name):
    subs, _ = ufo
    restored = Predictor.from_bytes(fitted[name].to_bytes())
    assert type(restored) is type(fitted[name])
    for a, b in zip(fitted[name].predict(subs[300:]), restored.predict(subs[300:]), strict=True):
        assert torch.equal(a, b)


def test_predict_encoded_matches_predict(fitted, ufo):
    subs, _ = ufo
    model = fitted["gpnas"]
    X = model.encode(subs[300:])
    for a, b in zip(model.predict_encoded(X), model.predict(subs[300:]), strict=True):
        assert torch.equal(a, b)


def test_calibration_on_held_out_real_data(ufo):
    """GP-NAS std is calibrated: ~68% / ~95% of held-out truths within 1 / 2 std."""
    subs, Y = ufo
    space = get_space("ufo-track2")
    inside1, inside2 = [], []
    for task in (1, 4):  # market1501, veri
        model = GPNASPredictor(space).fit(subs[:300], Y[:300, task])
        mean, std = model.predict(subs[300:])
        z = ((mean - Y[300:, task]) / std).abs()
        inside1.append((z <= 1).double().mean())
        inside2.append((z <= 2).double().mean())
    assert 0.55 <= float(np.mean(inside1)) <= 0.82
    assert 0.88 <= float(np.mean(inside2)) <= 0.995


def test_latency_units_and_log_transform(nb201):
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    y = torch.tensor(nb201["gold_6226"].to_numpy(), dtype=torch.float64)
    model = GPNASPredictor(space, metric="latency_ms", kernel="linear").fit(subs[:200], y[:200])
    mean, std = model.predict(subs[1000:])
    # Milliseconds, not log-ms: relative error small, std a fraction of the mean.
    assert float(((mean - y[1000:]).abs() / y[1000:]).median()) < 0.1
    assert float((std / mean).median()) < 0.3


def test_output_transforms_invert():
    y = torch.tensor([3.0, 1.0, 7.0, 7.0, 2.0, 10.0], dtype=torch.float64)
    for kind in ("identity", "log", "rankgauss"):
        t = OutputTransform(kind)
        z = t.fit_transform(y)
        mean, std = t.untransform(z, torch.full_like(z, 1e-6))
        assert torch.allclose(mean, y, rtol=1e-4), kind
        assert (std >= 0).all()
    with pytest.raises(ValueError, match="positive"):
        OutputTransform("log").fit_transform(torch.tensor([1.0, 0.0]))


def test_bad_inputs(ufo):
    subs, Y = ufo
    space = get_space("ufo-track2")
    with pytest.raises(ValueError, match="target values"):
        RidgePredictor(space).fit(subs[:5], Y[:4, 0])
    with pytest.raises(ValueError, match="not fitted"):
        GPNASPredictor(space).predict(subs[:2])
    with pytest.raises(ValueError, match="unknown kernel"):
        GPNASPredictor(space, kernel="nope")
    with pytest.raises(ValueError, match="not a RidgePredictor"):
        RidgePredictor.from_bytes(create_predictor("gbt", space).fit(subs[:20], Y[:20, 0]).to_bytes())


def test_inducing_points_beyond_exact_size(nb201):
    """Beyond max_exact the posterior uses inducing points and stays accurate and serialisable."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    y = torch.tensor(nb201["fpga"].to_numpy(), dtype=torch.float64)
    model = GPNASPredictor(space, metric="latency_ms", max_exact=200, n_inducing=150, max_fit=150)
    model.fit(subs[:600], y[:600])
    assert model.inducing is not None and len(model.inducing) == 150
    mean, _ = model.predict(subs[1000:])
    assert float(((mean - y[1000:]).abs() / y[1000:]).median()) < 0.05
    restored = Predictor.from_bytes(model.to_bytes())
    assert torch.equal(restored.predict(subs[1000:])[0], mean)


def test_transfer_beats_single_task_on_new_device(nb201):
    """10 measurements on a held-out chip: the transfer GP ranks far better than GP-NAS alone on
    the architecture code (no cost prior; with it, GP-NAS alone nearly catches up: 0.79 here)."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    devices = [c for c in nb201.columns if c != "arch"]
    target = devices.index("gold_6226")
    Y = torch.tensor(nb201.loc[:399, devices].to_numpy(), dtype=torch.float64)
    Y[10:, target] = float("nan")
    transfer = TransferPredictor(space, metric="latency_ms").fit_multi(subs[:400], Y, target)
    single = GPNASPredictor(space, metric="latency_ms", cost_prior=False).fit(subs[:10], Y[:10, target])
    truth = nb201.loc[1000:, "gold_6226"].to_numpy()
    tau_transfer = kendalltau(transfer.predict(subs[1000:])[0].numpy(), truth)[0]
    tau_single = kendalltau(single.predict(subs[1000:])[0].numpy(), truth)[0]
    assert tau_transfer > 0.75
    assert tau_transfer > tau_single + 0.1
    mean, std = transfer.predict(subs[1000:])
    inside2 = float(np.mean(np.abs(mean.numpy() - truth) / std.numpy() <= 2))
    assert 0.8 <= inside2 <= 1.0  # leave-one-out recalibration keeps the few-shot std honest
    restored = Predictor.from_bytes(transfer.to_bytes())
    assert torch.equal(restored.predict(subs[1000:])[0], transfer.predict(subs[1000:])[0])
    lonely = Y.clone()
    lonely[1:, target] = float("nan")
    with pytest.raises(ValueError, match="at least 2 values"):
        TransferPredictor(space).fit_multi(subs[:400], lonely, target)


def test_summary_features_by_hand():
    space = get_space("ufo-track2")
    # depth 10; num_heads choice indices per layer, then mlp_ratio choice indices (0-based).
    heads = [0, 0, 1, 2, 0, 1, 2, 2, 0, 1]
    ratios = [2, 2, 2, 2, 1, 1, 1, 1, 0, 0]
    sub = space.from_choice_matrix(
        np.array([[[h, r] for h, r in zip(heads, ratios, strict=True)] + [[-1, -1]] * 2]), [10]
    )[0]
    F = summary_features(space, [sub])
    assert F.shape == (1, summary_dim(space)) == (1, 3 + 2 * (3 + 3))
    expected = [1, 0, 0]  # depth one-hot over (10, 11, 12)
    expected += [4, 3, 3, 1 + 1 + 2 + 3, 1 + 2 + 3 + 3, 1 + 2]  # heads: counts, block sums (1-based)
    expected += [2, 4, 4, 3 + 3 + 3 + 3, 2 + 2 + 2 + 2, 1 + 1]  # mlp_ratio
    assert F[0].tolist() == expected


def test_summary_features_fixed_depth_space():
    space = get_space("fbnet")
    subs = space.sample(5, seed=0)
    F = summary_features(space, subs)
    assert F.shape == (5, summary_dim(space))
    # No depth columns: each dimension's choice counts add up to the (fixed) number of layers.
    assert torch.equal(F[:, : len(space.dimensions[0])].sum(1), torch.full((5,), float(space.max_depth)))


def test_ridge_summary_helps_with_few_subnets(ufo):
    """With 50 measured subnets the summary features improve ranking on the 7 non-noise tasks."""
    subs, Y = ufo
    space = get_space("ufo-track2")
    gains = []
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(subs))
        train, test = order[:50], order[200:]
        taus = {}
        for name in ("ridge", "ridge-summary"):
            taus[name] = np.mean(
                [
                    kendalltau(
                        create_predictor(name, space)
                        .fit([subs[i] for i in train], Y[train, task])
                        .predict([subs[i] for i in test])[0]
                        .numpy(),
                        Y[test, task].numpy(),
                    )[0]
                    for task in range(1, 8)
                ]
            )
        gains.append(taus["ridge-summary"] - taus["ridge"])
    assert np.mean(gains) > 0.02
