"""Accuracy predictors on the 400 real UFO track-2 subnets (issue 15): one run, every model.

    nice -n 10 python -m benchmarks.accuracy_models --jobs 2 --seeds 2 \
        --out benchmarks/results/accuracy_models.md

Sections (all on ../shared/data/ufo_track2/train.json, Kendall tau per task, mean over 8 tasks):
  cv          5-fold CV (KFold shuffle, random_state = seed) for each of --seeds seeds: every model,
              per-task tau, mean ± spread, 90% interval coverage (mean ± 1.645 std), fit time.
              Every model is fitted with ``fit_multi`` on the training rows of all 8 tasks (the
              test rows have no value of any task), so multi-task models see the other tasks on
              the same subnets and single-task models fit the target column alone.
  labels      The same folds (seed 0), training set cut to the first n of a fixed random order
              of each fold's 320 (n = 50, 100, 200; all 8 tasks measured on those n):
              multi-task against single-task as labels per task shrink.
  efficiency  README's sample-efficiency protocol: pool = a fold's 320 subnets with the other 7
              tasks measured on all of them, the target task on N = 50 / 100 of them, test = the
              fold's 80; random picks (rng(fold), as README) or picks designed before any target
              value (integrated variance under the multi-task prior of the other 7 tasks).
  curve       Learning curve of the chosen default: training on 25 / 50 / 75 / 100% of each
              fold's 320 (seed 0), fitted tau(n) = a - b / n.
  holdout     One fixed 20% split (80 subnets, rng 2022), never used for any choice above: the
              default and the best baselines trained on the other 320, scored once.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau
from sklearn.model_selection import KFold

import predictors.experimental  # noqa: F401  (the models compared)
from benchmarks import _report
from benchmarks._ufo_data import load_track2, one_torch_thread
from predictors import MultiTaskGPNASPredictor, create_predictor, create_strategy
from supernet import TRACK2_TASKS, get_space

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data"
Z90 = 1.6448536269514722
# (name, family) in table order.
MODELS = (
    ("gpnas-closed-form", "baseline (PaddleSlim GP-NAS)"),
    ("ridge", "baseline"),
    ("ridge-summary", "baseline"),
    ("gbt", "boosted trees (HistGradientBoosting, ordinal codes)"),
    ("gpnas", "baseline GP (current default)"),
    ("gpnas-rbf", "GP kernel"),
    ("gpnas-ordinal", "ordinal encoding (ARD RBF)"),
    ("ridge-joint", "encoding: per-layer joint choice"),
    ("ridge-depth", "encoding: depth x layer"),
    ("ridge-from-end", "encoding: layers aligned at the output"),
    ("ridge-rank", "pairwise ranking loss (soft Kendall)"),
    ("gpnas-layer", "kernel: additive per layer, learned layer weights"),
    ("gpnas-layer-additive", "kernel: learned layer weights + Hamming"),
    ("gpnas-layer-pairwise", "kernel: learned layer weights + pairwise-layer"),
    ("stack", "stacked ensemble, GP final estimator"),
    ("stack-multitask", "stacked ensemble with a multi-task base, GP final estimator"),
    ("gpnas-transfer", "multi-task: transfer GP (existing)"),
    ("gpnas-multitask-linear", "multi-task: shared layer weights, linear heads"),
    ("gpnas-multitask", "multi-task: shared layer weights + Hamming heads"),
)
LABEL_SIZES = (50, 100, 200)
LABEL_MODELS = ("gpnas", "ridge-summary", "gpnas-layer-additive", "gpnas-multitask")
EFFICIENCY_SIZES = (50, 100)
CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def _folds(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(KFold(5, shuffle=True, random_state=seed).split(np.arange(n)))


def _score(mean: torch.Tensor, std: torch.Tensor, truth: np.ndarray) -> tuple[float, float]:
    m, s = mean.numpy(), std.numpy()
    return float(kendalltau(m, truth)[0]), float(np.mean(np.abs(m - truth) <= Z90 * s))


def _fit_tasks(name: str, subs: list, Y: np.ndarray, train: np.ndarray, test: np.ndarray) -> list[tuple]:
    """Fit ``name`` on ``train`` rows for each task; (task, tau, coverage, cpu seconds)."""
    space = get_space("ufo-track2")
    out = []
    for task in range(Y.shape[1]):
        start = time.process_time()
        model = create_predictor(name, space).fit_multi(
            [subs[i] for i in train], torch.as_tensor(Y[train]), task
        )
        mean, std = model.predict([subs[i] for i in test])
        out.append((task, *_score(mean, std, Y[test, task]), time.process_time() - start))
    return out


# ---------------------------------------------------------------------- cv
def _cv_job(args: tuple) -> list[tuple]:
    data, name, seed, fold = args
    subs, Y = load_track2(data)
    train, test = _folds(len(subs), seed)[fold]
    return [(name, seed, fold, *r) for r in _fit_tasks(name, subs, Y, train, test)]


def section_cv(
    data: Path, pool: ProcessPoolExecutor, seeds: int, models: list[str], folds: int = 5
) -> tuple[str, dict]:
    jobs = [(data, m, s, f) for m in models for s in range(seeds) for f in range(folds)]
    # Longest first, so the two workers finish together.
    jobs.sort(key=lambda j: -_COST.get(j[1], 1.0))
    results = [r for chunk in pool.map(_cv_job, jobs) for r in chunk]
    family = dict(MODELS)
    lines = [
        f"### 5-fold CV on the 400 subnets ({seeds} KFold seeds, 320 train / 80 test per fold)",
        "",
        "`mean` = mean over the 8 tasks of the per-task tau averaged over all folds and seeds; `±` = "
        f"standard deviation of the 8-task mean over the {5 * seeds} (seed, fold) splits; `seeds` = "
        "the 8-task mean of each seed's 5 folds; `cov90` = share of held-out values within mean ± "
        "1.645 std (ideal 90%, target 85-95%); `fit s` = CPU seconds per fit + predict (one task, "
        "one thread).",
        "",
        "| model | idea | " + " | ".join(TRACK2_TASKS) + " | mean | ± | seeds | cov90 | fit s |",
        "|---|---|" + "---|" * (len(TRACK2_TASKS) + 5),
    ]
    summary = {}
    for name in models:
        rows = [r for r in results if r[0] == name]
        tau = np.array([[[r[4] for r in rows if r[1] == s and r[2] == f and r[3] == t][0]
                         for t in range(8)] for s in range(seeds) for f in range(folds)])  # fmt: skip
        per_task = tau.mean(0)
        split_means = tau.mean(1)
        seed_means = [split_means[s * folds : (s + 1) * folds].mean() for s in range(seeds)]
        cov = np.mean([r[5] for r in rows])
        secs = np.mean([r[6] for r in rows])
        summary[name] = {"mean": float(per_task.mean()), "per_task": per_task.tolist(), "cov90": float(cov)}
        lines.append(
            f"| {name} | {family.get(name, '')} | "
            + " | ".join(f"{v:.3f}" for v in per_task)
            + f" | **{per_task.mean():.4f}** | {split_means.std():.3f} | "
            + " / ".join(f"{v:.4f}" for v in seed_means)
            + f" | {cov:.0%} | {secs:.2f} |"
        )
    return "\n".join(lines), summary


# Rough CPU seconds per task fit at 320 points (orders the jobs).
_COST = {
    "stack-multitask": 6.0,
    "stack": 5.0,
    "gpnas-layer-pairwise": 4.0,
    "gpnas-transfer": 3.0,
    "gpnas-layer-additive": 1.3,
}


# ---------------------------------------------------------------------- labels
def _labels_job(args: tuple) -> list[tuple]:
    data, name, fold, size = args
    subs, Y = load_track2(data)
    train, test = _folds(len(subs), 0)[fold]
    rows = train[np.random.default_rng(fold).permutation(len(train))[:size]]
    return [(name, fold, size, *r) for r in _fit_tasks(name, subs, Y, rows, test)]


def section_labels(data: Path, pool: ProcessPoolExecutor, models: tuple[str, ...]) -> str:
    jobs = [(data, m, f, n) for m in models for f in range(5) for n in LABEL_SIZES]
    results = [r for chunk in pool.map(_labels_job, jobs) for r in chunk]
    lines = [
        "### Labels per task: multi-task against single-task "
        "(seed-0 folds, all 8 tasks on the same n subnets)",
        "",
        "| model | n | " + " | ".join(TRACK2_TASKS) + " | mean | cov90 |",
        "|---|---|" + "---|" * (len(TRACK2_TASKS) + 2),
    ]
    means = {}
    for n in LABEL_SIZES:
        for name in models:
            rows = [r for r in results if r[0] == name and r[2] == n]
            per_task = [np.mean([r[4] for r in rows if r[3] == t]) for t in range(8)]
            means[(name, n)] = float(np.mean(per_task))
            lines.append(
                f"| {name} | {n} | "
                + " | ".join(f"{v:.3f}" for v in per_task)
                + f" | **{np.mean(per_task):.4f}** | {np.mean([r[5] for r in rows]):.0%} |"
            )
    best_single = [m for m in models if m != "gpnas-multitask"]
    lines += ["", "| n | gpnas-multitask | best single-task (which) | gain |", "|---|---|---|---|"]
    for n in LABEL_SIZES:
        single = max(best_single, key=lambda m: means[(m, n)])
        lines.append(
            f"| {n} | {means[('gpnas-multitask', n)]:.4f} | {means[(single, n)]:.4f} ({single}) | "
            f"{means[('gpnas-multitask', n)] - means[(single, n)]:+.4f} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- efficiency
def _efficiency_job(args: tuple) -> list[tuple]:
    data, scheme, fold = args
    space = get_space("ufo-track2")
    subs, Y = load_track2(data)
    train, test = _folds(len(subs), 0)[fold]
    pool = [subs[i] for i in train]
    order = np.random.default_rng(fold).permutation(len(train))  # README's random picks
    index = {s: i for i, s in enumerate(pool)}
    out = []
    for task in range(8):
        others = [j for j in range(8) if j != task]
        if scheme == "design":
            prior = MultiTaskGPNASPredictor(space).fit_sources(pool, torch.as_tensor(Y[train][:, others]))
            picks = create_strategy("integrated-variance").select(
                space, prior, [], max(EFFICIENCY_SIZES), candidates=pool
            )
            chosen = [index[s] for s in picks]
        else:
            chosen = order.tolist()
        for size in EFFICIENCY_SIZES:
            Ym = Y[train].copy()
            mask = np.ones(len(train), bool)
            mask[chosen[:size]] = False
            Ym[mask, task] = np.nan
            start = time.process_time()
            model = MultiTaskGPNASPredictor(space).fit_multi(pool, torch.as_tensor(Ym), task)
            mean, std = model.predict([subs[i] for i in test])
            out.append(
                (scheme, fold, size, task, *_score(mean, std, Y[test, task]), time.process_time() - start)
            )
    return out


def section_efficiency(data: Path, pool: ProcessPoolExecutor, folds: int = 5) -> str:
    schemes = ("random", "design")
    jobs = [(data, s, f) for s in schemes for f in range(folds)]
    results = [r for chunk in pool.map(_efficiency_job, jobs) for r in chunk]
    labels = {
        "random": "random picks (README's), `gpnas-multitask`; other 7 tasks on all 320",
        "design": "integrated-variance picks under the other 7 tasks' multi-task prior "
        "(`fit_sources`), `gpnas-multitask`",
    }
    lines = [
        "### Sample efficiency (README protocol: pool = a fold's 320, target measured on N of them, "
        "the other 7 tasks on all 320; seed-0 folds, all 5)",
        "",
        "| scheme | " + " | ".join(f"N = {n}" for n in EFFICIENCY_SIZES) + " | cov90 | per task at N = 50 |",
        "|---|" + "---|" * (len(EFFICIENCY_SIZES) + 2),
    ]
    for scheme in schemes:
        cells = []
        for n in EFFICIENCY_SIZES:
            rows = [r for r in results if r[0] == scheme and r[2] == n]
            cells.append(np.mean([np.mean([r[4] for r in rows if r[3] == t]) for t in range(8)]))
        rows = [r for r in results if r[0] == scheme]
        per50 = [np.mean([r[4] for r in rows if r[2] == 50 and r[3] == t]) for t in range(8)]
        lines.append(
            f"| {labels[scheme]} | "
            + " | ".join(f"**{v:.3f}**" for v in cells)
            + f" | {np.mean([r[5] for r in rows]):.0%} | "
            + " ".join(f"{v:.2f}" for v in per50)
            + " |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------- curve
def _curve_job(args: tuple) -> list[tuple]:
    data, name, fold, fraction = args
    subs, Y = load_track2(data)
    train, test = _folds(len(subs), 0)[fold]
    rows = train[
        np.random.default_rng(100 + fold).permutation(len(train))[: int(round(fraction * len(train)))]
    ]
    return [(fold, len(rows), *r) for r in _fit_tasks(name, subs, Y, rows, test)]


def section_curve(data: Path, pool: ProcessPoolExecutor, name: str) -> str:
    jobs = [(data, name, f, q) for f in range(5) for q in CURVE_FRACTIONS]
    results = [r for chunk in pool.map(_curve_job, jobs) for r in chunk]
    sizes = sorted({r[1] for r in results})
    taus = [np.mean([r[3] for r in results if r[1] == n]) for n in sizes]
    # tau(n) = a - b / n by least squares.
    A = np.stack([np.ones(len(sizes)), -1.0 / np.array(sizes)], 1)
    a, b = np.linalg.lstsq(A, np.array(taus), rcond=None)[0]
    need = b / (a - 0.80) if a > 0.80 else float("inf")
    lines = [
        f"### Learning curve of `{name}` (seed-0 folds, training on part of each fold's 320)",
        "",
        "| n train | " + " | ".join(str(n) for n in sizes) + " |",
        "|---" * (len(sizes) + 1) + "|",
        "| mean tau | " + " | ".join(f"{t:.4f}" for t in taus) + " |",
        "",
        f"Fit tau(n) = a - b/n: a = {a:.4f} (the level with unlimited subnets), b = {b:.1f}; "
        + (f"tau = 0.80 would need n = {need:.0f} training subnets." if np.isfinite(need)
           else "tau = 0.80 is above the fitted asymptote: more subnets alone would not reach it."),
    ]  # fmt: skip
    return "\n".join(lines)


# ---------------------------------------------------------------------- holdout
def _holdout_job(args: tuple) -> list[tuple]:
    data, name = args
    subs, Y = load_track2(data)
    perm = np.random.default_rng(2022).permutation(len(subs))
    test, train = np.sort(perm[:80]), np.sort(perm[80:])
    return [(name, *r) for r in _fit_tasks(name, subs, Y, train, test)]


def section_holdout(data: Path, pool: ProcessPoolExecutor, models: list[str]) -> str:
    results = [r for chunk in pool.map(_holdout_job, [(data, m) for m in models]) for r in chunk]
    lines = [
        "### Untouched 20% check (80 subnets by rng 2022, scored once, after every choice above; "
        "train = the other 320)",
        "",
        "| model | " + " | ".join(TRACK2_TASKS) + " | mean | cov90 |",
        "|---|" + "---|" * (len(TRACK2_TASKS) + 2),
    ]
    for name in models:
        rows = [r for r in results if r[0] == name]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{r[2]:.3f}" for r in rows)
            + f" | **{np.mean([r[2] for r in rows]):.4f}** | {np.mean([r[3] for r in rows]):.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--section", default="cv,labels,efficiency,curve,holdout")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--folds", type=int, default=5, help="folds of the 5 used by cv (development: fewer)")
    parser.add_argument("--models", default=",".join(m for m, _ in MODELS))
    parser.add_argument("--default", default="gpnas-multitask", help="model for the curve and holdout")
    parser.add_argument("--holdout", default="gpnas-layer", help="further models for the holdout check")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data = args.data.resolve()
    models = args.models.split(",")
    command = _report.command("accuracy_models", prefix="nice -n 10 ")
    parts = [f"# Accuracy models on UFO track 2 (issue 15)\n\n`{command}`\n"]
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=one_torch_thread) as pool:
        for name in args.section.split(","):
            start = time.perf_counter()
            if name == "cv":
                text, _ = section_cv(data, pool, args.seeds, models, args.folds)
            elif name == "labels":
                text = section_labels(data, pool, LABEL_MODELS)
            elif name == "efficiency":
                text = section_efficiency(data, pool, args.folds)
            elif name == "curve":
                text = section_curve(data, pool, args.default)
            elif name == "holdout":
                held = list(dict.fromkeys([args.default, *args.holdout.split(","), "gpnas", "ridge"]))
                text = section_holdout(data, pool, held)
            else:
                raise SystemExit(f"unknown section {name!r}")
            text += f"\n\n(section took {time.perf_counter() - start:.0f} s wall with --jobs {args.jobs})\n"
            print(text, flush=True)
            parts.append(text)
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text("\n".join(parts))
    children = os.times()
    total_cpu = time.process_time() - cpu_start + children.children_user + children.children_system
    tail = (
        f"Total: {time.perf_counter() - wall_start:.0f} s wall, {total_cpu:.0f} s CPU "
        f"(1-min load average {os.getloadavg()[0]:.1f} at the end, 2 shared cores)."
    )
    print(tail)
    parts.append(tail + "\n")
    if args.out:
        args.out.write_text("\n".join(parts))


if __name__ == "__main__":
    main()
