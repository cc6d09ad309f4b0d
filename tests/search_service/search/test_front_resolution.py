"""Front resolution: points a latency model cannot tell apart are shown once (issue 21.4)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from search_service.search import FrontResult, budget_query, compute_front, resolve_front


def test_resolve_front_keeps_the_best_scored_of_close_points():
    # A front ordered by latency (scores rise with it): 10.0 and 10.2 are 0.2 apart at std 1.
    latency = np.array([10.0, 10.2, 12.0, 12.4, 20.0])
    std = np.ones(5)
    assert resolve_front(latency, std, 0.0).all()
    keep = resolve_front(latency, std, 0.5)
    assert keep.tolist() == [False, True, False, True, True]
    # Every two consecutive kept points differ by more than the resolution.
    kept = latency[keep]
    assert (np.diff(kept) > 0.5).all()
    # The larger std of a pair decides: a std of 5 at 12.4 hides 10.2 at resolution 0.5.
    wide = np.array([1.0, 1.0, 1.0, 5.0, 1.0])
    assert resolve_front(latency, wide, 0.5).tolist() == [False, False, False, True, True]
    with pytest.raises(ValueError, match="resolution"):
        resolve_front(latency, std, -0.1)


class _FlatLatency:
    """A latency model that cannot tell subnets apart: 300 ms +- 0.3 ms differences, std 10 ms."""

    def predict(self, subnets):
        # Deterministic across processes (hash() of strings is salted per process).
        wiggle = torch.tensor([zlib.crc32(repr(s.layers).encode()) % 1000 / 1000 * 0.3 for s in subnets])
        mean = 300.0 + wiggle.to(torch.float64)
        return mean, torch.full_like(mean, 10.0)


def test_a_flat_latency_model_shows_no_column(nb201, nb201_models):
    score_model = nb201_models[0]
    plain = compute_front(nb201, score_model, _FlatLatency())
    resolved = compute_front(nb201, score_model, _FlatLatency(), resolution=0.5)
    assert len(plain.points) > 3  # the column the plain Pareto set shows
    assert len(resolved.points) == 1
    # The one point kept is the best-scored of the column.
    assert resolved.points[0].score == pytest.approx(max(p.score for p in plain.points))
    # Budget queries still see every candidate.
    assert len(resolved.candidates) == len(plain.candidates)
    for budget in (313.0, 320.0):
        a, b = budget_query(plain.candidates, budget, 0.9), budget_query(resolved.candidates, budget, 0.9)
        assert a.point.arch == b.point.arch


def test_resolution_on_a_real_front_and_round_trip(nb201, nb201_models):
    plain = compute_front(nb201, *nb201_models)
    resolved = compute_front(nb201, *nb201_models, resolution=0.5)
    assert 1 <= len(resolved.points) < len(plain.points)
    assert {p.arch for p in resolved.points} <= {p.arch for p in plain.points}
    for a, b in zip(resolved.points, resolved.points[1:], strict=False):
        assert b.latency_ms - a.latency_ms > 0.5 * max(a.latency_std, b.latency_std)
    # The slowest (best-scored) point of the plain front always stays.
    assert resolved.points[-1].arch == plain.points[-1].arch
    back = FrontResult.from_dict(resolved.to_dict(), nb201)
    assert back.resolution == 0.5 and back.points == resolved.points
    # A latency front under a parameter cap comes from the candidates at the same resolution.
    capped = resolved.front_on("latency", max_params=10**9)
    assert [p.arch for p in capped] == [p.arch for p in resolved.points]
    # Fronts stored before the resolution existed decode as plain Pareto sets.
    old = plain.to_dict()
    del old["resolution"]
    assert FrontResult.from_dict(old, nb201).resolution == 0.0


def test_bad_resolution(nb201, nb201_models):
    with pytest.raises(ValueError, match="resolution"):
        compute_front(nb201, *nb201_models, resolution=float("nan"))


def test_service_setting_default():
    from search_service import Settings

    assert Settings().front_resolution == 0.5
    with pytest.raises(ValueError, match="greater than or equal"):
        Settings(front_resolution=-1.0)
