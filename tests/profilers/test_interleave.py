"""The interleaved, reference-normalised protocol, on simulated machines (no real timing)."""

from __future__ import annotations

import numpy as np
import pytest

from profilers import create_profiler, estimate_rounds, outlier_rounds, summarise_reference, time_rounds


class DriftingMachine:
    """Models whose time is ``cost * speed``, where the speed changes between rounds in phases.

    Every call of a runner advances a call counter; the speed is constant for ``calls_per_phase``
    calls, then jumps to the next value of ``phases`` (a shared VM's slow and fast phases).
    """

    def __init__(self, costs: list[float], reference: float, phases: list[float], calls_per_phase: int):
        self.costs, self.reference_cost = costs, reference
        self.phases, self.calls_per_phase = phases, calls_per_phase
        self.calls = 0
        self.clock_s = 0.0

    def speed(self) -> float:
        return self.phases[(self.calls // self.calls_per_phase) % len(self.phases)]

    def runner(self, cost: float):
        def run() -> float:
            ms = cost * self.speed()
            self.calls += 1
            self.clock_s += ms / 1e3
            return ms

        return run

    def clock(self) -> float:
        return self.clock_s


def test_reference_normalisation_cancels_drift_between_rounds_exactly():
    costs = [100.0, 103.0, 106.0, 110.0]
    # One phase per round (5 calls: four models and the reference): the machine is 30% slower in
    # two rounds of every three.
    machine = DriftingMachine(costs, 105.0, phases=[1.3, 1.3, 1.0], calls_per_phase=5)
    timings = time_rounds(
        [machine.runner(c) for c in costs],
        machine.runner(105.0),
        np.random.default_rng(0),
        warmup=0,
        min_rounds=9,
        max_rounds=9,
        clock=machine.clock,
    )
    assert timings.times.shape == (4, 9) and timings.rounds == 9
    summary = summarise_reference([timings])
    assert summary.median == pytest.approx(136.5)
    assert summary.spread == pytest.approx((136.5 - 105.0) / 136.5)  # p10 fast, p90 slow
    normalised = [e.value for e in estimate_rounds(timings, summary.median, "normalised")]
    # Exactly the true ratios to the reference, on the reference's median scale.
    np.testing.assert_allclose(np.array(normalised) / summary.median, np.array(costs) / 105.0, rtol=1e-12)
    for e in estimate_rounds(timings, summary.median, "raw"):
        assert e.normalised == pytest.approx(
            normalised[costs.index(round(e.normalised / summary.median * 105, 6))]
        )


def test_interleaving_keeps_ranks_where_one_after_another_timing_loses_them():
    costs = [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    phases = [1.0, 1.25, 0.9, 1.15, 1.05]
    # Sequential: all repeats of a model fall in one phase of the machine (7 calls each).
    machine = DriftingMachine(costs, 102.5, phases=phases, calls_per_phase=7)
    sequential = []
    for c in costs:
        run = machine.runner(c)
        sequential.append(np.median([run() for _ in range(7)]))
    assert list(np.argsort(sequential)) != list(range(6))
    machine = DriftingMachine(costs, 102.5, phases=phases, calls_per_phase=7)
    timings = time_rounds(
        [machine.runner(c) for c in costs],
        machine.runner(102.5),
        np.random.default_rng(1),
        warmup=0,
        min_rounds=7,
        max_rounds=7,
        clock=machine.clock,
    )
    # A phase changes inside rounds here, so single rounds are not exact; the median still ranks.
    values = [e.value for e in estimate_rounds(timings, summarise_reference([timings]).median)]
    assert list(np.argsort(values)) == list(range(6))


def test_a_burst_round_is_dropped_by_the_robust_rule():
    reference = np.array([100.0, 101, 99, 100, 102, 98, 300, 100])
    assert outlier_rounds(reference).tolist() == [False] * 6 + [True, False]
    # Half the rounds slow is the machine's state, not an outlier: nothing is dropped.
    assert not outlier_rounds(np.array([100.0, 100, 200, 200])).any()
    calls = iter(range(10_000))

    def slow_in_round_4() -> float:  # 2 runners + reference = 3 calls a round
        return 300.0 if next(calls) // 3 == 4 else 100.0

    timings = time_rounds(
        [slow_in_round_4, slow_in_round_4],
        slow_in_round_4,
        np.random.default_rng(0),
        warmup=0,
        min_rounds=8,
        max_rounds=8,
    )
    (first, _) = estimate_rounds(timings, summarise_reference([timings]).median)
    assert first.rounds == 7 and first.dropped == 1 and first.value == pytest.approx(100.0)
    assert summarise_reference([timings]).dropped == 1


def test_rounds_stop_when_stable_at_the_cap_or_when_the_time_budget_is_spent():
    steady = DriftingMachine([50.0], 60.0, phases=[1.0], calls_per_phase=1)
    timings = time_rounds(
        [steady.runner(50.0)],
        steady.runner(60.0),
        np.random.default_rng(0),
        warmup=2,
        min_rounds=4,
        max_rounds=50,
        target_rse=0.01,
        clock=steady.clock,
    )
    assert timings.rounds == 4  # constant times: the estimate is exact after min_rounds
    noise = np.random.default_rng(3)
    timings = time_rounds(
        [lambda: 50 * noise.lognormal(0, 0.2)],
        lambda: 60.0,
        np.random.default_rng(0),
        warmup=0,
        min_rounds=3,
        max_rounds=12,
        target_rse=0.001,
    )
    assert timings.rounds == 12
    ticks = iter(range(10_000))
    timings = time_rounds(
        [lambda: 50 * noise.lognormal(0, 0.2)],
        lambda: 60.0,
        np.random.default_rng(0),
        warmup=0,
        min_rounds=3,
        max_rounds=100,
        target_rse=0.0,
        max_seconds=5.0,
        clock=lambda: float(next(ticks)),
    )
    # The clock reads 0 at the start and advances one second per check, from round 3 on.
    assert timings.rounds == 7


def test_bad_round_limits_and_empty_batches_are_errors():
    with pytest.raises(ValueError, match="at least one model"):
        time_rounds([], lambda: 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="min_rounds"):
        time_rounds([lambda: 1.0], lambda: 1.0, np.random.default_rng(0), min_rounds=0)
    timings = time_rounds([lambda: 1.0], lambda: 1.0, np.random.default_rng(0), min_rounds=1, max_rounds=1)
    with pytest.raises(ValueError, match="estimator"):
        estimate_rounds(timings, 1.0, "mean")  # type: ignore[arg-type]


# ------------------------------------------------------------------ the real profilers
FAST = {"image_size": 32, "warmup": 1, "min_repeats": 3, "max_repeats": 6, "threads": 1}


def test_a_batch_measures_every_subnet_against_one_reference_and_fails_only_the_bad_one(tiny_track2):
    profiler = create_profiler("torch-cpu", tiny_track2, **FAST)
    subs = tiny_track2.sample(3, seed=1)
    outcomes = profiler.measure_many([*subs[:2], "not-an-arch", subs[2]])
    assert isinstance(outcomes[2], ValueError) and "not-an-arch" in str(outcomes[2])
    results = [o for i, o in enumerate(outcomes) if i != 2]
    assert all(not isinstance(r, Exception) for r in results)
    references = {r.environment["reference"] for r in results}
    assert references == {tiny_track2.format(profiler.reference)}
    for r in results:
        assert r.value > 0 and r.raw_value is not None and r.raw_value > 0
        assert r.p10 <= r.value <= r.p90 and 3 <= r.repeats + r.rounds_dropped <= 6
        assert r.environment["batch_subnets"] == 3 and r.environment["protocol"] == "interleaved"
        assert r.reference_spread is not None and r.reference_spread >= 0
        assert r.environment["load_avg_1m_start"] is not None
        # The batch's reference level travels as fields of its own, to be stored as columns.
        assert r.reference_arch == r.environment["reference"]
        assert r.reference_ms == pytest.approx(r.environment["reference_median_ms"], abs=1e-4)
        fields = r.measurement_fields()
        assert (fields["reference_arch"], fields["reference_ms"]) == (r.reference_arch, r.reference_ms)


def test_drift_beyond_the_threshold_flags_the_whole_batch(tiny_track2):
    subs = tiny_track2.sample(2, seed=2)
    strict = create_profiler("torch-cpu", tiny_track2, drift_threshold=0.0, **FAST).measure_many(subs)
    lenient = create_profiler("torch-cpu", tiny_track2, drift_threshold=10.0, **FAST).measure_many(subs)
    assert all(r.flagged for r in strict) and not any(r.flagged for r in lenient)


def test_a_small_memory_budget_times_the_batch_in_chunks_on_one_scale(tiny_track2):
    subs = tiny_track2.sample(4, seed=3)
    results = create_profiler("torch-cpu", tiny_track2, memory_mb=1, **FAST).measure_many(subs)
    assert all(not isinstance(r, Exception) for r in results)
    assert {r.environment["chunks"] for r in results} == {4}  # one subnet (plus the reference) each
    assert len({r.environment["reference_median_ms"] for r in results}) == 1


def test_bad_batches_and_references_are_clear_errors(tiny_track2):
    profiler = create_profiler("torch-cpu", tiny_track2, **FAST)
    with pytest.raises(ValueError, match="empty batch"):
        profiler.measure_many([])
    with pytest.raises(ValueError, match="setting 'reference'.*not a subnet"):
        create_profiler("torch-cpu", tiny_track2, reference="z" * 37)
    with pytest.raises(ValueError, match="'min_repeats'.*>= 1"):
        create_profiler("torch-cpu", tiny_track2, min_repeats=0)
    with pytest.raises(ValueError, match="'estimator' .*must be one of"):
        create_profiler("torch-cpu", tiny_track2, estimator="mean")


def test_a_long_batch_says_how_far_it_is_every_few_seconds():
    """`make demo` on a busy machine sat 15 minutes in its timing step with no output at all."""
    costs = [1000.0, 1100.0]  # 1 s and 1.1 s a call, on the machine's clock
    machine = DriftingMachine(costs, 1050.0, phases=[1.0], calls_per_phase=3)
    told: list[str] = []
    time_rounds(
        [machine.runner(c) for c in costs],
        machine.runner(1050.0),
        np.random.default_rng(0),
        warmup=0,
        min_rounds=12,
        max_rounds=12,
        clock=machine.clock,
        progress=told.append,
        progress_every_s=10.0,
    )
    # 3.15 s a round, 37.8 s in all: told after rounds 4, 8 and 12 (at least 10 s apart).
    assert [line.split(" of ")[0] for line in told] == ["round 4", "round 8", "round 12"]
    assert told[0].startswith(
        "round 4 of at most 12 (2 models and the reference): 13 s so far, at most 25 s left"
    )
