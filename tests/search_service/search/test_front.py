import json

import numpy as np
import pytest

from search_service.search import (
    CandidateSet,
    EvolutionConfig,
    FrontResult,
    NothingFitsError,
    budget_query,
    compute_front,
    evolve,
    hypervolume,
    pareto_mask,
)
from supernet import get_space


@pytest.fixture(scope="module")
def exact_nb201(nb201, nb201_models):
    return compute_front(nb201, *nb201_models)


def _front_array(result):
    return np.array([[p.score, p.latency_ms] for p in result.points])


def test_exact_front_equals_brute_force(nb201, nb201_models, exact_nb201):
    score_model, latency_model = nb201_models
    subs = list(nb201.enumerate())
    score = score_model.predict(subs)[0].numpy()
    latency = latency_model.predict(subs)[0].numpy()
    dom = (score[:, None] >= score[None]) & (latency[:, None] <= latency[None])
    dom &= (score[:, None] > score[None]) | (latency[:, None] < latency[None])
    expected = {(s, lat) for s, lat, d in zip(score, latency, dom.any(0), strict=True) if not d}
    got = {(p.score, p.latency_ms) for p in exact_nb201.points}
    assert got == expected
    assert exact_nb201.method == "exact" and exact_nb201.evaluations == nb201.cardinality
    latencies = [p.latency_ms for p in exact_nb201.points]
    assert latencies == sorted(latencies)
    for p in exact_nb201.points:
        assert nb201.format(p.subnet) == p.arch


def test_nsga2_front_close_to_exact_on_a_fifth_of_the_space(nb201, nb201_models, exact_nb201):
    exact = _front_array(exact_nb201)
    ref = (exact[:, 0].min() - 0.1, exact[:, 1].max() * 1.1)
    budget = nb201.cardinality // 5
    ratios = []
    for seed in (0, 1):
        result = compute_front(
            nb201, *nb201_models, seed=seed, exact_limit=0, max_evaluations=budget, population_size=100
        )
        assert result.method == "nsga2" and result.evaluations <= budget
        ratios.append(hypervolume(_front_array(result), ref) / hypervolume(exact, ref))
    assert min(ratios) >= 0.99, ratios


def test_candidates_answer_like_the_whole_space(nb201, nb201_models, exact_nb201):
    """Queries on the stored candidates equal queries on all 15,625 subnets, for any confidence in range."""
    everything = compute_front(nb201, *nb201_models, confidences=(0.5, 0.999))
    score_model, latency_model = nb201_models
    subs = list(nb201.enumerate())
    s, s_std = (t.numpy() for t in score_model.predict(subs))
    lat, lat_std = (t.numpy() for t in latency_model.predict(subs))
    full = CandidateSet(subs, [nb201.format(x) for x in subs], s, s_std, lat, lat_std)
    assert len(everything.candidates) < len(full) // 10
    rng = np.random.default_rng(0)
    for _ in range(200):
        budget = float(rng.uniform(lat.min(), lat.max()))
        confidence = float(rng.uniform(0.5, 0.999))
        try:
            want = budget_query(full, budget, confidence)
        except NothingFitsError:
            with pytest.raises(NothingFitsError):
                budget_query(everything.candidates, budget, confidence)
            continue
        got = budget_query(everything.candidates, budget, confidence)
        assert got.point.score == want.point.score
        assert got.point.latency_ms <= budget


def test_track2_nsga2_front_is_valid_and_reproducible(track2_models):
    space = get_space("ufo-track2")
    a = compute_front(space, *track2_models, seed=3, max_evaluations=1200, population_size=100)
    b = compute_front(space, *track2_models, seed=3, max_evaluations=1200, population_size=100)
    assert a.method == "nsga2" and a.evaluations == 1200 and a.generations >= 10
    assert [p.arch for p in a.points] == [p.arch for p in b.points]
    front = _front_array(a)
    assert pareto_mask(np.column_stack([front[:, 0], -front[:, 1]])).all()
    assert (np.diff(front[:, 1]) > 0).all() and (np.diff(front[:, 0]) > 0).all()
    for p in a.points:
        assert space.parse(p.arch) == p.subnet
    # The front reaches the cheapest corner: the homogeneous smallest subnet is seeded.
    smallest = space.parse("j" + "331" * 10 + "000" * 2)
    assert front[0, 1] <= track2_models[1].predict([smallest])[0].item() + 1e-9


def test_evolve_keeps_depths_valid_and_never_repeats(track2_models):
    space = get_space("ufo-track2")

    def objective(codes, depths):
        active = codes >= 0
        assert ((active.all(-1)).sum(1) == depths).all()
        assert (active.all(-1) == (np.arange(space.max_depth) < depths[:, None])).all()
        assert np.isin(depths, space.depths).all()
        return np.column_stack([codes.clip(0).sum((1, 2)), -depths.astype(float)])

    config = EvolutionConfig(population_size=50, max_evaluations=2000)
    archive = evolve(space, objective, config=config, seed=1)
    flat = archive.codes.reshape(len(archive.codes), -1)
    assert len(np.unique(flat, axis=0)) == len(flat) == 2000
    assert set(np.unique(archive.depths)) == set(space.depths)


def test_json_round_trip(nb201, exact_nb201):
    text = json.dumps(exact_nb201.to_dict())
    back = FrontResult.from_dict(json.loads(text), nb201)
    assert back.points == exact_nb201.points
    assert back.candidates.archs == exact_nb201.candidates.archs
    np.testing.assert_array_equal(back.candidates.latency_std, exact_nb201.candidates.latency_std)
    assert back.method == "exact" and back.confidences == exact_nb201.confidences
    with pytest.raises(ValueError, match="space"):
        FrontResult.from_dict({**exact_nb201.to_dict(), "space": "fbnet"}, nb201)
    broken = exact_nb201.to_dict()
    del broken["candidates"]["latency_std"]
    with pytest.raises(ValueError, match="latency_std"):
        FrontResult.from_dict(broken, nb201)
