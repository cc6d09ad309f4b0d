"""Latency models on live ufo-track2 timings: fit on one measured set, predict the other.

Reads the per-subnet CSV that ``benchmarks/repeatability.py`` writes (the same 60 ViT-Base
subnets timed on this CPU: 30 cost-stratified, 30 uniform; interleaved protocol, mean of the two
passes as the truth) and, per condition, fits the latency GP on ``--k`` subnets of one set and
predicts the other set: stratified -> uniform asks whether a design spanning the cost range
ranks the typical subnets; uniform -> stratified whether uniform draws extrapolate to the cheap
and costly ends. Models: GP-NAS with the analytic cost prior (the default) and without it.

    python -m benchmarks.live_latency_model --csv benchmarks/results/repeatability.csv \
        --out benchmarks/results/live_latency_model.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from benchmarks import _report
from predictors import GPNASPredictor
from supernet import get_space


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=Path("benchmarks/results/repeatability.csv"))
    parser.add_argument("--k", type=int, nargs="+", default=[10, 30])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/live_latency_model.md"))
    args = parser.parse_args(argv)

    space = get_space("ufo-track2")
    table = pd.read_csv(args.csv, dtype={"arch": str})
    table["truth"] = (table.new_1 + table.new_2) / 2
    rows_out = []
    for condition, rows in table.groupby("condition", sort=False):
        sets = {name: part for name, part in rows.groupby("set")}
        for train_name, test_name in (("stratified", "uniform"), ("uniform", "stratified")):
            if train_name not in sets or test_name not in sets:
                continue
            train, test = sets[train_name], sets[test_name]
            test_subs = space.parse_many(test.arch.tolist())
            truth = test.truth.to_numpy()
            for k in args.k:
                # Every other subnet in cost order, so k < 30 still spans the set's range.
                picked = train.sort_values("macs").iloc[np.linspace(0, len(train) - 1, k).round().astype(int)]
                for label, cost_prior in (("GP-NAS + cost prior (default)", None), ("GP-NAS", False)):
                    model = GPNASPredictor(space, metric="latency_ms", cost_prior=cost_prior).fit(
                        space.parse_many(picked.arch.tolist()), picked.truth.to_numpy()
                    )
                    mean, std = (t.numpy() for t in model.predict(test_subs))
                    rows_out.append(
                        [
                            condition,
                            f"{train_name} -> {test_name}",
                            k,
                            label,
                            f"{spearmanr(mean, truth)[0]:.3f}",
                            f"{kendalltau(mean, truth)[0]:.3f}",
                            f"{np.mean(np.abs(mean / truth - 1) <= 0.1):.0%}",
                            f"{np.mean(np.abs(mean - truth) <= 2 * std):.0%}",
                        ]
                    )
    header = ["condition", "train -> test", "k", "model", "Spearman", "Kendall", "within ±10%", "in ±2 std"]
    text = _report.document(
        "Latency models on live ufo-track2 timings",
        _report.command("live_latency_model", argv),
        _report.table(header, "llrlrrrr", rows_out),
    )
    _report.write(args.out, text)


if __name__ == "__main__":
    main()
