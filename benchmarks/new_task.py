"""Few-shot new task on ufo-track2: does a task added later borrow from the tasks measured before?

    python -m benchmarks.new_task [--seeds 5] [--jobs 2] [--data ../shared/data]
        [--out benchmarks/results/new_task.md]

Each of the 8 track-2 tasks is held out in turn, as if it had just been added to the space
(``POST /v1/spaces/{space}/tasks``): it gets k = 20 or 50 scores on random subnets, and the
other 7 tasks keep theirs. Two models predict the held-out task's scores of the other subnets,
Kendall tau against the real ranks:

* ``gpnas-transfer`` (what the service fits with ``GPNAS_PREDICTOR_SCORE=gpnas-transfer``): the other
  7 tasks are its related outputs (their GPs fitted once per held-out task, then the target stage
  on the k scores: ``fit_sources`` + ``refit_target``, which is ``fit_multi`` split in two);
* ``gpnas`` (the single-task default): the k scores alone.

Two protocols:

* ``others on all``: the other tasks are measured on all 400 subnets; tau on the 400 - k subnets
  without a held-out score (a new task on subnets the old tasks measured);
* ``others on a pool``: per seed 300 subnets are the pool (the other tasks measured there, the k
  picks drawn from it) and tau is taken on the other 100, which no task measured (what a front
  search predicts: subnets nobody measured).

Seeds draw the picks (and the pool); the table gives the mean over tasks and seeds, the spread
(standard deviation over the task x seed runs) and per task the mean over seeds.
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

from benchmarks import _report
from benchmarks._ufo_data import load_track2, one_torch_thread
from predictors import TransferPredictor, create_predictor
from supernet import TRACK2_TASKS, get_space

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data"
KS = (20, 50)
PROTOCOLS = ("others on all", "others on a pool")
POOL = 300


def _tau(predictor, subs: list, rows: np.ndarray, truth: np.ndarray) -> float:
    mean, _ = predictor.predict([subs[i] for i in rows])
    return float(kendalltau(mean.numpy(), truth[rows])[0])


def _job(args: tuple) -> list[tuple]:
    """One held-out task under one protocol and seed (the pool protocol) or all seeds (the other)."""
    data, protocol, task, seeds = args
    space = get_space("ufo-track2")
    subs, Y = load_track2(data)
    n = len(subs)
    others = [j for j in range(Y.shape[1]) if j != task]
    out = []
    sources: TransferPredictor | None = None
    for seed in seeds:
        rng = np.random.default_rng(1000 * task + seed)
        if protocol == "others on all":
            pool, test = np.arange(n), None
        else:
            perm = rng.permutation(n)
            pool, test = np.sort(perm[:POOL]), np.sort(perm[POOL:])
        if sources is None or protocol != "others on all":  # the sources depend on the pool only
            start = time.perf_counter()
            sources = create_predictor("gpnas-transfer", space)
            assert isinstance(sources, TransferPredictor)
            sources.fit_sources([subs[i] for i in pool], torch.as_tensor(Y[np.ix_(pool, others)]))
            source_s = time.perf_counter() - start
        picks_order = rng.permutation(pool)
        for k in KS:
            picks = picks_order[:k]
            rest = test if test is not None else np.setdiff1d(np.arange(n), picks)
            start = time.perf_counter()
            transfer = sources.refit_target([subs[i] for i in picks], Y[picks, task])
            tau_transfer = _tau(transfer, subs, rest, Y[:, task])
            transfer_s = time.perf_counter() - start
            start = time.perf_counter()
            single = create_predictor("gpnas", space).fit([subs[i] for i in picks], Y[picks, task])
            tau_single = _tau(single, subs, rest, Y[:, task])
            single_s = time.perf_counter() - start
            out.append((protocol, task, seed, k, tau_transfer, tau_single, source_s, transfer_s, single_s))
    return out


def run(data: Path, seeds: int, jobs: int) -> str:
    work = []
    for task in range(len(TRACK2_TASKS)):
        work.append((data, "others on all", task, list(range(seeds))))
        work += [(data, "others on a pool", task, [seed]) for seed in range(seeds)]
    with ProcessPoolExecutor(jobs, initializer=one_torch_thread) as pool:
        results = [r for chunk in pool.map(_job, work) for r in chunk]
    lines = [
        "### Few-shot new task on ufo-track2: Kendall tau of the held-out task",
        "",
        f"Each of the 8 tasks held out in turn with k of its scores on random subnets; {seeds} seeds; "
        "`transfer` = `gpnas-transfer` with the other 7 tasks as related outputs, `single` = `gpnas` "
        "on the k scores alone. `others on all`: the other tasks measured on all 400 subnets, tau on "
        f"the 400 - k without a held-out score; `others on a pool`: the other tasks measured on {POOL} "
        f"pool subnets (the k picks among them), tau on the other {400 - POOL}, which no task measured. "
        "Mean over tasks x seeds ± standard deviation over those runs; `wins` = runs where transfer "
        "beat single.",
        "",
        "| protocol | k | transfer | single | transfer - single | wins |",
        "|---|---|---|---|---|---|",
    ]
    for protocol in PROTOCOLS:
        for k in KS:
            rows = np.array([r[4:6] for r in results if r[0] == protocol and r[3] == k])
            diff = rows[:, 0] - rows[:, 1]
            lines.append(
                f"| {protocol} | {k} | **{rows[:, 0].mean():.3f}** ± {rows[:, 0].std():.3f} | "
                f"{rows[:, 1].mean():.3f} ± {rows[:, 1].std():.3f} | {diff.mean():+.3f} ± {diff.std():.3f} | "
                f"{int((diff > 0).sum())}/{len(diff)} |"
            )
    lines += [
        "",
        "Per task (mean over seeds), transfer / single:",
        "",
        "| protocol | k | " + " | ".join(TRACK2_TASKS) + " |",
        "|---|---|" + "---|" * len(TRACK2_TASKS),
    ]
    for protocol in PROTOCOLS:
        for k in KS:
            cells = []
            for task in range(len(TRACK2_TASKS)):
                rows = np.array([r[4:6] for r in results if r[0] == protocol and r[3] == k and r[1] == task])
                cells.append(f"{rows[:, 0].mean():.2f} / {rows[:, 1].mean():.2f}")
            lines.append(f"| {protocol} | {k} | " + " | ".join(cells) + " |")
    source_s = np.mean([r[6] for r in results])
    transfer_s = np.mean([r[7] for r in results])
    single_s = np.mean([r[8] for r in results])
    lines += [
        "",
        f"Seconds per fit (one thread, {jobs} processes on a shared machine): the 7 source GPs "
        f"{source_s:.1f}, the transfer target stage + predict {transfer_s:.1f}, single-task fit + "
        f"predict {single_s:.1f}. 1-min load average at the end: {os.getloadavg()[0]:.1f}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "new_task.md")
    args = parser.parse_args()
    start = time.perf_counter()
    table = run(args.data, args.seeds, args.jobs)
    text = f"{table}\n\nCommand: `{_report.command('new_task')}` ({time.perf_counter() - start:.0f} s).\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
