"""Parameter counts in fronts: every point's params / macs, budget queries under a parameter cap
(exact over the whole space on NAS-Bench-201), (score, params) fronts, and fronts stored before
the counts were kept."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from scipy.special import ndtri

from search_service.search import (
    CandidateSet,
    FrontResult,
    NothingFitsError,
    budget_query,
    candidate_front,
    compute_front,
)
from supernet import Dimension, SearchSpace, Subnet, get_space


@pytest.fixture(scope="module")
def exact(nb201, nb201_models):
    return compute_front(nb201, *nb201_models, confidences=(0.5, 0.99))


@pytest.fixture(scope="module")
def everything(nb201, nb201_models):
    """Every NAS-Bench-201 cell with its predictions and exact counts, as numpy columns."""
    subs = list(nb201.enumerate())
    score_model, latency_model = nb201_models
    score, score_std = (t.numpy() for t in score_model.predict(subs))
    latency, latency_std = (t.numpy() for t in latency_model.predict(subs))
    return {
        "subs": subs,
        "score": score,
        "latency": latency,
        "latency_std": latency_std,
        "params": nb201.params(subs),
        "score_std": score_std,
    }


def _non_dominated(score: np.ndarray, cost: np.ndarray) -> set[tuple[float, float]]:
    """Brute force: the (score, cost) pairs no other pair beats (score up, cost down)."""
    better = (score[:, None] >= score[None]) & (cost[:, None] <= cost[None])
    better &= (score[:, None] > score[None]) | (cost[:, None] < cost[None])
    keep = ~better.any(0)
    return set(zip(score[keep].tolist(), cost[keep].tolist(), strict=True))


def test_points_and_candidates_carry_the_spaces_counts(nb201, exact) -> None:
    candidates = exact.candidates
    np.testing.assert_array_equal(candidates.params, nb201.params(candidates.subnets))
    np.testing.assert_array_equal(candidates.macs, nb201.macs(candidates.subnets))
    assert candidates.params.dtype == np.int64
    for point in exact.points:
        assert point.params == int(nb201.params([point.subnet])[0])
        assert point.macs == float(nb201.macs([point.subnet])[0])
        assert point.to_dict()["params"] == point.params
    assert exact.task is None


def test_capped_budget_queries_equal_brute_force_over_the_whole_space(exact, everything) -> None:
    """The kept candidates answer like all 15,625 cells, for any budget, confidence in range and cap."""
    e = everything
    rng = np.random.default_rng(0)
    caps = np.r_[e["params"].min() - 1, np.unique(e["params"])]  # one cap below every subnet
    answered = refused_by_params = 0
    for _ in range(300):
        budget = float(rng.uniform(e["latency"].min(), np.quantile(e["latency"], 0.8)))
        confidence = float(rng.uniform(0.5, 0.99))
        cap = int(rng.choice(caps)) + int(rng.integers(0, 2))  # on a count, or one above it
        feasible = (e["latency"] + ndtri(confidence) * e["latency_std"] <= budget) & (e["params"] <= cap)
        if not feasible.any():
            with pytest.raises(NothingFitsError) as refused:
                budget_query(exact.candidates, budget, confidence, max_params=cap)
            refused_by_params += refused.value.field == "max_params"
            continue
        got = budget_query(exact.candidates, budget, confidence, max_params=cap)
        assert got.point.score == e["score"][feasible].max()
        assert got.point.params is not None and got.point.params <= cap
        assert got.point.latency_ms + ndtri(confidence) * got.point.latency_std <= budget
        answered += 1
    assert answered > 150 and refused_by_params > 0  # both kinds of outcome were exercised


def test_the_cap_changes_the_answer_to_the_best_smaller_subnet(exact) -> None:
    budget = float(exact.candidates.latency_ms.max()) * 2
    free = budget_query(exact.candidates, budget, 0.9)
    assert free.point.params is not None
    capped = budget_query(exact.candidates, budget, 0.9, max_params=free.point.params - 1)
    assert capped.point.params is not None and capped.point.params < free.point.params
    assert capped.point.score < free.point.score
    # A cap at the chosen subnet's own count keeps it.
    assert budget_query(exact.candidates, budget, 0.9, max_params=free.point.params).point == free.point


def test_params_front_is_the_brute_force_front_ordered_by_params(exact, everything) -> None:
    e = everything
    front = exact.front_on("params")
    assert {(p.score, p.params) for p in front} == _non_dominated(e["score"], e["params"])
    params = [p.params for p in front]
    scores = [p.score for p in front]
    assert params == sorted(params) and len(set(params)) == len(params)
    assert all(b > a for a, b in zip(scores, scores[1:], strict=False))
    # Under a cap: the front of the subnets within it, which is the full front cut at the cap.
    cap = int(np.median(params))
    assert exact.front_on("params", cap) == [p for p in front if p.params is not None and p.params <= cap]


def test_capped_latency_front_is_the_front_of_the_subnets_within_the_cap(exact, everything) -> None:
    e = everything
    assert exact.front_on("latency") == exact.points
    for cap in np.quantile(e["params"], [0.05, 0.3, 0.7]).astype(int).tolist():
        within = e["params"] <= cap
        front = exact.front_on("latency", cap)
        assert {(p.score, p.latency_ms) for p in front} == _non_dominated(
            e["score"][within], e["latency"][within]
        )
        assert all(p.params is not None and p.params <= cap for p in front)
        latencies = [p.latency_ms for p in front]
        assert latencies == sorted(latencies)
    # A cap above every subnet gives back the stored front.
    huge = int(e["params"].max())
    assert [p.arch for p in exact.front_on("latency", huge)] == [p.arch for p in exact.points]


def _candidates(params: list[int], latency: list[float], score: list[float]) -> CandidateSet:
    space = get_space("nasbench201")
    subs = space.sample(len(params), seed=0)
    n = len(params)
    return CandidateSet(
        subs,
        [space.format(s) for s in subs],
        np.array(score),
        np.zeros(n),
        np.array(latency),
        np.zeros(n),
        np.array(params),
        np.ones(n),
    )


def test_nothing_fits_says_which_constraint_ruled_the_candidates_out() -> None:
    c = _candidates([100, 200, 300], [30.0, 20.0, 10.0], [1.0, 2.0, 3.0])
    assert budget_query(c, 25.0, 0.9, max_params=250).point.score == 2.0
    # The cap excludes everything: the smallest candidate and its count are named.
    named = rf"at most 99 parameters.*{re.escape(c.archs[0])}, has 100$"
    with pytest.raises(NothingFitsError, match=named) as small:
        budget_query(c, 100.0, 0.9, max_params=99)
    assert small.value.field == "max_params"
    # The budget excludes everything, whatever the cap: a latency answer, naming the fastest.
    with pytest.raises(NothingFitsError, match="fastest candidate is predicted at 10 ") as fast:
        budget_query(c, 5.0, 0.9, max_params=1000)
    assert fast.value.field == "latency_budget_ms"
    # Each leaves candidates, none meets both: the cap rules out the fast ones (the smallest of
    # them has 300), and the fastest within the cap is named.
    with pytest.raises(
        NothingFitsError, match=r"smallest of them has 300 parameters.*predicted at 20 "
    ) as both:
        budget_query(c, 15.0, 0.9, max_params=250)
    assert both.value.field == "max_params"


@pytest.mark.parametrize("cap", [0, -3, 1.5, True, "100"])
def test_bad_caps_are_refused(cap) -> None:
    c = _candidates([100], [10.0], [1.0])
    with pytest.raises(ValueError, match="max_params must be a positive integer"):
        budget_query(c, 20.0, 0.9, max_params=cap)
    with pytest.raises(ValueError, match="max_params must be a positive integer"):
        candidate_front(c, "params", cap)
    with pytest.raises(ValueError, match="objective must be one of latency, params"):
        candidate_front(c, "memory")  # type: ignore[arg-type]


def test_candidates_without_counts_refuse_a_cap() -> None:
    space = get_space("nasbench201")
    subs = space.sample(2, seed=0)
    c = CandidateSet(subs, [space.format(s) for s in subs], *np.ones((4, 2)))
    assert c.params is None and c.point(0).params is None
    assert budget_query(c, 5.0, 0.9).point.params is None
    with pytest.raises(ValueError, match="needs parameter counts"):
        budget_query(c, 5.0, 0.9, max_params=10)
    with pytest.raises(ValueError, match="non-integer"):
        CandidateSet(subs, [space.format(s) for s in subs], *np.ones((4, 2)), params=np.array([1.5, 2.0]))


def _old_format(data: dict) -> dict:
    """``data`` as fronts were stored before params, macs and the task were kept."""
    old = json.loads(json.dumps(data))
    del old["task"]
    for point in old["points"]:
        del point["params"], point["macs"]
    del old["candidates"]["params"], old["candidates"]["macs"]
    return old


def test_fronts_stored_without_counts_decode_with_them(nb201, exact) -> None:
    stored = json.loads(json.dumps(exact.to_dict()))
    assert FrontResult.from_dict(stored, nb201).points == exact.points
    old = FrontResult.from_dict(_old_format(stored), nb201)
    assert old.points == exact.points
    np.testing.assert_array_equal(old.candidates.params, exact.candidates.params)
    np.testing.assert_array_equal(old.candidates.macs, exact.candidates.macs)
    assert old.front_on("params") == exact.front_on("params")


class _Analytic:
    """Score and latency from the space's MACs (a deterministic stand-in for fitted models)."""

    def __init__(self, space: SearchSpace, kind: str) -> None:
        self.space, self.kind = space, kind

    def predict(self, subnets):
        gmacs = torch.as_tensor(self.space.macs(subnets) / 1e9)
        mean = torch.log(gmacs) if self.kind == "score" else 2.0 * gmacs + 1.0
        return mean, 0.02 * mean.abs()


