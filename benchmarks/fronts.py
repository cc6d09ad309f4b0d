"""Benchmark of fast Pareto fronts on ufo-track2 (README "Search: Pareto fronts"; results/fronts.md).

Per (task, device) with the predictors of benchmarks/search.py (GP-NAS score models on the 400
labelled subnets of train.json; a GP-NAS latency model of the analytic proxy device), every
variant searches the same posterior, three seeds each, interleaved so that the shared machine's
load hits them alike:

* ``before, 25 s``: ``compute_front`` at the baseline commit (a ``git worktree`` of
  ``--baseline-ref``, run in a subprocess on the same serialised predictors) with the service's
  former 25 s limit and torch threads 2 (torch's default on 2 cores). Its hypervolume (median
  over seeds) is the reference of every HV ratio.
* ``before, 5 s, 1 thread``: the same code with one torch thread (separates the two fixes).
* ``after, 5 s``: ``compute_front`` now (choice matrices encoded directly, batched posterior,
  one torch thread); ``after, 5 s, 2 threads`` the same with ``torch_threads=2``.
* ``pymoo ...``: pymoo's NSGA-II (benchmarks/_pymoo_nsga2.py) through ``compute_front(...,
  evolver=...)``, i.e. the same objective, evaluator and front extraction; ``sbx`` is pymoo's
  recipe for integer variables, ``ux`` uniform crossover with wide mutation.

HV: area of the (score, latency) front, with the reference point at the worst score and the
slowest latency of the union of every front of the task (as benchmarks/search.py). For the runs
in this process the archive is also replayed in evaluation order, giving the HV ratio reached
after 1 s and 2 s, the time to reach 99.5% of the 25 s front, and the ratio after the first
20,000 evaluations (the service's evaluation cap).

Run: ``python -m benchmarks.fronts`` (about 12 min on 2 cores); needs ``pip install pymoo``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks import _report
from benchmarks._pymoo_nsga2 import evolve_pymoo
from benchmarks.search import DEFAULT_DATA, Track2Models, track2_models
from search_service.search import (
    Archive,
    Evolver,
    Objective,
    compute_front,
    evolve,
    hypervolume,
    pareto_mask,
)
from supernet import SearchSpace

ROOT = Path(__file__).resolve().parents[1]

# The commit before this benchmark's changes (vectorised encodings, one torch thread).
BASELINE_REF = "4662ab6"
TARGET = 0.995

# Run in the baseline worktree: load the two predictors, search, print the front as JSON.
_BASELINE_SCRIPT = """
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[5]))
from predictors import Predictor
from search_service.search import compute_front
from supernet import get_space
space = get_space("ufo-track2")
score, latency = (Predictor.from_bytes(Path(p).read_bytes(), space) for p in sys.argv[1:3])
r = compute_front(space, score, latency, seed=int(sys.argv[3]), time_limit_s=float(sys.argv[4]),
                  max_evaluations=int(sys.argv[6]))
print(json.dumps({"front": [[p.score, p.latency_ms] for p in r.points], "evaluations": r.evaluations,
                  "elapsed_s": r.elapsed_s}))
"""


@dataclass
class Run:
    """One search: its front and, for runs in this process, the archive's timeline.

    Attributes:
        front: ``k x 2`` (score, latency) points.
        evaluations: Distinct subnets predicted.
        elapsed_s: Search seconds.
        timeline: Per objective call: seconds since the search started, cumulative evaluations,
            and the call's ``n x 2`` (score, mean latency); empty for baseline runs.
    """

    front: np.ndarray
    evaluations: int
    elapsed_s: float
    timeline: list[tuple[float, int, np.ndarray]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.evaluations / self.elapsed_s


@dataclass(frozen=True)
class Variant:
    """A row of the table: a name and how to run it for ``(task, seed)``."""

    name: str
    run: Callable[[str, int], Run]


def timed(evolver: Evolver, timeline: list[tuple[float, int, np.ndarray]]) -> Callable[..., Archive]:
    """``evolver`` with every objective call logged to ``timeline`` (see :class:`Run`).

    The objective's columns are (score, -latency quantile at the lowest confidence, ...); at the
    default lowest confidence 0.5 that quantile is the mean latency.
    """

    def run(space: SearchSpace, objective: Objective, **options: object) -> Archive:
        start, count = time.perf_counter(), 0

        def logged(codes: np.ndarray, depths: np.ndarray) -> np.ndarray:
            nonlocal count
            Y = objective(codes, depths)
            count += len(codes)
            timeline.append((time.perf_counter() - start, count, np.column_stack([Y[:, 0], -Y[:, 1]])))
            return Y

        return evolver(space, logged, **options)  # type: ignore[arg-type]

    return run


def _front(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``k x 2`` (score max, latency min)."""
    return points[pareto_mask(np.column_stack([points[:, 0], -points[:, 1]]))]


