import copy

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from predictors import GPNASPredictor, Predictor, TransferPredictor, create_strategy, list_strategies
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
    names = {
        "random",
        "max-variance",
        "mutual-information",
        "integrated-variance",
        "alc",
        "qlognehvi",
        "cost-stratified",
    }
    assert names <= set(list_strategies())
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        create_strategy("nope")


@pytest.mark.parametrize(
    "name", ["random", "max-variance", "integrated-variance", "qlognehvi", "cost-stratified"]
)
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


def _sources_without(nb201, chip: str) -> TransferPredictor:
    """Transfer sources fitted on 400 archs x every NAS-Bench-201 device but ``chip``."""
    space = get_space("nasbench201")
    others = [c for c in nb201.columns if c not in ("arch", chip)]
    Y = torch.tensor(nb201.loc[:399, others].to_numpy(), dtype=torch.float64)
    return TransferPredictor(space, metric="latency_ms").fit_sources(space.parse_many(nb201.arch[:400]), Y)


@pytest.fixture(scope="module")
def new_chip(nb201):
    """raspi4 as the "new chip": (space, subnets, its sources-only model, its latency by subnet)."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    return space, subs, _sources_without(nb201, "raspi4"), dict(zip(subs, nb201["raspi4"], strict=True))


def test_cold_start_design_beats_random_picks_on_new_chips(nb201):
    """The first 10 measurements of a new chip, chosen by integrated variance under the transfer
    prior, rank the chip's latencies better on average than 10 random picks (5 draws per chip)."""
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch.tolist())
    design_taus, random_taus = [], []
    for chip in ("1080ti_1", "2080ti_32", "essential_ph_1", "gold_6240"):
        sources = _sources_without(nb201, chip)
        latency = dict(zip(subs, nb201[chip], strict=True))

        def tau(picks, sources=sources, latency=latency, chip=chip):
            fitted = copy.deepcopy(sources).refit_target(picks, [latency[s] for s in picks])
            return kendalltau(fitted.predict(subs[1000:])[0].numpy(), nb201.loc[1000:, chip])[0]

        design = create_strategy("integrated-variance").select(space, sources, [], 10, candidates=subs[:400])
        assert len(set(design)) == 10
        design_taus.append(tau(design))
        random_taus += [
            tau(create_strategy("random").select(space, None, [], 10, candidates=subs[:400], seed=seed))
            for seed in range(5)
        ]
    assert np.mean(design_taus) > np.mean(random_taus) + 0.01


def test_cold_start_conditions_on_what_is_measured(new_chip):
    """Subnets already measured on the new chip lower the prior variance near them: picks made
    after them are not the picks made before."""
    space, subs, sources, _ = new_chip
    first = create_strategy("max-variance").select(space, sources, [], 5, candidates=subs[:400])
    after = create_strategy("max-variance").select(space, sources, first[:3], 5, candidates=subs[:400])
    assert not set(after) & set(first[:3])
    assert after[:2] == first[3:5]  # greedy: the same design, continued
    cov = sources.prior_covariance(sources.encode(subs[:50]))
    assert torch.allclose(cov, cov.T) and float(torch.linalg.eigvalsh(cov).min()) > -1e-8


def test_sources_only_model_refits_and_survives_bytes(new_chip):
    space, subs, sources, latency = new_chip
    with pytest.raises(ValueError, match="not fitted"):
        sources.predict(subs[:3])
    fitted = copy.deepcopy(sources).refit_target(subs[:10], [latency[s] for s in subs[:10]])
    restored = Predictor.from_bytes(fitted.to_bytes())
    assert torch.equal(restored.predict(subs[500:])[0], fitted.predict(subs[500:])[0])
    # refit_target after a round trip reuses the restored sources' kernel: same model as without one
    values = [latency[s] for s in subs[:12]]
    again = restored.refit_target(subs[:12], values)
    direct = copy.deepcopy(sources).refit_target(subs[:12], values)
    assert torch.allclose(again.predict(subs[500:])[0], direct.predict(subs[500:])[0])
    with pytest.raises(ValueError, match="no related column"):
        TransferPredictor(space).fit_sources(subs[:4], torch.ones(4, 2, dtype=torch.float64))


def test_cold_start_first_pick_follows_the_seed():
    """With nothing measured and no model the first pick is random: seeded, not always row 0."""
    space = get_space("fbnet")
    candidates = space.sample(50, seed=3)
    strategy = create_strategy("max-variance")

    def first(seed: int):
        return strategy.select(space, None, [], 1, candidates=candidates, seed=seed)[0]

    firsts = [first(seed) for seed in range(8)]
    assert len(set(firsts)) > 1
    assert firsts == [first(seed) for seed in range(8)]
