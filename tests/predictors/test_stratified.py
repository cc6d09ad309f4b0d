"""cost-stratified: a new chip's first latency measurements spread over the analytic cost range."""

from __future__ import annotations

import numpy as np
import pytest

from predictors import CostStratifiedStrategy, create_strategy, list_strategies
from supernet import Dimension, SearchSpace, Subnet, get_space


def _strata(costs: np.ndarray, lo: float, hi: float, k: int) -> np.ndarray:
    """Index of each cost among ``k`` equal-width strata of ``[lo, hi]``."""
    return np.minimum(((np.asarray(costs) - lo) / (hi - lo) * k).astype(int), k - 1)


def _max_gap(costs: np.ndarray, lo: float, hi: float) -> float:
    """Largest stretch of ``[lo, hi]`` without a cost, as a share of the range."""
    return float(np.diff(np.sort(np.r_[lo, costs, hi])).max() / (hi - lo))


def _extremes(space: SearchSpace) -> tuple[Subnet, Subnet]:
    """Cheapest and costliest UFO subnets, built by hand: fewest layers with the fewest heads and
    narrowest FFN, and the opposite (every choice adds MACs, the choice values say which)."""

    def build(depth: int, cheap: bool) -> Subnet:
        layer = tuple(
            int(np.argmin(dim.values) if cheap else np.argmax(dim.values))
            if dim.name in ("num_heads", "mlp_ratio")
            else 0
            for dim in space.dimensions
        )
        return Subnet(space.name, depth, (layer,) * depth)

    return build(space.depths[0], True), build(space.max_depth, False)


class _NoCostSpace(SearchSpace):
    """A tiny space without an analytic cost."""

    def __init__(self) -> None:
        super().__init__("tiny", [], [Dimension("a", (1, 2, 3)), Dimension("b", (1, 2))], [2, 3])

    def macs(self, subs):
        raise NotImplementedError("tiny has no cost model")


class _CostSpace(SearchSpace):
    """A small space whose MACs add per layer (``a * b`` per active layer, plus a stem)."""

    def __init__(self) -> None:
        super().__init__("costly", [], [Dimension("a", (1, 2, 3, 4)), Dimension("b", (1, 2, 5))], [2, 3])

    def choice_macs(self, codes: np.ndarray) -> np.ndarray:
        a = np.asarray(self.dimensions[0].values, dtype=float)[np.maximum(codes[:, :, 0], 0)]
        b = np.asarray(self.dimensions[1].values, dtype=float)[np.maximum(codes[:, :, 1], 0)]
        return 7.0 + np.where(codes[:, :, 0] >= 0, a * b, 0.0).sum(1)


def test_registered_and_exported():
    assert "cost-stratified" in list_strategies()
    assert isinstance(create_strategy("cost-stratified"), CostStratifiedStrategy)
    with pytest.raises(ValueError, match="n_tilts"):
        CostStratifiedStrategy(n_tilts=0)


@pytest.mark.parametrize("name", ["ufo-track2", "ufo2-multipath"])
def test_spans_the_cost_range_where_uniform_draws_do_not(name):
    """30 picks reach both ends of the cost range and sit one per stratum; 30 uniform draws of the
    same space stay in the middle (measured: about 45% of the range, 9-11 of 30 strata)."""
    space = get_space(name)
    cheapest, costliest = _extremes(space)
    lo, hi = space.macs([cheapest, costliest])
    picks = create_strategy("cost-stratified").select(space, None, [], 30, seed=0)
    assert len(set(picks)) == 30
    costs = space.macs(picks)
    assert costs.min() == lo and costs.max() == hi
    assert (costs.max() - costs.min()) / (hi - lo) >= 0.95
    assert sorted(_strata(costs, lo, hi, 30).tolist()) == list(range(30))
    assert _max_gap(costs, lo, hi) <= 2 / 30

    uniform = space.macs(space.sample(30, seed=0))
    uniform_cover = (uniform.max() - uniform.min()) / (hi - lo)
    assert uniform_cover < 0.6
    assert len(set(_strata(uniform, lo, hi, 30).tolist())) < 15
    assert _max_gap(uniform, lo, hi) > 3 * _max_gap(costs, lo, hi)


def testdefault_pool_covers_the_range():
    """Every tenth of the cost range holds pool members; a uniform pool of the same size leaves
    the ends empty."""
    space = get_space("ufo-track2")
    lo, hi = space.macs(list(_extremes(space)))
    pool = CostStratifiedStrategy().default_pool(space, 2000, seed=0)
    assert len(set(pool)) == 2000
    counts = np.bincount(_strata(space.macs(pool), lo, hi, 10), minlength=10)
    assert counts.min() >= 50, counts
    uniform = np.bincount(_strata(space.macs(space.sample(2000, seed=0)), lo, hi, 10), minlength=10)
    assert uniform[0] == uniform[-1] == 0, uniform


