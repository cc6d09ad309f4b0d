"""Measurement repeatability of torch-cpu: the same ufo-track2 subnets measured twice, old and new
protocol side by side in one run.

Sets: 30 uniformly sampled subnets, and 30 picked by the ``cost-stratified`` strategy (what a new
chip's first campaign measures). Conditions: the machine as it is ("quiet"), and with one
CPU-bound process, started and stopped by this script, busy on the other core ("busy"). Protocols:
``sequential`` (each subnet timed on its own until its median is stable: gpnas before the
interleaved protocol) and ``interleaved`` (the whole set timed in rounds with a reference subnet,
the default now; both of its estimators are reported from the same passes). Passes run in the
order old 1, new 1, old 2, new 2, so that slow phases of the machine hit both protocols.

Reports per row the Kendall tau between the two passes, the median relative spread between them,
seconds per subnet, and the load average; writes a Markdown table and the raw numbers.

    python -m benchmarks.repeatability --out benchmarks/results/repeatability.md \
        --csv benchmarks/results/repeatability.csv

``--mode levels`` measures what a user gets from ``gpnas profile`` itself: four real ``gpnas
profile`` passes (one batch each) over the same cost-stratified subnets, two on the quiet machine
and two with the busy neighbour (on the other core, or with ``--neighbour shared`` on the passes'
own core), ``--gap`` seconds apart, sharing one level file (so the first pass's batch sets the
long-run level). It compares pairs of passes with the values as timed
(``unscaled``: each batch on its own reference level) and rescaled to the long-run level (the
value column), and lists every batch's shift against the long-run level and whether
``gpnas profile`` warned about it.

    python -m benchmarks.repeatability --mode levels --samples 12 \
        --out benchmarks/results/repeatability_levels.md \
        --csv benchmarks/results/repeatability_levels.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from benchmarks import _report
from predictors import create_strategy
from profilers import ProfileResult, TorchCPUProfiler, cpu_model
from supernet import Subnet, get_space

# The protocol before interleaving, with the settings it shipped with (torch-cpu version 1).
SEQUENTIAL = {
    "protocol": "sequential",
    "warmup": 3,
    "min_repeats": 5,
    "max_repeats": 50,
    "target_rse": 0.02,
    "max_seconds": 20.0,
}


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_neighbour(enabled: bool, core: int | None) -> Iterator[None]:
    """One CPU-bound process on ``core`` (the one the profiler does not use) while inside."""
    if not enabled:
        yield
        return
    process = mp.get_context("spawn").Process(target=_spin, daemon=True)
    process.start()
    if core is not None and process.pid is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(process.pid, {core})
    try:
        yield
    finally:
        process.terminate()
        process.join()


def measure_pass(
    space, subs: list[Subnet], settings: dict, loads: list[float]
) -> tuple[list[ProfileResult], float]:
    """One pass over ``subs`` with a fresh profiler (and supernet); returns results and seconds."""
    profiler = TorchCPUProfiler(space, **settings)
    profiler.supernet()
    start = time.perf_counter()
    outcomes = profiler.measure_many(subs)
    seconds = time.perf_counter() - start
    loads.append(os.getloadavg()[0])
    profiler.close()
    failed = [o for o in outcomes if isinstance(o, Exception)]
    if failed:
        raise RuntimeError(f"{len(failed)} subnets failed, first: {failed[0]}")
    return outcomes, seconds  # type: ignore[return-value]


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Kendall tau, median and 90th percentile of |a - b| / mean."""
    spread = np.abs(a - b) / ((a + b) / 2)
    return float(kendalltau(a, b).statistic), float(np.median(spread)), float(np.percentile(spread, 90))


def _pin_away_from_neighbour() -> int | None:
    """Pin this process (and what it starts) to the first core; the core left for the neighbour."""
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[0]})
        return cores[1]
    return None


# The passes of --mode levels, in order, and the pairs compared.
LEVEL_PASSES = (("quiet", 1), ("quiet", 2), ("busy", 1), ("busy", 2))
LEVEL_PAIRS = (
    ("quiet 1 vs quiet 2", 0, 1),
    ("busy 1 vs busy 2", 2, 3),
    ("quiet 1 vs busy 1", 0, 2),
    ("quiet 2 vs busy 2", 1, 3),
)


