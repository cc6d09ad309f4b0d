"""Quiet-data check of the latency std (issue 21.4): 90% interval coverage and Spearman on held-out
real latencies, with and without small known measurement errors (y_std 2%).

For each device of ``--devices`` (NAS-Bench-201 and FBNet tables of ../shared/data/device_latency),
``k`` random subnets of the first 300 of a fixed shuffle are the training set and the next 1,000
are scored. Run it on two trees to compare them (e.g. before and after a change):

    python -m benchmarks.quiet_coverage --out benchmarks/results/quiet_coverage.md
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from benchmarks import _report
from predictors import create_predictor
from supernet import get_space

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "device_latency"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nasbench201", default="gold_6226,pixel2,titanx_32")
    parser.add_argument("--fbnet", default="gold_6226,raspi4,eyeriss")
    parser.add_argument("--models", default="gpnas-multitask,gpnas")
    parser.add_argument("--k", default="10,20")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA, help="the device_latency tables")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quiet_coverage.md"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rows = []
    for space_name in ("nasbench201", "fbnet"):
        table = pd.read_csv(args.data / f"{space_name}.csv", dtype={"arch": str})
        table = table.iloc[np.random.default_rng(0).permutation(len(table))[:1300]].reset_index(drop=True)
        space = get_space(space_name)
        subs = space.parse_many(table.arch.tolist())
        test = np.arange(300, 1300)
        for device in getattr(args, space_name).split(","):
            y = table[device].to_numpy(float)
            for k in (int(v) for v in args.k.split(",")):
                for seed in range(args.seeds):
                    train = np.random.default_rng(seed).permutation(300)[:k]
                    for relative in (0.0, 0.02):
                        y_std = None if relative == 0 else torch.tensor(relative * y[train])
                        for name in args.models.split(","):
                            model = create_predictor(name, space, metric="latency_ms")
                            model.fit([subs[i] for i in train], torch.tensor(y[train]), y_std=y_std)
                            mean, std = (t.numpy() for t in model.predict([subs[i] for i in test]))
                            inside = np.mean(np.abs(mean - y[test]) <= 1.645 * std)
                            rho = spearmanr(mean, y[test]).statistic
                            rows.append((space_name, k, relative, name, device, inside, rho))
    frame = pd.DataFrame(rows, columns=["space", "k", "y_std", "model", "device", "cover", "rho"])
    groups = frame.groupby(["space", "k", "y_std", "model"], sort=True)
    summary = [
        [
            space_name,
            k,
            f"{relative:.0%}",
            name,
            f"{group.cover.mean():.3f}",
            f"{group.cover.min():.3f} ({group.device[group.cover.idxmin()]})",
            f"{group.rho.mean():.3f}",
        ]
        for (space_name, k, relative, name), group in groups
    ]
    header = ["space", "k", "y_std", "model", "mean coverage", "worst device", "mean Spearman"]
    text = _report.document(
        "Quiet-data latency intervals: 90% coverage on held-out real latencies",
        _report.command("quiet_coverage", argv),
        _report.table(header, "lrrlrrr", summary),
        [
            f"Devices: nasbench201 {args.nasbench201}; fbnet {args.fbnet}; {args.seeds} seed(s) of the "
            "training pick; 1,000 held-out subnets each."
        ],
    )
    _report.write(args.out, text)


if __name__ == "__main__":
    main()
