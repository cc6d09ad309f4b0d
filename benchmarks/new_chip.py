"""A chip the model has never seen: leave-one-device-out over every device of the HELP tables.

    python -m benchmarks.new_chip [--models "gpnas-transfer;gpnas-multitask"] [--ks 10,20]
        [--seeds 3] [--jobs 2] [--out benchmarks/results/new_chip.md] [--csv new_chip.csv]

Protocol (issue 21), per space (nasbench201, fbnet) and per device in turn: the device is the
new chip; the other 22 devices are fully measured on 900 random archs (one fixed split); k of
those 900 (k = 10, 20; a different random pick per seed) are measured on the new chip; the model
(``create_predictor(name).fit_multi(...)``, exactly what ``gpnas predict`` runs) predicts 1,000
other archs. Per device and k, averaged over the seeds:

* Spearman and Kendall between predicted and true latency;
* ``within ±10%``: the share of predictions within 10% of the truth;
* ``cover90``: the share of truths inside the 90% predictive interval (mean ± 1.645 std);
* ``budgets kept``: 20 budgets at the 5%..95% quantiles of the true latencies; for each, the
  slowest-predicted arch with ``P(latency <= B) >= 0.9`` (Gaussian on the predicted mean and
  std, as the service's queries) must really meet B. Budgets no arch qualifies for are skipped.

The Markdown gives, per space, model and k, the mean over devices and the *worst* device for
each metric, then one row per device for every model at the largest k, beside the device's
*ceiling*: GP-NAS fitted on all 900 source archs measured on the device itself (no transfer, no
few-shot), which shows how much of a device's latency the architecture explains at all: phones
whose repeated timings scatter stay below 80% within ±10% even then.
"""

from __future__ import annotations

import argparse
import ast
import copy
import csv
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtr
from scipy.stats import kendalltau, spearmanr

from benchmarks import _report
from benchmarks._ufo_data import one_torch_thread
from predictors import Predictor, TransferPredictor, create_predictor
from supernet import SearchSpace, get_space

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data"
SPACES = ("nasbench201", "fbnet")
CONFIDENCE = 0.9
Z90 = 1.6448536269514722
BUDGET_QUANTILES = np.linspace(0.05, 0.95, 20)
# Not a model: GP-NAS on all 900 source archs of the device itself (the device's ceiling).
CEILING = "ceiling"
METRICS = ("spearman", "kendall", "within10", "cover90", "budgets_kept")


def split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed split: 900 source archs and 1,000 test archs, disjoint."""
    perm = np.random.default_rng(0).permutation(n)
    return perm[:900], perm[900:1900]


def build(spec: str, space: SearchSpace) -> Predictor:
    """A latency predictor from ``name`` or ``name:option=value,...`` (values read as Python
    literals), so that variants can be compared without registering them."""
    name, _, options = spec.partition(":")
    kwargs = {key: ast.literal_eval(value) for key, value in (o.split("=") for o in options.split(",") if o)}
    return create_predictor(name, space, metric="latency_ms", **kwargs)


def budget_compliance(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """``(kept, asked)``: budgets whose slowest confident answer really meets the budget."""
    kept = asked = 0
    for budget in np.quantile(truth, BUDGET_QUANTILES):
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(std > 0, ndtr((budget - mean) / std), (mean <= budget).astype(float))
        feasible = np.flatnonzero(p >= CONFIDENCE)
        if feasible.size == 0:
            continue
        asked += 1
        kept += int(truth[feasible[np.argmax(mean[feasible])]] <= budget)
    return kept, asked


def scores(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    kept, asked = budget_compliance(mean, std, truth)
    return {
        "spearman": float(spearmanr(mean, truth)[0]),
        "kendall": float(kendalltau(mean, truth)[0]),
        "within10": float(np.mean(np.abs(mean / truth - 1) <= 0.1)),
        "cover90": float(np.mean(np.abs(truth - mean) <= Z90 * std)),
        "budgets_kept": kept / asked if asked else float("nan"),
        "budgets_asked": float(asked),
    }


def device_job(args: tuple) -> list[dict]:
    """Every seed and k of one (space, device, model); a transfer model's sources fitted once."""
    data, space_name, device, model, ks, seeds = args
    df = pd.read_csv(data / "device_latency" / f"{space_name}.csv", dtype={"arch": str})
    space = get_space(space_name)
    devices = [c for c in df.columns if c != "arch"]
    target = devices.index(device)
    source, test = split(len(df))
    subs = space.parse_many(df.arch.tolist())
    train_subs = [subs[i] for i in source]
    test_subs = [subs[i] for i in test]
    truth = df[device].to_numpy(dtype=float)[test]
    Y_full = torch.as_tensor(df.loc[source, devices].to_numpy(dtype=float))
    if model == CEILING:
        start = time.perf_counter()
        full = create_predictor("gpnas", space, metric="latency_ms").fit(train_subs, Y_full[:, target])
        mean, std = (t.numpy() for t in full.predict(test_subs))
        row = {"space": space_name, "device": device, "model": model, "k": 900, "seed": 0}
        return [{**row, **scores(mean, std, truth), "fit_s": time.perf_counter() - start}]
    start = time.perf_counter()
    sources = None
    probe = build(model, space)
    if isinstance(probe, TransferPredictor):
        others = [j for j in range(len(devices)) if j != target]
        sources = probe.fit_sources(train_subs, Y_full[:, others])
    source_s = time.perf_counter() - start
    rows = []
    for seed in range(seeds):
        order = np.random.default_rng(1000 * (seed + 1) + target).permutation(len(source))
        for k in ks:
            picks = order[:k]
            start = time.perf_counter()
            if sources is not None:
                predictor = copy.deepcopy(sources)
                predictor.refit_target([train_subs[i] for i in picks], Y_full[picks, target])
            else:
                Y = Y_full.clone()
                unmeasured = np.setdiff1d(np.arange(len(source)), picks)
                Y[unmeasured, target] = float("nan")
                predictor = build(model, space).fit_multi(train_subs, Y, target)
            mean, std = (t.numpy() for t in predictor.predict(test_subs))
            rows.append(
                {
                    "space": space_name,
                    "device": device,
                    "model": model,
                    "k": k,
                    "seed": seed,
                    **scores(mean, std, truth),
                    "fit_s": time.perf_counter() - start + source_s / (seeds * len(ks)),
                }
            )
    return rows


