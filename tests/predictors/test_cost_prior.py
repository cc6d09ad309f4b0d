"""Cost-aware latency prior (predictors._cost) and per-point noise (y_std) of the GP predictors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from predictors import GPNASPredictor, Predictor, TransferPredictor
from predictors._cost import CostModel, decode_onehot
from supernet import Dimension, SearchSpace, get_space


def _nb201(nb201, device: str):
    space = get_space("nasbench201")
    return space, space.parse_many(nb201.arch.tolist()), nb201[device].to_numpy(float)


@pytest.mark.parametrize("name", ["ufo-track2", "ufo2-multipath", "fbnet", "nasbench201"])
def test_decode_onehot_inverts_encode(name):
    space = get_space(name)
    subs = space.sample(50, seed=0)
    X = GPNASPredictor(space).encode(subs)
    assert (decode_onehot(space, X) == space.choice_matrix(subs)).all()


def test_cost_model_recovers_a_non_negative_line():
    rng = np.random.default_rng(0)
    costs = rng.uniform(0, 10, size=(30, 3))
    y = 2.0 + costs @ np.array([0.5, 0.0, 1.5])
    model = CostModel.fit(costs, y)
    assert (model.weights >= 0).all()
    np.testing.assert_allclose(model.predict(costs), y, rtol=1e-3)
    with pytest.raises(ValueError, match="positive"):
        CostModel.fit(costs, -y)


def test_defaults_on_for_latency_off_for_scores():
    space = get_space("nasbench201")
    assert GPNASPredictor(space, metric="latency_ms").use_cost_prior
    assert not GPNASPredictor(space, metric="score").use_cost_prior
    with pytest.raises(ValueError, match="log output transform"):
        GPNASPredictor(space, metric="score", cost_prior=True)
    plain = SearchSpace("plain", [], [Dimension("op", (0, 1, 2))], [4])
    assert not GPNASPredictor(plain, metric="latency_ms").use_cost_prior
    with pytest.raises(ValueError, match="no analytic costs"):
        GPNASPredictor(plain, metric="latency_ms", cost_prior=True)


def test_cost_prior_extrapolates_from_few_points(nb201):
    """20 measured cells: the cost prior ranks 1,000 others far better (measured 0.69 -> 0.97)."""
    space, subs, y = _nb201(nb201, "gold_6226")
    with_prior = GPNASPredictor(space, metric="latency_ms").fit(subs[:20], y[:20])
    without = GPNASPredictor(space, metric="latency_ms", cost_prior=False).fit(subs[:20], y[:20])
    assert with_prior.cost_model is not None and without.cost_model is None
    rho = [spearmanr(m.predict(subs[200:])[0].numpy(), y[200:])[0] for m in (with_prior, without)]
    assert rho[0] > 0.9 and rho[0] > rho[1] + 0.1


def test_latent_scale_stays_consistent_with_the_botorch_model(nb201):
    """The prior lives in the GP's mean module, so model.posterior (qlognehvi) sees it too."""
    space, subs, y = _nb201(nb201, "pixel2")
    model = GPNASPredictor(space, metric="latency_ms", observation_noise=False).fit(subs[:30], y[:30])
    X = model.encode(subs[100:150])
    latent, _ = model.predict_latent(X)
    with torch.no_grad():
        botorch_mean = model.model.posterior(X).mean.squeeze(-1)
    torch.testing.assert_close(latent, botorch_mean, atol=1e-5, rtol=1e-5)


def test_round_trip_with_cost_prior_and_y_std(nb201):
    space, subs, y = _nb201(nb201, "raspi4")
    y_std = 0.02 * y[:25]
    model = GPNASPredictor(space, metric="latency_ms").fit(subs[:25], y[:25], y_std=y_std)
    restored = Predictor.from_bytes(model.to_bytes())
    assert restored.cost_model is not None and restored.noise_extra is not None
    for a, b in zip(model.predict(subs[100:]), restored.predict(subs[100:]), strict=True):
        torch.testing.assert_close(a, b)


def test_old_blobs_without_cost_prior_still_load(nb201):
    """A blob saved before the option existed: no cost_prior option, no cost/noise state."""
    space, subs, y = _nb201(nb201, "pixel2")
    model = GPNASPredictor(space, metric="latency_ms", cost_prior=False).fit(subs[:25], y[:25])
    payload = torch.load(io.BytesIO(model.to_bytes()), weights_only=True)
    del payload["options"]["cost_prior"]
    del payload["state"]["cost_model"], payload["state"]["noise_extra"]
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    restored = Predictor.from_bytes(buffer.getvalue())
    assert restored.cost_model is None
    for a, b in zip(model.predict(subs[100:]), restored.predict(subs[100:]), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cost_prior", [False, True])
def test_large_y_std_pulls_the_fit_less(nb201, cost_prior):
    space, subs, y = _nb201(nb201, "gold_6226")
    y_bad = y[:30].copy()
    y_bad[0] *= 3.0  # a drifting measurement
    y_std = np.zeros(30)
    y_std[0] = 2.0 * y_bad[0]
    plain = GPNASPredictor(space, metric="latency_ms", cost_prior=cost_prior).fit(subs[:30], y_bad)
    weighted = GPNASPredictor(space, metric="latency_ms", cost_prior=cost_prior).fit(
        subs[:30], y_bad, y_std=y_std
    )
    err = [abs(float(m.predict(subs[:1])[0][0]) - y[0]) for m in (plain, weighted)]
    assert err[1] < 0.5 * err[0]
    # predictor.noise stays the homoskedastic part; the per-point part is kept separately.
    assert isinstance(weighted.noise, float) and weighted.noise < float(weighted.noise_extra[0])


def test_y_std_validation(nb201):
    space, subs, y = _nb201(nb201, "pixel2")
    model = GPNASPredictor(space, metric="latency_ms")
    with pytest.raises(ValueError, match="y_std has 3 values"):
        model.fit(subs[:10], y[:10], y_std=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="non-negative"):
        model.fit(subs[:10], y[:10], y_std=-np.ones(10))


def test_transfer_cost_prior_and_y_std(nb201):
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())[:300]
    Y = torch.as_tensor(nb201[["gold_6226", "raspi4", "pixel2"]].to_numpy(float)[:300])
    Y[20:, 2] = float("nan")
    y_std = torch.full((300,), float("nan"))
    y_std[:20] = 0.01 * Y[:20, 2]
    model = TransferPredictor(space, metric="latency_ms").fit_multi(subs, Y, 2, y_std=y_std)
    # With related columns the default leaves the prior off (it hurt there, see the docstring).
    assert model.target.cost_model is None and model.target.noise_extra is not None
    forced = TransferPredictor(space, metric="latency_ms", cost_prior=True).fit_multi(subs, Y, 2)
    assert forced.target.cost_model is not None
    restored = Predictor.from_bytes(forced.to_bytes())
    for a, b in zip(forced.predict(subs[200:]), restored.predict(subs[200:]), strict=True):
        torch.testing.assert_close(a, b)
    refit = model.refit_target(subs[:20], Y[:20, 2], y_std=y_std[:20])
    assert refit.target.noise_extra is not None
    # Without related columns the transfer model is single-task GP-NAS, with the prior on.
    alone = TransferPredictor(space, metric="latency_ms").fit(subs[:20], Y[:20, 2])
    assert alone.target.cost_model is not None
