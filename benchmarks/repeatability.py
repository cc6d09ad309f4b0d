"""Measurement quality of the torch-cpu profiler: profile the same ufo-track2 subnets twice.

Reports the Kendall tau between the two runs' medians (target >= 0.9), the median relative
spread (between the runs, and within a run as (p90 - p10) / median), seconds per subnet, and the
conditions (CPU, threads, load average). Writes a Markdown table and the raw numbers.

    python benchmarks/repeatability.py --samples 30 --threads 1 \
        --out benchmarks/results/repeatability.md --csv benchmarks/results/repeatability.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from profilers import TorchCPUProfiler, cpu_model
from supernet import get_space


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="torch-cpu 'clock' setting")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/repeatability.md"))
    parser.add_argument("--csv", type=Path, default=Path("benchmarks/results/repeatability.csv"))
    args = parser.parse_args(argv)
    command = "python benchmarks/repeatability.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    torch.set_num_threads(args.threads)
    space = get_space("ufo-track2")
    subs = space.sample(args.samples, seed=args.seed)
    settings = {
        "threads": args.threads,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "clock": args.clock,
    }
    loads = [os.getloadavg()[0]]
    runs: list[list] = []
    seconds: list[float] = []
    for run in range(2):
        profiler = TorchCPUProfiler(space, **settings)  # a fresh profiler (and supernet) per run
        profiler.supernet()
        results = []
        for i, sub in enumerate(subs):
            start = time.perf_counter()
            results.append(profiler.measure(sub))
            seconds.append(time.perf_counter() - start)
            loads.append(os.getloadavg()[0])
            print(
                f"run {run + 1} subnet {i + 1}/{len(subs)}: {results[-1].value:8.2f} ms "
                f"({results[-1].repeats} repeats, {seconds[-1]:.1f} s)",
                file=sys.stderr,
            )
        runs.append(results)
        profiler.close()

    a = np.array([r.value for r in runs[0]])
    b = np.array([r.value for r in runs[1]])
    tau = kendalltau(a, b).statistic
    between = np.abs(a - b) / ((a + b) / 2)
    within = np.array([(r.p90 - r.p10) / r.value for run in runs for r in run])
    repeats = np.array([r.repeats for run in runs for r in run])
    flops = np.array([space.flops(s) for s in subs])
    tau_flops = kendalltau(flops, (a + b) / 2).statistic

    with open(args.csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["arch", "run1_ms", "run2_ms", "run1_p10", "run1_p90", "run2_p10", "run2_p90", "macs"]
        )
        for sub, r1, r2, f in zip(subs, runs[0], runs[1], flops, strict=True):
            writer.writerow(
                [
                    space.format(sub),
                    f"{r1.value:.3f}",
                    f"{r2.value:.3f}",
                    f"{r1.p10:.3f}",
                    f"{r1.p90:.3f}",
                    f"{r2.p10:.3f}",
                    f"{r2.p90:.3f}",
                    int(f),
                ]
            )
    table = [
        "| metric | value |",
        "| --- | --- |",
        f"| subnets (ufo-track2, sampled with seed {args.seed}) | {args.samples}, each profiled twice |",
        f"| Kendall tau, run 1 vs run 2 (target >= 0.9) | **{tau:.3f}** |",
        f"| median relative spread between runs, \\|r1 - r2\\| / mean | {np.median(between):.2%} |",
        f"| 90th percentile of that spread | {np.percentile(between, 90):.2%} |",
        f"| median relative spread within a run, (p90 - p10) / median | {np.median(within):.2%} |",
        f"| seconds per subnet (extract + warm-up + timed repeats) | {np.mean(seconds):.1f} |",
        f"| timed repeats per subnet, median (min-max) | {np.median(repeats):.0f} "
        f"({repeats.min()}-{repeats.max()}) |",
        f"| median latency, run 1 / run 2 | {np.median(a):.1f} ms / {np.median(b):.1f} ms |",
        f"| Kendall tau, latency vs analytic MACs (context) | {tau_flops:.3f} |",
    ]
    used = TorchCPUProfiler.validate_settings(settings)
    conditions = (
        f"Conditions: torch-cpu profiler (eager PyTorch {torch.__version__}), batch {args.batch_size}, "
        f"{args.image_size}x{args.image_size} input, fp32, {args.threads} thread(s), {args.clock} clock, "
        f"warm-up {used['warmup']}, "
        f"{used['min_repeats']}-{used['max_repeats']} repeats until the median's relative standard error "
        f"<= {used['target_rse']:.0%} (cap {used['max_seconds']:.0f} s per subnet); CPU {cpu_model()} "
        f"({os.cpu_count()} cores), shared with other processes: 1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the run."
    )
    text = "\n".join(
        [
            f"# torch-cpu repeatability ({args.clock} clock)",
            "",
            f"Command: `{command}`",
            "",
            *table,
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
