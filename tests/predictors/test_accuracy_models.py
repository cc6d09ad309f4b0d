"""Issue 15's accuracy models on tiny real UFO data: fit, predict (shapes, std > 0), round-trip
bytes; the shared layer weights, the post-hoc calibration and the ``gpnas predict`` options."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import predictors.experimental  # noqa: F401  (registers the models of issue 15 that lost)
from predictors import (
    ENCODINGS,
    MultiTaskGPNASPredictor,
    Predictor,
    SupportsPriorCovariance,
    create_predictor,
    create_strategy,
    cv_std_scale,
    layer_encoding,
    list_predictors,
)
from predictors._kernels import onehot_groups
from predictors._multitask import fit_shared_layer_weights
from search_service.cli import app
from search_service.cli._predict import default_models
from supernet import TRACK2_TASKS, Metric, get_space

NEW = [
    "gpnas-calibrated",
    "gpnas-layer",
    "gpnas-layer-additive",
    "gpnas-layer-pairwise",
    "gpnas-multitask",
    "gpnas-multitask-linear",
    "ridge-joint",
    "ridge-depth",
    "ridge-from-end",
    "ridge-rank",
    "stack",
    "stack-multitask",
]


@pytest.fixture(scope="module")
def tiny(ufo):
    """30 UFO subnets x 3 tasks (the target, column 0, measured on 20 of them) and 10 queries."""
    subs, Y = ufo
    Y3 = Y[:30, [1, 2, 3]].clone()
    Y3[20:, 0] = float("nan")
    return get_space("ufo-track2"), subs[:30], Y3, subs[300:310], Y[300:310, 1]


def test_all_new_models_are_registered():
    assert set(NEW) <= set(list_predictors())


@pytest.mark.parametrize("name", NEW)
def test_fit_predict_round_trip(tiny, name):
    space, subs, Y, queries, _ = tiny
    options = {"maxiter": 30} if name.startswith("gpnas") else {}
    model = create_predictor(name, space, **options).fit_multi(subs, Y, 0)
    mean, std = model.predict(queries)
    assert mean.shape == std.shape == (10,)
    assert torch.isfinite(mean).all() and (std > 0).all()
    restored = Predictor.from_bytes(model.to_bytes())
    torch.testing.assert_close(restored.predict(queries), (mean, std))


def test_shared_layer_weights_find_the_layer_that_matters():
    space = get_space("ufo-track2")
    subs = space.sample(200, seed=3)
    X = space.encode(subs, "onehot")
    heads0 = torch.tensor([float(s.layers[0][0]) for s in subs])  # layer 0's heads alone matter
    rng = np.random.default_rng(0)
    Z = torch.stack([heads0 * w + torch.as_tensor(rng.normal(0, 0.3, 200)) for w in (1.0, -0.7)], 1)
    Z = (Z - Z.mean(0)) / Z.std(0)
    groups, n_groups = onehot_groups(space, "group")
    v, scales, noises = fit_shared_layer_weights(X, Z, groups, n_groups, maxiter=50)
    assert v.shape == (n_groups,) and int(torch.argmax(v)) == 0  # group 0 = (layer 0, num_heads)
    assert abs(float(v.mean()) - 1.0) < 1e-9 and (scales > 0).all() and (noises > 0).all()


def test_multitask_prior_designs_a_cold_start(tiny):
    space, subs, Y, queries, _ = tiny
    prior = MultiTaskGPNASPredictor(space).fit_sources(subs, Y[:, 1:])
    assert isinstance(prior, SupportsPriorCovariance) and prior.n_train == 0 and prior.has_prior_covariance
    cov = prior.prior_covariance(prior.encode(queries))
    assert cov.shape == (10, 10) and float(torch.linalg.eigvalsh(cov).min()) > -1e-8
    picks = create_strategy("integrated-variance").select(space, prior, [], 4, candidates=subs)
    assert len(set(picks)) == 4 and set(picks) <= set(subs)


def test_cv_std_scale_widens_an_overconfident_model(tiny):
    space, subs, Y, _, _ = tiny
    model = create_predictor("ridge", space)
    X = model.encode(subs[:20])

    class Overconfident:
        def __init__(self, fitted):
            self.fitted = fitted

        def predict_encoded(self, Xq):
            mean, std = self.fitted.predict_encoded(Xq)
            return mean, std / 10

    scale = cv_std_scale(
        lambda a, b: Overconfident(create_predictor("ridge", space).fit_encoded(a, b)), X, Y[:20, 0]
    )
    assert scale > 2.0


def test_encodings_shapes(tiny):
    space, subs, *_ = tiny
    for kind in ENCODINGS:
        E = layer_encoding(space, subs, kind)
        assert E.shape[0] == len(subs) and torch.isfinite(E).all()
    assert layer_encoding(space, subs, "joint").shape[1] == 12 * 10
    with pytest.raises(ValueError, match="unknown encoding"):
        layer_encoding(space, subs, "nope")


@pytest.fixture(scope="module")
def csvs(tmp_path_factory, ufo):
    """TRAIN.csv: 40 UFO subnets x 3 tasks (the target dukemtmc on all 40); QUERY.csv: 10 others."""
    subs, Y = ufo
    space = get_space("ufo-track2")
    tmp = tmp_path_factory.mktemp("predict")
    tasks = ["market1501", "dukemtmc", "msmt17"]
    with (tmp / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", *tasks])
        for i in range(40):
            writer.writerow([space.format(subs[i]), *(int(Y[i, TRACK2_TASKS.index(t)]) for t in tasks)])
    (tmp / "query.csv").write_text("arch\n" + "\n".join(space.format(s) for s in subs[300:310]) + "\n")
    return tmp


def _predict_args(tmp, *extra: str) -> list[str]:
    return [
        "predict", "--space", "ufo-track2", "--train", str(tmp / "train.csv"), "--query",
        str(tmp / "query.csv"), "--out", str(tmp / "out.csv"), "--target", "dukemtmc", *extra,
    ]  # fmt: skip


def test_cli_model_list_names_every_model_and_each_metrics_default(monkeypatch):
    monkeypatch.setenv("GPNAS_PREDICTOR_LATENCY", "gpnas")
    result = CliRunner().invoke(app, ["predict", "--model", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list_predictors()
    for metric, marked in (("latency_ms", "gpnas"), ("score", default_models()[Metric.SCORE])):
        assert [line.split()[0] for line in lines if f"[default for {metric}]" in line] == [marked]


def test_cli_help_lists_models():
    result = CliRunner().invoke(app, ["predict", "--help"])
    assert result.exit_code == 0 and "--cv" in result.output and "list" in result.output


def test_cli_default_model_and_cv(csvs):
    result = CliRunner().invoke(app, _predict_args(csvs, "--cv", "2"))
    assert result.exit_code == 0, result.output
    cv_line = next(line for line in result.output.splitlines() if line.startswith("cv: "))
    assert "2-fold" in cv_line and default_models()[Metric.SCORE] in cv_line
    tau = float(cv_line.split(": ")[2].split(" ")[0])
    assert 0.2 < tau <= 1.0  # 40 subnets of a well-predicted task
    assert f"model {default_models()[Metric.SCORE]}" in result.output
    with (csvs / "out.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and all(float(r["std"]) > 0 for r in rows)


def test_cli_cv_needs_enough_values(csvs):
    result = CliRunner().invoke(app, _predict_args(csvs, "--cv", "30", "--model", "ridge"))
    assert result.exit_code != 0 and "needs at least 60" in str(result.exception)


def test_cli_missing_option_is_named(csvs):
    result = CliRunner().invoke(app, ["predict", "--space", "ufo-track2"])
    assert result.exit_code != 0 and "--train" in str(result.exception)