def anytime(run: Run, ref: tuple[float, float], hv_ref: float) -> list[tuple[float, int, float]]:
    """``(seconds, evaluations, HV / hv_ref)`` after every objective call of ``run``."""
    front, out = np.empty((0, 2)), []
    for seconds, count, points in run.timeline:
        front = _front(np.concatenate([front, points]))
        out.append((seconds, count, hypervolume(front, ref) / hv_ref))
    return out


def ratio_at(
    curve: list[tuple[float, int, float]], seconds: float | None = None, evals: int | None = None
) -> float:
    """HV ratio of the last point of ``curve`` within ``seconds`` or ``evals`` (0 if none)."""
    within = [r for s, n, r in curve if (seconds is None or s <= seconds) and (evals is None or n <= evals)]
    return within[-1] if within else 0.0


def time_to(curve: list[tuple[float, int, float]], target: float) -> float:
    """Seconds until the HV ratio first reaches ``target`` (inf if never)."""
    return next((s for s, _, r in curve if r >= target), float("inf"))


@contextmanager
def baseline_worktree(ref: str, path: Path | None) -> Iterator[Path]:
    """A checkout of ``ref``: ``path`` if given, else a temporary ``git worktree`` removed afterwards."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="gpnas-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)


def baseline_run(
    tree: Path, blobs: dict[str, Path], task: str, seed: int, seconds: float, threads: int
) -> Run:
    """``compute_front`` of the baseline checkout ``tree`` in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-c", _BASELINE_SCRIPT, str(blobs[task]), str(blobs["latency"])]
    command += [str(seed), str(seconds), str(threads), "200000"]
    out = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Run(np.array(data["front"]), int(data["evaluations"]), float(data["elapsed_s"]))


def current_run(
    models: Track2Models, task: str, seed: int, seconds: float, evolver: Evolver, threads: int
) -> Run:
    """``compute_front`` of this checkout, with its objective calls logged."""
    timeline: list[tuple[float, int, np.ndarray]] = []
    r = compute_front(
        models.space,
        models.scores[task],
        models.latency,
        seed=seed,
        time_limit_s=seconds,
        max_evaluations=200_000,
        torch_threads=threads,
        evolver=timed(evolver, timeline),
    )
    front = np.array([[p.score, p.latency_ms] for p in r.points])
    return Run(front, r.evaluations, r.elapsed_s, timeline)


def variants(
    tree: Path, blobs: dict[str, Path], models: Track2Models, after_s: float, before_s: float
) -> list[Variant]:
    """The rows of the table, in the order they run for each seed."""
    return [
        Variant(f"before, {before_s:g} s", lambda t, s: baseline_run(tree, blobs, t, s, before_s, 2)),
        Variant(f"before, {after_s:g} s, 1 thread", lambda t, s: baseline_run(tree, blobs, t, s, after_s, 1)),
        Variant(f"after, {after_s:g} s", lambda t, s: current_run(models, t, s, after_s, evolve, 1)),
        Variant(
            f"after, {after_s:g} s, 2 threads", lambda t, s: current_run(models, t, s, after_s, evolve, 2)
        ),
        Variant(
            f"pymoo sbx, {after_s:g} s",
            lambda t, s: current_run(
                models, t, s, after_s, functools.partial(evolve_pymoo, operators="sbx"), 1
            ),
        ),
        Variant(
            f"pymoo ux, {after_s:g} s",
            lambda t, s: current_run(
                models, t, s, after_s, functools.partial(evolve_pymoo, operators="ux"), 1
            ),
        ),
    ]


def _fmt(x: float, spec: str = ".4f") -> str:
    return "–" if x != x else ("never" if x == float("inf") else format(x, spec))


def _curve_medians(curves: list[list[tuple[float, int, float]]]) -> list[str]:
    """Median over seeds of: ratio at 1 s, at 2 s, after 20k evaluations; time to the target."""
    if not curves:
        return ["–"] * 4
    stats: list[Callable[[list[tuple[float, int, float]]], float]] = [
        lambda c: ratio_at(c, seconds=1.0),
        lambda c: ratio_at(c, seconds=2.0),
        lambda c: ratio_at(c, evals=20_000),
        lambda c: time_to(c, TARGET),
    ]
    values = [statistics.median(stat(c) for c in curves) for stat in stats]
    return [f"{v:.4f}" for v in values[:3]] + ["never" if values[3] == float("inf") else f"{values[3]:.2f}"]