def profile_pass(archs: Path, n: int, levels: Path, out: Path, threads: int, seed: int) -> tuple[float, str]:
    """One ``gpnas profile`` pass over the ``n`` subnets of ``archs`` in one batch; returns its
    seconds and what it said about the batch's level."""
    command = [
        sys.executable, "-c", "from search_service.cli import main; main()",
        "profile", "--space", "ufo-track2", "--device", "torch-cpu",
        "--set", f"threads={threads}", "--set", f"seed={seed}",
        "--archs", str(archs), "--batch", str(n), "--levels", str(levels), "--out", str(out),
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    messages = [
        line.strip()
        for line in done.stderr.replace("\r", "\n").splitlines()
        if line.startswith(("batch ", "warning:"))
    ]
    if done.returncode != 0:
        raise RuntimeError(f"gpnas profile failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, "; ".join(messages)


def levels_mode(args: argparse.Namespace, command: str) -> None:
    """Two quiet and two busy ``gpnas profile`` passes: level spread with and without rescaling."""
    from search_service.levels import DEFAULT_SHIFT_THRESHOLD

    space = get_space("ufo-track2")
    subs = create_strategy("cost-stratified").select(space, None, [], args.samples, seed=args.seed)
    archs_text = "arch\n" + "".join(space.format(s) + "\n" for s in subs)
    other_core = _pin_away_from_neighbour()
    # "shared": the neighbour takes turns with the passes on their own core, as a co-tenant would.
    neighbour_core = sorted(os.sched_getaffinity(0))[0] if args.neighbour == "shared" else other_core
    runs: list[dict[str, dict[str, float]]] = []
    info: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        archs, levels = Path(tmp) / "archs.csv", Path(tmp) / "levels.json"
        archs.write_text(archs_text)
        for k, (condition, number) in enumerate(LEVEL_PASSES):
            if k:
                time.sleep(args.gap)
            out = Path(tmp) / f"pass{k}.csv"
            with busy_neighbour(condition == "busy", neighbour_core):
                load = os.getloadavg()[0]
                seconds, messages = profile_pass(archs, len(subs), levels, out, args.threads, args.seed)
            print(f"{condition} {number}: {seconds:.0f} s; {messages}", file=sys.stderr)
            with open(out, newline="") as handle:
                rows = {r["arch"]: r for r in csv.DictReader(handle)}
            runs.append(
                {
                    "rescaled": {a: float(r["latency_ms"]) for a, r in rows.items()},
                    "unscaled": {a: float(r["unscaled"]) for a, r in rows.items()},
                    "reference": {a: float(r["reference_ms"]) for a, r in rows.items()},
                    "level": {a: float(r["level_ms"]) for a, r in rows.items()},
                }
            )
            info.append((f"{condition} {number}", seconds, load, messages))
    order = [space.format(s) for s in subs]
    table = [
        "| passes | values | Kendall tau | median level spread | p90 spread | median ratio pass B / pass A |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, i, j in LEVEL_PAIRS:
        for kind in ("unscaled", "rescaled"):
            a = np.array([runs[i][kind][x] for x in order])
            b = np.array([runs[j][kind][x] for x in order])
            tau, median_spread, p90_spread = compare(a, b)
            table.append(
                f"| {label} | {kind} | **{tau:.3f}** | **{median_spread:.2%}** | {p90_spread:.2%} | "
                f"{float(np.median(b / a)):.3f} |"
            )
    batches = [
        "| pass | reference level (ms) | long-run level (ms) | shift | reported | s per subnet "
        "| 1-min load |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for (label, seconds, load, messages), run in zip(info, runs, strict=True):
        reference, level = run["reference"][order[0]], run["level"][order[0]]
        reported = "**warned**" if "warning:" in messages else "no"
        batches.append(
            f"| {label} | {reference:.1f} | {level:.1f} | {reference / level - 1:+.1%} | {reported} | "
            f"{seconds / len(subs):.1f} | {load:.1f} |"
        )
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["arch", "macs"]
            + [f"{kind}_{c}_{n}" for c, n in LEVEL_PASSES for kind in ("unscaled", "rescaled")]
        )
        macs = space.macs(subs)
        for x, m in zip(order, macs, strict=True):
            writer.writerow(
                [x, int(m)] + [f"{run[kind][x]:.3f}" for run in runs for kind in ("unscaled", "rescaled")]
            )
    where = "the same core" if args.neighbour == "shared" else "the other"
    text = "\n".join(
        [
            "# torch-cpu repeatability of levels: two `gpnas profile` passes, quiet and busy",
            "",
            f"Command: `{command}`",
            "",
            "Pairs of passes over the same subnets. `unscaled`: each pass's values on its own batch's "
            "reference level (what `gpnas profile` wrote before long-run levels); `rescaled`: the value "
            "column now, every batch rescaled to the device's long-run reference level (set by the "
            "first pass). Level spread: |a - b| / mean per subnet. Targets: median spread <= 3%, "
            "tau >= 0.9.",
            "",
            *table,
            "",
            f"Batches (one per pass; `reported`: `gpnas profile` warned that the level moved more than "
            f"{DEFAULT_SHIFT_THRESHOLD:.0%}):",
            "",
            *batches,
            "",
            f"Conditions: {len(subs)} cost-stratified ufo-track2 (ViT-Base) subnets, batch 1, 224x224, fp32, "
            f"{args.threads} thread(s), torch-cpu defaults (interleaved rounds with the reference), eager "
            f"PyTorch {torch.__version__}, CPU {cpu_model()} ({os.cpu_count()} cores; the passes pinned to "
            f"one core, the busy neighbour spinning on {where}); {args.gap:.0f} s between passes, "
            "each pass a fresh `gpnas profile` process sharing one --levels file.",
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=("protocols", "levels"),
        default="protocols",
        help="protocols: sequential vs interleaved; levels: gpnas profile passes with long-run levels",
    )
    parser.add_argument("--gap", type=float, default=30.0, help="levels: seconds between passes")
    parser.add_argument(
        "--neighbour",
        choices=("other", "shared"),
        default="other",
        help="levels: the busy neighbour spins on the other core, or shares the passes' core",
    )
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sets", default="uniform,stratified")
    parser.add_argument("--conditions", default="quiet,busy")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/repeatability.md"))
    parser.add_argument("--csv", type=Path, default=Path("benchmarks/results/repeatability.csv"))
    args = parser.parse_args(argv)
    command = _report.command("repeatability", argv)
    if args.mode == "levels":
        levels_mode(args, command)
        return

    torch.set_num_threads(args.threads)
    space = get_space("ufo-track2")
    sets = {
        "uniform": space.sample(args.samples, seed=args.seed),
        "stratified": create_strategy("cost-stratified").select(
            space, None, [], args.samples, seed=args.seed
        ),
    }
    # The profiler runs on core 0; the neighbour gets core 1 (when the machine has one).
    own_core = _pin_away_from_neighbour()
    new_settings = {"threads": args.threads, "seed": args.seed}
    old_settings = {**SEQUENTIAL, "threads": args.threads}
    rows, raw_rows = [], []
    for condition in args.conditions.split(","):
        for set_name in args.sets.split(","):
            subs = sets[set_name]
            loads = [os.getloadavg()[0]]
            passes: dict[str, list] = {"old": [], "new": []}
            seconds: dict[str, list[float]] = {"old": [], "new": []}
            with busy_neighbour(condition == "busy", own_core):
                for _ in range(2):
                    for protocol, settings in (("old", old_settings), ("new", new_settings)):
                        results, spent = measure_pass(space, subs, settings, loads)
                        passes[protocol].append(results)
                        seconds[protocol].append(spent / len(subs))
                        print(f"{condition} {set_name} {protocol}: {spent:.0f} s", file=sys.stderr)
            macs = space.macs(subs)
            for protocol, label, pick in (
                ("old", "sequential", lambda r: r.value),
                ("new", "interleaved, normalised (default)", lambda r: r.value),
                ("new", "interleaved, raw median", lambda r: r.raw_value),
            ):
                a = np.array([pick(r) for r in passes[protocol][0]])
                b = np.array([pick(r) for r in passes[protocol][1]])
                tau, median_spread, p90_spread = compare(a, b)
                flagged = sum(r.flagged for run in passes[protocol] for r in run)
                rows.append(
                    (
                        condition,
                        set_name,
                        label,
                        tau,
                        median_spread,
                        p90_spread,
                        float(np.mean(seconds[protocol])),
                        float(kendalltau(macs, (a + b) / 2).statistic),
                        flagged,
                        f"{min(loads):.1f}-{max(loads):.1f}",
                    )
                )
            for i, sub in enumerate(subs):
                raw_rows.append(
                    [
                        condition,
                        set_name,
                        space.format(sub),
                        int(macs[i]),
                        *(f"{passes[p][k][i].value:.3f}" for p in ("old", "new") for k in (0, 1)),
                        *(f"{passes['new'][k][i].raw_value:.3f}" for k in (0, 1)),
                    ]
                )
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["condition", "set", "arch", "macs", "old_1", "old_2", "new_1", "new_2", "new_raw_1", "new_raw_2"]
        )
        writer.writerows(raw_rows)
    lines = [
        "| condition | set | protocol | Kendall tau, pass 1 vs 2 | median spread between passes "
        "| p90 spread | s per subnet | tau vs MACs | flagged | 1-min load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r[0]} | {r[1]} | {r[2]} | **{r[3]:.3f}** | {r[4]:.2%} | {r[5]:.2%} | {r[6]:.1f} | "
            f"{r[7]:.3f} | {r[8]} | {r[9]} |"
        )
    defaults = TorchCPUProfiler.validate_settings(new_settings)
    conditions = (
        f"Conditions: ufo-track2 (ViT-Base) subnets, batch 1, 224x224, fp32, {args.threads} thread(s), "
        f"eager PyTorch {torch.__version__}, CPU {cpu_model()} ({os.cpu_count()} cores; the profiler "
        f"pinned to one core, the busy neighbour to another). Interleaved: torch-cpu defaults "
        f"(warm-up {defaults['warmup']}, {defaults['min_repeats']}-{defaults['max_repeats']} rounds until "
        f"every estimate's RSE <= {defaults['target_rse']:.0%}, reference "
        f"`{space.format(TorchCPUProfiler(space).reference)}`, chunks of <= {defaults['memory_mb']:.0f} MB "
        f"of weights). Sequential: warm-up 3, 5-50 repeats until the median's RSE <= 2%, <= 20 s a subnet. "
        f"`flagged`: measurements (of {2 * args.samples} per protocol) whose batch's reference drifted "
        f"more than {defaults['drift_threshold']:.0%} (p90 - p10 over median; sequential batches have no "
        "reference)."
    )
    text = "\n".join(
        [
            "# torch-cpu repeatability: sequential vs interleaved",
            "",
            f"Command: `{command}`",
            "",
            *lines,
            "",
            conditions,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
