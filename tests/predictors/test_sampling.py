import pytest
import torch

from predictors import GPNASPredictor, create_strategy, list_strategies
from supernet import get_space


@pytest.fixture(scope="module")
def models(ufo):
    subs, Y = ufo
    space = get_space("ufo-track2")
    score = GPNASPredictor(space, kernel="linear").fit(subs[:60], Y[:60, 1])
    # A latency-like target from the analytic FLOPs (real UFO latencies are not in ../shared/data).
    flops = torch.tensor([space.flops(s) / 1e9 for s in subs[:60]], dtype=torch.float64)
    latency = GPNASPredictor(space, metric="latency_ms", kernel="linear").fit(subs[:60], flops)
    return score, latency


def test_names():
    assert {"random", "max-variance", "mutual-information", "qlognehvi"} <= set(list_strategies())
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        create_strategy("nope")


@pytest.mark.parametrize("name", ["random", "max-variance", "qlognehvi"])
def test_returns_n_distinct_unmeasured(ufo, models, name):
    subs, _ = ufo
    space = get_space("ufo-track2")
    measured = subs[:60]
    candidates = subs[:200]  # includes the measured ones, which must never come back
    predictors = list(models) if name == "qlognehvi" else models[0]
    picks = create_strategy(name).select(space, predictors, measured, 6, candidates=candidates, seed=0)
    assert len(picks) == 6 == len(set(picks))
    assert not set(picks) & set(measured)
    assert set(picks) <= set(candidates)


def test_default_pool_and_cold_start():
    space = get_space("fbnet")
    measured = space.sample(3, seed=1)
    picks = create_strategy("max-variance", pool_size=100).select(space, None, measured, 5, seed=2)
    assert len(set(picks)) == 5 and not set(picks) & set(measured)


def test_max_variance_prefers_uncertain_regions(ufo, models):
    """Its picks have a higher posterior std than random picks from the same pool."""
    subs, _ = ufo
    space = get_space("ufo-track2")
    score = models[0]
    pool = subs[60:400]
    mv = create_strategy("max-variance").select(space, score, subs[:60], 10, candidates=pool, seed=0)
    rnd = create_strategy("random").select(space, score, subs[:60], 10, candidates=pool, seed=0)
    assert (
        score.predict_latent(score.encode(mv))[1].mean() > score.predict_latent(score.encode(rnd))[1].mean()
    )


def test_errors(ufo, models):
    subs, _ = ufo
    space = get_space("ufo-track2")
    with pytest.raises(ValueError, match="two fitted predictors"):
        create_strategy("qlognehvi").select(space, models[0], subs[:60], 2, candidates=subs[:100])
    with pytest.raises(ValueError, match="unmeasured candidates"):
        create_strategy("random").select(space, None, subs[:10], 5, candidates=subs[:12])