def table(task: str, rows: dict[str, list[Run]], reference: str) -> tuple[list[str], dict[str, list[float]]]:
    """Markdown rows for one task, and the per-seed HV ratios by variant."""
    union = np.concatenate([run.front for runs in rows.values() for run in runs])
    ref = (float(union[:, 0].min()), float(union[:, 1].max()))
    hv_ref = statistics.median(hypervolume(run.front, ref) for run in rows[reference])
    lines, ratios = [], {}
    for name, runs in rows.items():
        ratios[name] = [hypervolume(run.front, ref) / hv_ref for run in runs]
        curves = [anytime(run, ref, hv_ref) for run in runs if run.timeline]
        cells = [
            task,
            name,
            f"{statistics.median(ratios[name]):.4f}",
            f"{min(ratios[name]):.4f}",
            f"{statistics.median(r.evaluations for r in runs):,.0f}",
            f"{statistics.median(r.rate for r in runs):,.0f}",
            *_curve_medians(curves),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--tasks", default="veri,market1501,sop", help="ufo-track2 tasks")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per (task, variant)")
    parser.add_argument("--after", type=float, default=5.0, help="time limit of the new search (s)")
    parser.add_argument("--before", type=float, default=25.0, help="time limit of the baseline search (s)")
    parser.add_argument("--baseline-ref", default=BASELINE_REF, help="commit of the 'before' rows")
    parser.add_argument("--baseline-tree", type=Path, help="an existing checkout of --baseline-ref to use")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fronts.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    tasks = args.tasks.split(",")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = os.getloadavg()[0]
    models = track2_models(args.data, tasks)
    lines = [
        "## Fast fronts benchmark",
        "",
        f"Command: `{_report.command('fronts')}`",
        f"Run {started} on {platform.machine()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs "
        f"usable, load average at start {load_start:.1f}; baseline `{args.baseline_ref}`; "
        f"{args.seeds} seeds per row; latency model MAPE {models.latency_mape:.3%} (analytic proxy device).",
        "",
        f"HV ratio: front hypervolume / median hypervolume of the 'before, {args.before:g} s' fronts "
        "(reference point: worst score and slowest latency of the union of the task's fronts). "
        f"Columns 'at 1 s', 'at 2 s', 'at 20k evals' and 'time to {TARGET:.1%}' replay the archive "
        "of runs in this process in evaluation order (medians over seeds).",
        "",
        "| task | search | HV ratio, median | worst | evaluations | evaluations/s | at 1 s | at 2 s "
        f"| at 20k evals | time to {TARGET:.1%} (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    all_ratios: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        baseline_worktree(args.baseline_ref, args.baseline_tree) as tree,
    ):
        blobs = {"latency": Path(tmp) / "latency.pt"}
        blobs["latency"].write_bytes(models.latency.to_bytes())
        for task in tasks:
            blobs[task] = Path(tmp) / f"{task}.pt"
            blobs[task].write_bytes(models.scores[task].to_bytes())
        rows_of = variants(tree, blobs, models, args.after, args.before)
        for task in tasks:
            rows: dict[str, list[Run]] = {v.name: [] for v in rows_of}
            for seed in range(args.seeds):
                for variant in rows_of:
                    run = variant.run(task, seed)
                    rows[variant.name].append(run)
                    what = f"{task} seed {seed} {variant.name}"
                    print(f"{what}: {run.evaluations} evals in {run.elapsed_s:.1f} s", flush=True)
            task_lines, ratios = table(task, rows, rows_of[0].name)
            lines += task_lines
            for name, runs in rows.items():
                all_ratios.setdefault(name, []).extend(ratios[name])
                rates.setdefault(name, []).extend(r.rate for r in runs)
            print("\n".join(task_lines), flush=True)
    before, after = rows_of[0].name, rows_of[2].name
    lines += [
        "",
        "Over all tasks and seeds (medians): "
        + "; ".join(
            f"{name}: HV ratio {statistics.median(ratio):.4f} (worst {min(ratio):.4f}), "
            f"{statistics.median(rates[name]):,.0f} evaluations/s"
            for name, ratio in all_ratios.items()
        )
        + ".",
        f"Speed-up of evaluations/s, '{after}' over '{before}': "
        f"{statistics.median(rates[after]) / statistics.median(rates[before]):.1f}x.",
        f"Load average at the end: {os.getloadavg()[0]:.1f}.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
