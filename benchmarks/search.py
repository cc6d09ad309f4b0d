"""Benchmark of the Pareto search (README table: benchmarks/results/search.md).

Part 1, nasbench201 (15,625 cells, small enough to enumerate): the exact predicted front versus
NSGA-II restricted to a fifth of the space, compared by hypervolume.
  * latency: a GP-NAS predictor (``predictors.create_predictor("gpnas", metric="latency_ms")``)
    fitted on the measured latencies of 300 random cells on one real device of
    ../shared/data/device_latency/nasbench201.csv (HW-NAS-Bench / HELP);
  * score: there is no accuracy data for NAS-Bench-201 here, so the score is an analytic capacity
    proxy, log(1 + conv weights per C^2 on edges that lie on an input-to-output path), with std 0.
    It is not accuracy; it is a fixed, non-additive objective that trades off against latency.

Part 2, ufo-track2 (3.2e11 subnets): the front per (task, device) with NSGA-II under a 25 s limit.
  * score: GP-NAS fitted on the 400 labelled subnets of ../shared/data/ufo_track2/train.json for
    the task (ranks, higher is better);
  * latency: GP-NAS fitted on 200 random subnets whose "measured" latency is an analytic proxy,
    1 ms + 2 ms per GMAC + 0.05 ms per million parameters of the ViT-Base subnet (no real device
    timings of this space are in ../shared/data); it stands in for a profiled device.
  The search time excludes fitting (done once per predictor version by the service). Quality is
  checked against a run with 4x the time on the same predictors.

Run: ``python -m benchmarks.search`` (about 15 min on 2 busy cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks import _report
from predictors import Predictor, create_predictor
from search_service.search import budget_query, compute_front, hypervolume
from supernet import SearchSpace, get_space

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_DATA = ROOT.parent / "shared" / "data"

# NB201 edge order of Subnet.layers: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
_CONV_WEIGHTS = {2: 1.0, 3: 9.0}  # nor_conv_1x1, nor_conv_3x3


def nb201_capacity(layers: tuple[tuple[int, ...], ...]) -> float:
    """log(1 + conv weights / C^2 on edges that lie on a path from the cell input to its output)."""
    ops = [layer[0] for layer in layers]
    from_input, to_output = {0}, {3}
    for (src, dst), op in zip(_EDGES, ops, strict=True):
        if op != 0 and src in from_input:
            from_input.add(dst)
    for (src, dst), op in reversed(list(zip(_EDGES, ops, strict=True))):
        if op != 0 and dst in to_output:
            to_output.add(src)
    total = sum(
        _CONV_WEIGHTS.get(op, 0.0)
        for (src, dst), op in zip(_EDGES, ops, strict=True)
        if src in from_input and dst in to_output
    )
    return float(np.log1p(total))


class CapacityProxy:
    """The analytic NB201 score proxy as a predictor (std 0)."""

    def predict(self, subnets):
        mean = torch.tensor([nb201_capacity(s.layers) for s in subnets], dtype=torch.float64)
        return mean, torch.zeros_like(mean)


def analytic_latency_ms(space, subnets) -> torch.Tensor:
    """Roofline-style proxy latency of ufo-track2 subnets (see the module docstring)."""
    return torch.tensor(
        [1.0 + 2.0 * space.flops(s) / 1e9 + 0.05 * space.param_count(s) / 1e6 for s in subnets],
        dtype=torch.float64,
    )


def _front_array(result) -> np.ndarray:
    return np.array([[p.score, p.latency_ms] for p in result.points])


def _query_us(result, budgets: np.ndarray) -> float:
    """Median microseconds of one budget query over the candidates."""
    times = []
    for budget in budgets:
        start = time.perf_counter()
        with contextlib.suppress(ValueError):  # budgets below the fastest candidate are timed too
            budget_query(result.candidates, float(budget), 0.9)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def part_nb201(data: Path, devices: list[str], seeds: list[int], fractions: list[float]) -> list[str]:
    space = get_space("nasbench201")
    with open(data / "device_latency" / "nasbench201.csv") as f:
        rows_csv = list(csv.DictReader(f))
    score_model = CapacityProxy()
    lines = [
        f"### nasbench201 ({space.cardinality:,} cells): NSGA-II on part of the space vs exact enumeration",
        "",
        "Latency: GP-NAS fitted on 300 random cells measured on the device (HW-NAS-Bench / HELP table); "
        "score: analytic capacity proxy, not accuracy (see benchmarks/search.py). Hypervolume reference: "
        "(score 0, slowest predicted latency in the space). NSGA-II: population 100, "
        f"{len(seeds)} seeds per row.",
        "",
        "| device | exact front (points) | enumeration (s) | NSGA-II evaluations | HV / exact HV, median "
        "| worst | exact-front points found, median | NSGA-II time (s), median |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for device in devices:
        table = {space.parse(row["arch"]): float(row[device]) for row in rows_csv}
        train = space.sample(300, seed=0)
        latency_model = create_predictor("gpnas", space, metric="latency_ms").fit(
            train, torch.tensor([table[s] for s in train])
        )
        exact = compute_front(space, score_model, latency_model)
        E = _front_array(exact)
        exact_archs = {p.arch for p in exact.points}
        lat_all = latency_model.predict(list(space.enumerate()))[0].numpy()
        ref = (0.0, float(lat_all.max()))
        hv_exact = hypervolume(E, ref)
        for fraction in fractions:
            budget = int(fraction * space.cardinality)
            ratios, found, times = [], [], []
            for seed in seeds:
                r = compute_front(
                    space,
                    score_model,
                    latency_model,
                    seed=seed,
                    exact_limit=0,
                    max_evaluations=budget,
                    population_size=100,
                )
                ratios.append(hypervolume(_front_array(r), ref) / hv_exact)
                found.append(len({p.arch for p in r.points} & exact_archs))
                times.append(r.elapsed_s)
                print(
                    f"nb201 {device} {budget} seed {seed}: {ratios[-1]:.4f} {found[-1]}/{len(E)}", flush=True
                )
            lines.append(
                f"| {device} | {len(E)} | {exact.elapsed_s:.1f} | {budget:,} ({fraction:.0%}) "
                f"| {statistics.median(ratios):.4f} | {min(ratios):.4f} "
                f"| {statistics.median(found):g}/{len(E)} "
                f"| {statistics.median(times):.1f} |"
            )
    return [*lines, ""]


@dataclass
class Track2Models:
    """The ufo-track2 predictors of the search benchmarks (see the module docstring).

    Attributes:
        space: The ufo-track2 space.
        latency: GP-NAS on 200 subnets timed by the analytic proxy.
        scores: GP-NAS per task on the 400 labelled subnets of train.json.
        fit_latency_s: Seconds to fit ``latency``.
        fit_score_s: Seconds to fit each score model, by task.
        latency_mape: Mean absolute percentage error of ``latency`` on 2,000 held-out subnets.
    """

    space: SearchSpace
    latency: Predictor
    scores: dict[str, Predictor]
    fit_latency_s: float
    fit_score_s: dict[str, float]
    latency_mape: float


def track2_models(data: Path, tasks: list[str]) -> Track2Models:
    """Fit the latency model and one score model per task on ufo-track2 (deterministic)."""
    space = get_space("ufo-track2")
    records = json.loads((data / "ufo_track2" / "train.json").read_text())
    subs = space.parse_many([v["arch"] for v in records.values()])
    lat_train = space.sample(200, seed=0)
    start = time.perf_counter()
    latency_model = create_predictor("gpnas", space, metric="latency_ms").fit(
        lat_train, analytic_latency_ms(space, lat_train)
    )
    fit_latency = time.perf_counter() - start
    probe = space.sample(2000, seed=99)
    lat_true = analytic_latency_ms(space, probe).numpy()
    lat_pred = latency_model.predict(probe)[0].numpy()
    scores, fit_score = {}, {}
    for task in tasks:
        start = time.perf_counter()
        y = torch.tensor([v[f"{task}_rank"] for v in records.values()], dtype=torch.float64)
        scores[task] = create_predictor("gpnas", space, metric="score").fit(subs, y)
        fit_score[task] = time.perf_counter() - start
    mape = float(np.mean(np.abs(lat_pred - lat_true) / lat_true))
    return Track2Models(space, latency_model, scores, fit_latency, fit_score, mape)


def part_track2(
    data: Path,
    tasks: list[str],
    seeds: list[int],
    time_limit: float,
    reference_factor: float,
    max_evaluations: int,
) -> list[str]:
    models = track2_models(data, tasks)
    space, latency_model = models.space, models.latency
    fit_latency, lat_mape = models.fit_latency_s, models.latency_mape
    rows, ref_rows = [], []
    for task in tasks:
        score_model, fit_score = models.scores[task], models.fit_score_s[task]
        results = []
        for seed in seeds:
            r = compute_front(
                space,
                score_model,
                latency_model,
                seed=seed,
                time_limit_s=time_limit,
                max_evaluations=max_evaluations,
            )
            results.append(r)
            budgets = np.random.default_rng(seed).uniform(
                r.candidates.latency_ms.min(), r.candidates.latency_ms.max(), 200
            )
            rows.append(
                (
                    task,
                    seed,
                    r.elapsed_s,
                    r.evaluations,
                    r.generations,
                    len(r.points),
                    len(r.candidates),
                    _query_us(r, budgets),
                    fit_score,
                )
            )
            print(f"track2 {task} seed {seed}: {rows[-1]}", flush=True)
        # Quality: hypervolume relative to one longer run (same predictors, reference_factor x the time).
        long = compute_front(
            space,
            score_model,
            latency_model,
            seed=1000,
            time_limit_s=reference_factor * time_limit,
            max_evaluations=int(reference_factor * max_evaluations),
        )
        union = np.concatenate([_front_array(x) for x in [*results, long]])
        ref = (float(union[:, 0].min()), float(union[:, 1].max()))
        hv_long = hypervolume(_front_array(long), ref)
        for r in results:
            ref_rows.append((task, hypervolume(_front_array(r), ref) / hv_long))
        print(f"track2 {task} long run: {long.evaluations} evaluations in {long.elapsed_s:.1f} s", flush=True)
    times = [row[2] for row in rows]
    lines = [
        f"### ufo-track2 ({space.cardinality:,} subnets): NSGA-II front per (task, device), "
        f"time limit {time_limit:g} s",
        "",
        "Score: GP-NAS on the 400 labelled subnets of train.json (ranks, higher is better). Latency: "
        "GP-NAS fitted on 200 subnets timed by an analytic proxy (1 ms + 2 ms/GMAC + 0.05 ms/M params; "
        f"not a real device); its error on 2,000 held-out subnets: MAPE {lat_mape:.2%}. Fitting (not "
        f"included in the search time): latency {fit_latency:.0f} s, score per task in the table.",
        f"HV ratio: front hypervolume / that of one run with {reference_factor:g}x the time and evaluations "
        "on the same predictors.",
        "",
        "| task | seed | search time (s) | evaluations | generations | front size | candidates "
        "| budget query (µs, median) | HV / long run | score fit (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {t} | {s} | {el:.1f} | {ev:,} | {g} | {n} | {c} | {q:.0f} | {h:.4f} | {fs:.0f} |"
            for (t, s, el, ev, g, n, c, q, fs), (_, h) in zip(rows, ref_rows, strict=True)
        ),
        "",
        f"Median search time **{statistics.median(times):.1f} s** (max {max(times):.1f} s); median HV ratio "
        f"**{statistics.median(h for _, h in ref_rows):.4f}** (worst {min(h for _, h in ref_rows):.4f}).",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--devices", default="gold_6226,raspi4", help="nasbench201 latency columns")
    parser.add_argument("--seeds", type=int, default=5, help="seeds for nasbench201 (track2 uses 3)")
    parser.add_argument("--tasks", default="veri,market1501,sop", help="ufo-track2 tasks")
    parser.add_argument("--time-limit", type=float, default=25.0, help="ufo-track2 search time limit (s)")
    parser.add_argument("--max-evaluations", type=int, default=100_000, help="ufo-track2 evaluation cap")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--track2-seeds", type=int, default=3, help="seeds per ufo-track2 task")
    parser.add_argument(
        "--reference-factor", type=float, default=4.0, help="long run: this many times longer"
    )
    parser.add_argument("--parts", default="nb201,track2", help="which parts to run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 task, short limits")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    nb_seeds = [0] if args.quick else list(range(args.seeds))
    tr_seeds = [0] if args.quick else list(range(args.track2_seeds))
    tasks = args.tasks.split(",")[:1] if args.quick else args.tasks.split(",")
    time_limit = 5.0 if args.quick else args.time_limit
    reference_factor = 2.0 if args.quick else args.reference_factor
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "## Search benchmark",
        "",
        f"Command: `{_report.command('search')}`",
        f"Run {started} on {platform.machine()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs "
        f"usable, torch threads {args.threads}, load average at start {os.getloadavg()[0]:.1f}.",
        "",
    ]
    parts = args.parts.split(",")
    if "nb201" in parts:
        lines += part_nb201(args.data, args.devices.split(","), nb_seeds, [0.05, 0.2])
    if "track2" in parts:
        lines += part_track2(args.data, tasks, tr_seeds, time_limit, reference_factor, args.max_evaluations)
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
