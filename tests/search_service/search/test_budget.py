import time

import numpy as np
import pytest
from scipy.stats import norm

from search_service.search import CandidateSet, NothingFitsError, budget_query
from supernet import get_space


def make_candidates(n: int, seed: int) -> CandidateSet:
    space = get_space("nasbench201")
    subs = space.sample(n, seed=seed)
    rng = np.random.default_rng(seed)
    latency = rng.uniform(5.0, 50.0, n)
    score = latency * 0.5 + rng.normal(0, 3.0, n)  # slower tends to score higher
    return CandidateSet(
        subs, [space.format(s) for s in subs], score, rng.uniform(0, 1, n), latency, rng.uniform(0.0, 4.0, n)
    )


def test_picks_best_score_among_feasible():
    c = make_candidates(500, 0)
    for budget, confidence in [(20.0, 0.9), (35.0, 0.5), (48.0, 0.99), (10.0, 0.6)]:
        choice = budget_query(c, budget, confidence)
        p = norm.cdf((budget - c.latency_ms) / np.where(c.latency_std > 0, c.latency_std, 1e-300))
        feasible = p >= confidence
        assert choice.point.score == pytest.approx(c.score[feasible].max())
        assert choice.p_feasible >= confidence
        assert choice.p_feasible == pytest.approx(
            norm.cdf((budget - choice.point.latency_ms) / choice.point.latency_std)
        )


def test_zero_std_is_a_certain_latency():
    space = get_space("nasbench201")
    subs = space.sample(2, seed=0)
    c = CandidateSet(
        subs,
        [space.format(s) for s in subs],
        np.array([1.0, 2.0]),
        np.zeros(2),
        np.array([5.0, 10.0]),
        np.zeros(2),
    )
    assert budget_query(c, 10.0, 0.99).point.score == 2.0
    assert budget_query(c, 9.99, 0.99).point.score == 1.0
    assert budget_query(c, 10.0, 0.99).p_feasible == 1.0


def test_raises_when_nothing_fits_and_names_the_fastest():
    c = make_candidates(200, 1)
    fastest = c.latency_ms.min()
    with pytest.raises(NothingFitsError, match=f"{fastest:.4g}"):
        budget_query(c, fastest / 2, 0.9)
    # NothingFitsError is a ValueError for callers that only know that.
    with pytest.raises(ValueError, match="no subnet has P"):
        budget_query(c, 1.0, 0.5)


@pytest.mark.parametrize(
    ("budget", "confidence"),
    [(0.0, 0.9), (-3.0, 0.9), (float("nan"), 0.9), (10.0, 0.0), (10.0, 1.0), (10.0, 1.5)],
)
def test_rejects_bad_input(budget, confidence):
    with pytest.raises(ValueError, match="latency_budget_ms|confidence"):
        budget_query(make_candidates(10, 2), budget, confidence)


def test_higher_confidence_never_scores_higher():
    c = make_candidates(1000, 3)
    for budget in np.linspace(8.0, 50.0, 15):
        previous = np.inf
        for confidence in (0.5, 0.7, 0.9, 0.95, 0.99, 0.999):
            try:
                choice = budget_query(c, float(budget), confidence)
            except NothingFitsError:
                previous = -np.inf
                continue
            assert previous != -np.inf, "feasible again at a higher confidence"
            assert choice.point.score <= previous
            previous = choice.point.score


def test_query_is_fast():
    c = make_candidates(5000, 4)
    budget_query(c, 30.0, 0.9)
    start = time.perf_counter()
    for _ in range(200):
        budget_query(c, 30.0, 0.9)
    assert (time.perf_counter() - start) / 200 < 2e-3  # < 1 ms typically; slack for a busy CI machine
