"""SupportsUpdate: conditioning a fitted GP on new measurements without refitting hyperparameters.

Small training sets and few L-BFGS iterations keep every test well under a second or two; what
is checked is the algebra (same data -> same posterior, more data -> tighter posterior, no
optimiser run), not accuracy.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import predictors._gp as gp_module
from predictors import GPNASPredictor, Predictor, SupportsUpdate, TransferPredictor
from supernet import get_space

DEVICES = ["pixel2", "raspi4", "gold_6226"]
TARGET = DEVICES.index("raspi4")
# Predictions of an update on the fitted data equal the fit's to this (original units).
EXACT = {"rtol": 0.0, "atol": 1e-8}


@pytest.fixture(scope="module")
def nb201_latency(nb201):
    """60 NAS-Bench-201 subnets with raspi4 latencies (ms), and 20 query subnets."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    y = torch.tensor(nb201.raspi4.to_numpy()[:60], dtype=torch.float64)
    return space, subs[:60], y, subs[100:120]


def _gp(space, **options: Any) -> GPNASPredictor:
    return GPNASPredictor(space, metric="latency_ms", maxiter=40, **options)


def _same_predictions(a: Predictor, b: Predictor, queries) -> None:
    for x, y in zip(a.predict(queries), b.predict(queries), strict=True):
        torch.testing.assert_close(x, y, **EXACT)


@pytest.fixture
def fit_calls(monkeypatch) -> list[int]:
    """Counts the marginal-likelihood optimisations (botorch's fit_gpytorch_mll) of the GPs."""
    calls: list[int] = []
    original = gp_module.fit_gpytorch_mll

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(gp_module, "fit_gpytorch_mll", counting)
    return calls


@pytest.mark.parametrize(
    "options",
    [
        {},  # cost prior (latency), exact posterior
        {"cost_prior": False, "outlier_mad": 6.0, "loo_calibrate": True},
        {"max_exact": 30, "n_inducing": 15},  # DTC on inducing points beyond 30
    ],
    ids=["cost-prior", "outliers-loo", "inducing"],
)
def test_update_on_the_fitted_data_reproduces_the_fit(nb201_latency, fit_calls, options):
    space, subs, y, queries = nb201_latency
    y = y[:40].clone()
    y[3] = y[3] * 0.02  # a near-0 ms cell, as row 0 is: the outlier rule drops both
    y_std = 0.02 * y
    model = _gp(space, **options).fit(subs[:40], y, y_std=y_std)
    reference = Predictor.from_bytes(model.to_bytes())
    before = model.hyperparameters()
    assert model.update(subs[:40], y, y_std=y_std) is model
    _same_predictions(model, reference, queries)
    assert model.hyperparameters() == before and len(fit_calls) == 1 + ("outlier_mad" in options)
    assert model.n_train == reference.n_train == (38 if "outlier_mad" in options else 40)
    assert model.n_hyperparameter_fit == model.n_train
    assert (model.inducing is None) == ("max_exact" not in options)


def test_update_on_the_fitted_data_reproduces_the_fit_of_scores(ufo, fit_calls):
    """Scores: the rank-Gauss map is refitted on all values, so the same values give the same map."""
    subs, Y = ufo
    space = get_space("ufo-track2")
    model = GPNASPredictor(space, maxiter=40).fit(subs[:40], Y[:40, 1])
    reference = Predictor.from_bytes(model.to_bytes())
    model.update(subs[:40], Y[:40, 1])
    _same_predictions(model, reference, subs[300:320])
    assert len(fit_calls) == 1


def test_update_with_new_points_tightens_the_posterior_there(nb201_latency, fit_calls):
    space, subs, y, _ = nb201_latency
    model = _gp(space).fit(subs[:30], y[:30])
    hyperparameters = model.hyperparameters()
    new = slice(30, 45)
    X_new = model.encode(subs[new])
    mean_before, std_before = _gp_part(model, X_new)
    z_new = model.output.transform(y[new])

    model.update(subs[:45], y[:45])
    mean_after, std_after = _gp_part(model, X_new)
    assert (model.n_train, model.n_hyperparameter_fit) == (45, 30)
    assert model.hyperparameters() == hyperparameters and len(fit_calls) == 1
    # Conditioning on a point can only shrink the variance there; the mean moves to the values.
    assert (std_after < std_before).all()
    assert (mean_after - z_new).abs().mean() < 0.8 * (mean_before - z_new).abs().mean()

    # Retracting the new points (and 5 old ones) widens the posterior there again.
    model.update(subs[5:30], y[5:30])
    assert (model.n_train, model.n_hyperparameter_fit) == (25, 30)
    assert (_gp_part(model, X_new)[1] > std_after).all()