def test_measured_subnets_are_filled_around():
    """After 30 uniform measurements (all mid-range), 10 new picks go to the cost ranges they
    miss: the measured + new set has a smaller largest gap than with the 10 picks made as if
    nothing were measured."""
    space = get_space("ufo-track2")
    cheapest, costliest = _extremes(space)
    lo, hi = space.macs([cheapest, costliest])
    measured = space.sample(30, seed=1)
    done = space.macs(measured)
    strategy = create_strategy("cost-stratified")
    after = strategy.select(space, None, measured, 10, seed=0)
    blind = strategy.select(space, None, [], 10, seed=0)
    assert len(set(after)) == 10 and not set(after) & set(measured)
    assert {cheapest, costliest} <= set(after)
    with_measured = _max_gap(np.r_[done, space.macs(after)], lo, hi)
    without = _max_gap(np.r_[done, space.macs(blind)], lo, hi)
    assert with_measured < 0.75 * without, (with_measured, without)
    # Most new picks lie outside the measured span, where the gaps are.
    new = space.macs(after)
    assert ((new < done.min()) | (new > done.max())).sum() >= 8


def test_deterministic_for_a_seed(ufo):
    space = get_space("ufo-track2")
    strategy = create_strategy("cost-stratified")
    first = strategy.select(space, None, [], 12, seed=3)
    assert strategy.select(space, None, [], 12, seed=3) == first
    assert strategy.select(space, None, [], 12, seed=4) != first
    subs, _ = ufo
    picks = strategy.select(space, None, subs[:5], 8, candidates=subs, seed=3)
    assert strategy.select(space, None, subs[:5], 8, candidates=subs, seed=3) == picks


def test_candidates_are_stratified(ufo):
    """Given a table's rows (the 400 track-2 subnets), picks take its cheapest and costliest rows
    and one row per tenth of its cost range; random rows miss several tenths."""
    subs, _ = ufo
    space = get_space("ufo-track2")
    measured = subs[:20]
    costs = space.macs(subs[20:])
    lo, hi = costs.min(), costs.max()
    strategy = create_strategy("cost-stratified")
    picks = strategy.select(space, None, measured, 10, candidates=subs, seed=0)
    assert len(set(picks)) == 10 and set(picks) <= set(subs[20:])  # never a measured row
    picked = space.macs(picks)
    rnd = space.macs(create_strategy("random").select(space, None, [], 10, candidates=subs[20:], seed=0))
    blind = strategy.select(space, None, [], 10, candidates=subs[20:], seed=0)
    assert space.macs(blind).min() == lo and space.macs(blind).max() == hi
    assert len(set(_strata(space.macs(blind), lo, hi, 10).tolist())) == 10
    assert len(set(_strata(rnd, lo, hi, 10).tolist())) < 10
    # With 20 rows measured, the 10 new rows close the measured rows' gaps better than random rows.
    done, every = space.macs(measured), space.macs(subs)
    lo, hi = every.min(), every.max()
    rnd_after = create_strategy("random").select(space, None, measured, 10, candidates=subs[20:], seed=0)
    assert _max_gap(np.r_[done, picked], lo, hi) < _max_gap(np.r_[done, space.macs(rnd_after)], lo, hi)


def test_candidates_with_a_cost_hole(ufo):
    """Candidates from two cost clusters: strata between them are empty, and the spare picks
    spread within the clusters instead of failing."""
    subs, _ = ufo
    space = get_space("ufo-track2")
    order = np.argsort(space.macs(subs))
    candidates = [subs[i] for i in np.r_[order[:5], order[-20:]]]
    picks = create_strategy("cost-stratified").select(space, None, [], 12, candidates=candidates, seed=0)
    assert len(set(picks)) == 12 and set(picks) <= set(candidates)
    costs = space.macs(picks)
    assert costs.min() == space.macs(candidates).min() and costs.max() == space.macs(candidates).max()
    assert len(set(picks) & {subs[i] for i in order[:5]}) >= 3


def test_generic_space_with_costs():
    """A space with additive costs but no UFO code: exhaustive (small) and tilted pools both reach
    the exact extremes."""
    space = _CostSpace()
    assert space.cardinality <= CostStratifiedStrategy().exhaustive_limit
    every = list(space.enumerate())
    costs = space.macs(every)
    for strategy in (CostStratifiedStrategy(), CostStratifiedStrategy(pool_size=300, exhaustive_limit=0)):
        picks = strategy.select(space, None, [], 6, seed=0)
        got = space.macs(picks)
        assert got.min() == costs.min() and got.max() == costs.max()
        assert len(set(_strata(got, costs.min(), costs.max(), 6).tolist())) == 6


def test_without_costs_falls_back_to_the_cold_start_design():
    """A space without an analytic cost gets what max-variance gives with no model: a uniform pool
    and points far apart in the one-hot code."""
    space = _NoCostSpace()
    measured = space.sample(4, seed=5)
    for done in ([], measured):
        picks = create_strategy("cost-stratified", pool_size=50).select(space, None, done, 6, seed=1)
        cold = create_strategy("max-variance", pool_size=50).select(space, None, done, 6, seed=1)
        assert picks == cold
        assert len(set(picks)) == 6 and not set(picks) & set(done)


def test_bad_n():
    space = _CostSpace()
    strategy = create_strategy("cost-stratified")
    with pytest.raises(ValueError, match="n must be >= 0"):
        strategy.select(space, None, [], -1)
    assert strategy.select(space, None, [], 0, seed=0) == []
    with pytest.raises(ValueError, match="unmeasured candidates"):
        strategy.select(space, None, [], space.cardinality + 1, seed=0)
    candidates = space.sample(5, seed=0)
    with pytest.raises(ValueError, match="unmeasured candidates"):
        strategy.select(space, None, candidates[:3], 3, candidates=candidates)
    with pytest.raises(ValueError, match="unmeasured candidates"):
        strategy.select(_NoCostSpace(), None, [], _NoCostSpace().cardinality + 1)
