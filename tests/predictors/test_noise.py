"""Noise makes the answer humble (issue 21.4): known per-point noise, the cost line's coefficients
and the constant level all reach a new point's std."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ndtr

from predictors import GPNASPredictor, Predictor, create_predictor, create_strategy
from predictors._cost import CostModel
from supernet import get_space

# The service's latency models, and single-task GP-NAS that both build on.
LATENCY_MODELS = ("gpnas", "gpnas-multitask", "gpnas-transfer")


def _busy_demo(relative_noise: float, seed: int = 0):
    """30 cost-stratified ufo-track2 subnets on a simulated chip: a line in the MACs, each value
    off by a log-normal error of ``relative_noise`` (its y_std says so), and 300 other subnets."""
    space = get_space("ufo-track2")
    subs = create_strategy("cost-stratified").select(space, None, [], 30, seed=0)
    others = space.sample(300, seed=5)
    rng = np.random.default_rng(seed)
    truth = 300.0 + 7.0e-8 * space.macs(subs)  # ~1,100-1,600 ms: the busy demo's range
    y = truth * np.exp(rng.normal(0.0, relative_noise, len(subs)))
    return space, subs, others, torch.tensor(y), torch.tensor(relative_noise * y)


@pytest.mark.parametrize("name", LATENCY_MODELS)
def test_noisy_measurements_give_humble_answers(name):
    """Spreads of hundreds of ms: no budget inside the data answers P(feasible) near 1, while the
    same subnets measured cleanly keep tight stds (before: +-0.2% and P = 1.000 either way)."""
    space, subs, others, y, y_std = _busy_demo(0.2)
    noisy = create_predictor(name, space, metric="latency_ms").fit(subs, y, y_std=y_std)
    mean, std = (t.numpy() for t in noisy.predict(others))
    assert np.median(std / mean) > 0.1
    budget = float(np.median(y.numpy()))
    assert float(ndtr((budget - mean) / std).max()) < 0.97

    space, subs, others, y, y_std = _busy_demo(0.005)
    clean = create_predictor(name, space, metric="latency_ms").fit(subs, y, y_std=y_std)
    mean, std = (t.numpy() for t in clean.predict(others))
    assert np.median(std / mean) < 0.05


def test_a_new_measurement_carries_the_typical_known_noise():
    """Observation variance = latent variance + learned noise + median known noise (std_scale 1)."""
    space, subs, others, y, y_std = _busy_demo(0.2)
    y_std[:5] *= 10  # a few wild points do not set the typical noise
    model = GPNASPredictor(space, metric="latency_ms").fit(subs, y, y_std=y_std)
    assert model.noise_extra is not None and model.std_scale == 1.0
    assert model.typical_noise == pytest.approx(float(model.noise_extra.median()))
    assert model.typical_noise < float(model.noise_extra.max()) / 10
    X = model.encode(others[:20])
    _, observed = model.predict_latent(X)
    model.observation_noise = False
    _, latent = model.predict_latent(X)
    torch.testing.assert_close(
        observed.pow(2) - latent.pow(2), torch.full_like(latent, model.noise + model.typical_noise)
    )
    # Without y_std there is no known noise to carry.
    assert GPNASPredictor(space, metric="latency_ms").fit(subs, y).typical_noise == 0.0


def test_cost_line_variance_grows_with_noise_and_extrapolation():
    rng = np.random.default_rng(0)
    costs = rng.uniform(1.0, 2.0, size=(20, 2))
    line = 5.0 + costs @ np.array([3.0, 1.0])
    clean = CostModel.fit(costs, line * np.exp(rng.normal(0, 0.002, 20)))
    noisy = CostModel.fit(costs, line * np.exp(rng.normal(0, 0.2, 20)))
    inside, far = costs[:5], costs[:5] * 4.0
    assert (clean.log_variance(inside) < 1e-4).all()
    assert noisy.log_variance(inside).mean() > 20 * clean.log_variance(inside).mean()
    assert noisy.log_variance(far).mean() > noisy.log_variance(inside).mean()
    # A line saved before the folds were kept counts as exact; one saved with them keeps them.
    old = {"weights": torch.as_tensor(noisy.weights), "floor": noisy.floor}
    assert (CostModel.from_state(old).log_variance(inside) == 0).all()
    np.testing.assert_allclose(CostModel.from_state(noisy.state()).log_variance(far), noisy.log_variance(far))


def test_cost_line_uncertainty_reaches_the_latent_std():
    space, subs, others, y, y_std = _busy_demo(0.2)
    model = GPNASPredictor(space, metric="latency_ms", observation_noise=False).fit(subs, y, y_std=y_std)
    assert model.cost_model is not None and model.cost_model.fold_weights is not None
    X = model.encode(others[:50])
    with_line = model._mean_variance(X)
    folds, model.cost_model.fold_weights = model.cost_model.fold_weights, None
    without = model._mean_variance(X)
    model.cost_model.fold_weights = folds
    assert (with_line > without).all()
    # Kept through serialisation.
    restored = Predictor.from_bytes(model.to_bytes())
    for a, b in zip(model.predict(others[:50]), restored.predict(others[:50]), strict=True):
        torch.testing.assert_close(a, b)


def test_level_uncertainty_exceeds_the_prior_variance_far_from_few_points():
    """With 3 points the constant level is barely known: far from them the latent variance is
    the kernel's prior variance plus the level's (universal kriging), not the prior alone."""
    space = get_space("nasbench201")
    subs = space.sample(40, seed=1)
    y = torch.linspace(0.0, 1.0, 40, dtype=torch.float64)
    model = GPNASPredictor(space, metric="score", transform="identity", observation_noise=False)
    model.fit(subs[:3], y[:3])
    X = model.encode(subs[3:])
    _, latent = model.predict_latent(X)
    assert model.ones_precision > 0
    with torch.no_grad():
        prior = model.model.covar_module(X, diag=True)
    assert bool((latent.pow(2) > prior).any())