def _gp_part(model: GPNASPredictor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """predict_latent without the cost line's coefficient variance: that one is estimated from
    the data's disagreement with the line, so it need not shrink as points are added."""
    mean, std = model.predict_latent(X)
    return mean, (std.pow(2) - model._line_variance(X)).sqrt()


def test_update_runs_no_optimiser(nb201_latency, fit_calls):
    """An update is one Cholesky under the kept hyperparameters: no marginal-likelihood fit.

    The fit's outlier (row 0, a near-0 ms cell) stays out, and a new one is judged on arrival.
    """
    space, subs, y, _ = nb201_latency
    model = _gp(space, outlier_mad=6.0).fit(subs[:30], y[:30])
    assert model.n_train == 29
    n_fits = len(fit_calls)
    state = {k: v.clone() for k, v in model.model.state_dict().items()}
    y = y.clone()
    y[45] = 0.01 * y[45]
    for n in (35, 40, 60):
        model.update(subs[:n], y[:n])
    assert len(fit_calls) == n_fits and model.n_train == 58
    assert model.outlier_codes is not None and len(model.outlier_codes) == 2
    # Every parameter and buffer is as fitted (the plain GP: no cost line buffers here).
    model_state = model.model.state_dict()
    assert all(torch.equal(state[k], model_state[k]) for k in model_state if not k.startswith("mean_module."))


def test_an_invalid_update_changes_nothing(nb201_latency):
    space, subs, y, queries = nb201_latency
    with pytest.raises(ValueError, match="not fitted"):
        _gp(space).update(subs[:10], y[:10])
    model = _gp(space).fit(subs[:20], y[:20])
    before = model.predict(queries)
    bad = y[:25].clone()
    bad[22] = -1.0
    with pytest.raises(ValueError, match="positive"):
        model.update(subs[:25], bad)
    with pytest.raises(ValueError, match="target values"):
        model.update(subs[:25], y[:24])
    for a, b in zip(model.predict(queries), before, strict=True):
        assert torch.equal(a, b)


def test_an_updated_predictor_round_trips(nb201_latency):
    space, subs, y, queries = nb201_latency
    model = _gp(space).fit(subs[:30], y[:30]).update(subs[:40], y[:40], y_std=0.01 * y[:40])
    restored = Predictor.from_bytes(model.to_bytes())
    assert isinstance(restored, SupportsUpdate)
    assert (restored.n_train, restored.n_hyperparameter_fit) == (40, 30)
    _same_predictions(model, restored, queries)
    # ... and updates again as the original does.
    _same_predictions(model.update(subs[:50], y[:50]), restored.update(subs[:50], y[:50]), queries)


@pytest.fixture(scope="module")
def matrix(nb201):
    """40 NAS-Bench-201 subnets x 3 devices' latencies (ms), the target measured on 12, and the
    same with 6 more target values and 5 more values of a related device."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    full = torch.tensor(nb201.loc[:39, DEVICES].to_numpy(), dtype=torch.float64)
    Y = full.clone()
    Y[12:, TARGET] = float("nan")
    Y[30:, 0] = float("nan")
    more = full.clone()
    more[18:, TARGET] = float("nan")
    more[35:, 0] = float("nan")
    return space, subs[:40], Y, more, subs[100:110]


def test_transfer_update_multi(matrix, fit_calls):
    space, subs, Y, more, queries = matrix
    model = TransferPredictor(space, metric="latency_ms").fit_multi(subs, Y, TARGET)
    n_fits = len(fit_calls)
    reference = Predictor.from_bytes(model.to_bytes())
    assert isinstance(model, SupportsUpdate) and model.n_hyperparameter_fit == 12

    # The same matrix: sources and target re-conditioned on the same values, same predictions.
    assert model.update_multi(subs, Y, TARGET) is model
    _same_predictions(model, reference, queries)

    # More values: only conditioning, and the target's posterior tightens at its new rows.
    assert model.target is not None
    target_hyperparameters = model.target.hyperparameters()
    new_rows = subs[12:18]
    std_before = model.predict_latent(model.encode(new_rows))[1]
    model.update_multi(subs, more, TARGET, y_std=torch.full((40,), 0.05))
    assert len(fit_calls) == n_fits
    assert (model.n_train, model.n_hyperparameter_fit) == (18, 12)
    assert model.target.hyperparameters() == target_hyperparameters
    assert model.sources[0].n_train == 35
    assert (model.predict_latent(model.encode(new_rows))[1] < std_before).all()

    restored = Predictor.from_bytes(model.to_bytes())
    assert isinstance(restored, TransferPredictor)
    assert (restored.n_train, restored.n_hyperparameter_fit) == (18, 12)
    _same_predictions(model, restored, queries)

    # The target-only update keeps the sources; a matrix with other columns is refused.
    model.update(subs[:15], more[:15, TARGET])
    assert model.n_train == 15 and model.sources[0].n_train == 35
    with pytest.raises(ValueError, match="does not match the fit"):
        model.update_multi(subs, more, 0)
    with pytest.raises(ValueError, match="does not match the fit"):
        model.update_multi(subs, more[:, :2], TARGET)
