"""Predicted scores stay within the bounds of the score's label: ufo-track2's ranks are 0-499,
and a model that extrapolates past the best measured rank must not be served as rank 545."""

from __future__ import annotations

import numpy as np
import pytest

from search_service.search import budget_query, compute_front, decode_front, encode_front
from search_service.search._bounds import bounded_score
from supernet import get_space


@pytest.mark.parametrize(
    ("mean", "std", "bounds"),
    [
        (560.0, 10.0, (0.0, 499.0)),  # far beyond the top rank
        (495.0, 8.0, (0.0, 499.0)),  # pressing against it
        (250.0, 30.0, (0.0, 499.0)),  # inside: unchanged
        (-3.0, 2.0, (0.0, None)),  # below a lower bound only
        (510.0, 0.0, (0.0, 499.0)),  # a certain prediction is clipped
    ],
)
def test_bounded_score_is_the_mean_and_std_of_the_clipped_posterior(mean, std, bounds) -> None:
    draws = np.random.default_rng(0).normal(mean, std, 1_000_000)
    low, high = bounds
    clipped = np.clip(draws, -np.inf if low is None else low, np.inf if high is None else high)
    got_mean, got_std = bounded_score(np.array([mean]), np.array([std]), bounds)
    sampling_error = 5 * std / np.sqrt(len(draws)) + 1e-9  # five standard errors of the estimates
    assert got_mean[0] == pytest.approx(clipped.mean(), abs=sampling_error)
    assert got_std[0] == pytest.approx(clipped.std(), abs=sampling_error)


def test_unbounded_scores_are_left_alone() -> None:
    mean, std = np.array([545.0, 563.0]), np.array([4.0, 6.0])
    assert bounded_score(mean, std, (None, None)) == (mean, std)


def test_track2_fronts_and_budget_queries_stay_within_the_labels_ranks(track2_models) -> None:
    space = get_space("ufo-track2")
    assert space.score_bounds == (0.0, 499.0) and "0-499" in space.score_label
    score_model, _ = track2_models
    result = compute_front(space, *track2_models, seed=0, max_evaluations=600, population_size=100)

    raw, _ = score_model.predict(result.candidates.subnets)
    assert raw.max() > 499  # the fitted model itself extrapolates past the top rank
    for scores in (np.array([p.score for p in result.points]), result.candidates.score):
        assert scores.min() >= 0 and scores.max() <= 499
    # The front still rises with the latency, and what is stored decodes the same.
    assert np.all(np.diff([p.score for p in result.points]) > 0)
    assert decode_front(encode_front(result), space.name, "veri").points == result.points

    # What /v1/query answers: the best candidate within the budget, at most the top rank.
    slowest = float(result.candidates.latency_ms.max() * 2)
    choice = budget_query(result.candidates, slowest, 0.9)
    assert choice.point.score == result.candidates.score.max() <= 499