def _worst(g: pd.DataFrame, column: str, fmt: str) -> str:
    row = g.loc[g[column].idxmin()]
    return f"{row[column]:{fmt}} ({row.device})"


def summary(results: pd.DataFrame, models: list[str], ks: list[int]) -> str:
    per_device = results.groupby(["space", "model", "k", "device"], as_index=False)[
        [*METRICS, "fit_s"]
    ].mean()
    shown = [(m, k) for m in models for k in ks]
    if CEILING in set(results.model):
        shown.append((CEILING, 900))
    lines = [
        "| space | model | k | Spearman mean | worst (device) | within ±10% mean | worst (device) "
        "| cover90 mean | range over devices | budgets kept mean | worst (device) | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for space_name in SPACES:
        for model, k in shown:
            of = (per_device.space == space_name) & (per_device.model == model) & (per_device.k == k)
            g = per_device[of]
            if g.empty:
                continue
            lines.append(
                f"| {space_name} | {model} | {k} | **{g.spearman.mean():.3f}** "
                f"| {_worst(g, 'spearman', '.3f')} "
                f"| {g.within10.mean():.0%} | {_worst(g, 'within10', '.0%')} | {g.cover90.mean():.0%} "
                f"| {g.cover90.min():.0%}-{g.cover90.max():.0%} | {g.budgets_kept.mean():.0%} "
                f"| {_worst(g, 'budgets_kept', '.0%')} | {g.fit_s.mean():.1f} |"
            )
    k = max(ks)
    columns = list(dict.fromkeys(m for m, _ in shown))
    lines += [
        "",
        f"Per device at k = {k} (mean over the seeds; the ceiling: all 900): Spearman / within ±10% / "
        "cover90 / budgets kept.",
        "",
        "| space | device | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    at_k = per_device[(per_device.k == k) | (per_device.model == CEILING)]
    for space_name in SPACES:
        for device in sorted(at_k[at_k.space == space_name].device.unique()):
            cells = []
            for model in columns:
                r = at_k[(at_k.space == space_name) & (at_k.device == device) & (at_k.model == model)]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                cells.append(f"{r.spearman:.3f} / {r.within10:.0%} / {r.cover90:.0%} / {r.budgets_kept:.0%}")
            lines.append(f"| {space_name} | {device} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="gpnas-transfer;gpnas-multitask",
        help="';'-separated predictor names, each optionally with options: name:key=value,key=value",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the per-device ceiling fits")
    parser.add_argument("--ks", default="10,20")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--spaces", default=",".join(SPACES))
    parser.add_argument("--devices", default=None, help="comma-separated subset (default: every device)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    parser.add_argument("--csv", type=Path, default=None, help="also write every (device, seed, k) row here")
    args = parser.parse_args()
    models = args.models.split(";")
    ks = [int(k) for k in args.ks.split(",")]
    jobs = []
    for space_name in args.spaces.split(","):
        columns = list(pd.read_csv(args.data / "device_latency" / f"{space_name}.csv", nrows=1).columns[1:])
        chosen = columns if args.devices is None else [d for d in args.devices.split(",") if d in columns]
        shown = models if args.no_ceiling else [*models, CEILING]
        jobs += [(args.data, space_name, d, m, ks, args.seeds) for m in shown for d in chosen]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=one_torch_thread) as pool:
        rows = [r for chunk in pool.map(device_job, jobs) for r in chunk]
    results = pd.DataFrame(rows)
    seconds = time.perf_counter() - start
    text = (
        f"Command: `{_report.command('new_chip')}` ({seconds:.0f} s with --jobs {args.jobs})\n\n"
        + summary(results, models, ks)
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.csv:
        results.to_csv(args.csv, index=False, quoting=csv.QUOTE_MINIMAL)


if __name__ == "__main__":
    main()