def test_a_tasks_head_is_in_its_fronts_counts_old_and_new() -> None:
    space = get_space("ufo2-multipath")
    models = _Analytic(space, "score"), _Analytic(space, "latency")
    result = compute_front(space, *models, task="face", max_evaluations=300, population_size=50)
    assert result.task == "face"
    subnets = [p.subnet for p in result.points]
    assert [p.params for p in result.points] == space.params(subnets, "face").tolist()
    head = 768 * 512 + 512
    assert all(p.params == space.param_count(p.subnet) + head for p in result.points)
    np.testing.assert_array_equal(result.candidates.params, space.params(result.candidates.subnets, "face"))
    # An old front names no task: decoding it for its task counts the head; new fronts know it.
    old = _old_format(result.to_dict())
    assert FrontResult.from_dict(old, space, "face").points == result.points
    assert FrontResult.from_dict(old, space).points[0].params == result.points[0].params - head
    assert FrontResult.from_dict(result.to_dict(), space).task == "face"
    with pytest.raises(ValueError, match="for task 'face', not 'person'"):
        FrontResult.from_dict(result.to_dict(), space, "person")
    with pytest.raises(ValueError, match="unknown task"):
        compute_front(space, *models, task="cat", max_evaluations=60, population_size=20)


class _Plain(SearchSpace):
    """A space with an arch syntax but neither a parameter count nor a cost model."""

    def parse(self, arch: str):
        return self.validate(Subnet(self.name, len(arch), tuple((int(c),) for c in arch)))

    def format(self, sub) -> str:
        return "".join(str(c) for (c,) in sub.layers)


def test_a_space_without_counts_still_gets_a_front() -> None:
    space = _Plain("plain", [], [Dimension("op", (0, 1, 2))], [3])

    class Model:
        def __init__(self, sign: float) -> None:
            self.sign = sign

        def predict(self, subnets):
            total = torch.tensor([float(sum(c for (c,) in s.layers)) for s in subnets], dtype=torch.float64)
            return self.sign * total + 5.0, torch.full_like(total, 0.1)

    result = compute_front(space, Model(1.0), Model(2.0))
    assert result.points and all(p.params is None and p.macs is None for p in result.points)
    assert result.candidates.params is None
    back = FrontResult.from_dict(json.loads(json.dumps(result.to_dict())), space)
    assert back.points == result.points
    with pytest.raises(ValueError, match="needs parameter counts"):
        result.front_on("params")
