"""Deployment latency on this CPU: predicted from single paths, against measured deployments.

Per space, one interleaved ``torch-cpu`` batch times, in the same rounds (so drift hits all
alike): ``--train`` single paths (cost-stratified, as a new chip's first latency campaign picks
them), every distinct path of the deployments, and ``--deployments`` deployments of 2-4 tasks
(identical paths; paths sharing a long prefix; paths that leave the shared FFN for their own
experts; unrelated paths) on a shared input and on separate inputs. The service's latency GP
(``create_predictor("gpnas")``, fitted as ``search_service.work._functions._train`` fits it:
values and standard errors) and :class:`predictors.DeploymentLatencyModel` (the cost line) are
fitted on the training paths only; the deployments are then predicted and compared with their
measured times. The timings go to ``--csv``; ``--from-csv`` analyses them again without timing.
About 6 minutes for both spaces on one core of a 2-core VM.

    python -m benchmarks.deployment_latency --seed 1
    python -m benchmarks.deployment_latency --from-csv   # re-analyse benchmarks/results/*.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from benchmarks import _report
from predictors import STD_RULES, DeploymentLatencyModel, create_predictor, create_strategy
from profilers import ProfileResult, create_profiler
from profilers._timing import cpu_model
from supernet import Deployment, Subnet, UFOSpace, deployment_macs, reused_layers, ufo_space

Z90 = 1.6449  # two-sided 90% normal interval


@dataclass
class Case:
    kind: str
    dep: Deployment


def _random_layer(space: UFOSpace, rng: np.random.Generator, shared: bool) -> tuple[int, ...]:
    layer = [int(rng.integers(len(dim))) for dim in space.dimensions]
    names = [d.name for d in space.dimensions]
    if "ffn_path" in names and shared:
        layer[names.index("ffn_path")] = 0
    return tuple(layer)


def _path(
    space: UFOSpace, rng: np.random.Generator, prefix: tuple[tuple[int, ...], ...] = (), shared: bool = False
) -> Subnet:
    depth = int(rng.choice([d for d in space.depths if d > len(prefix)]))
    layers = prefix + tuple(_random_layer(space, rng, shared) for _ in range(depth - len(prefix)))
    return space.validate(Subnet(space.name, depth, layers))


def _with_experts(space: UFOSpace, sub: Subnet, start: int) -> Subnet:
    """``sub`` with its own FFN expert from layer ``start`` on."""
    layers = tuple((1, *layer[1:]) if i >= start else layer for i, layer in enumerate(sub.layers))
    return space.validate(Subnet(space.name, sub.depth, layers))


def build_cases(space: UFOSpace, count: int, seed: int) -> list[Case]:
    """``count`` deployments of 2-4 tasks, spread over the kinds of sharing."""
    rng = np.random.default_rng(seed)
    multipath = "ffn_path" in {d.name for d in space.dimensions}
    kinds = (
        ["identical", "prefix", "experts", "unrelated"] if multipath else ["identical", "prefix", "unrelated"]
    )
    cases = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        n_tasks = 2 + (i // len(kinds)) % 3
        tasks = [space.tasks[j] for j in rng.permutation(len(space.tasks))[:n_tasks]]
        base = _path(space, rng, shared=True)
        if kind == "identical":
            paths = [base] * n_tasks
        elif kind == "prefix":  # a long common prefix, then each task its own way
            keep = int(rng.integers(base.depth // 2, base.depth))
            paths = [base, *(_path(space, rng, base.layers[:keep]) for _ in range(n_tasks - 1))]
        elif kind == "experts":  # one path, each task on its own experts from some layer on
            paths = [_with_experts(space, base, int(rng.integers(1, base.depth))) for _ in range(n_tasks)]
        else:
            paths = [_path(space, rng) for _ in range(n_tasks)]
        cases.append(Case(kind, Deployment.of(space.name, dict(zip(tasks, paths, strict=True)))))
    return cases


def _stats(pred: np.ndarray, truth: np.ndarray, std: np.ndarray | None = None) -> str:
    rel = pred / truth - 1
    cover = f"{np.mean(np.abs(pred - truth) <= Z90 * std):.0%}" if std is not None else "-"
    return (
        f"{np.median(np.abs(rel)):.1%} | {np.percentile(np.abs(rel), 90):.1%} | {np.mean(rel):+.1%} | {cover}"
    )


@dataclass
class Measured:
    """One space's timings: every single path, and each deployment on both inputs."""

    space: UFOSpace
    train: list[Subnet]
    cases: list[Case]
    single: dict[Subnet, tuple[float, float]]  # value, standard error (ms)
    shared: np.ndarray  # per case (ms)
    separate: np.ndarray
    shared_rse: np.ndarray
    batch: dict[str, float]


def measure(name: str, args: argparse.Namespace) -> Measured:
    space = ufo_space(name, embed_dim=args.embed_dim, head_dim=args.head_dim, image_size=args.image_size)
    train = create_strategy("cost-stratified").select(space, None, [], n=args.train, seed=args.seed)
    cases = build_cases(space, args.deployments, args.seed)
    profiler = create_profiler(
        "torch-cpu",
        space,
        threads=1,
        clock=args.clock,
        warmup=args.warmup,
        min_repeats=args.rounds,
        max_repeats=args.max_rounds,
        target_rse=0.005,
        memory_mb=args.memory_mb,
        seed=args.seed,
    )
    # Larger batches are timed in chunks (memory_mb): each chunk holds some training paths and
    # whole deployments with their own paths, so that what is compared shares rounds.
    items: list[Deployment | Subnet | str] = []
    modes: list[Literal["shared", "separate"]] = []
    placed: set[Subnet] = set()
    for i, case in enumerate(cases):
        share = train[i * len(train) // len(cases) : (i + 1) * len(train) // len(cases)]
        new = [s for s in dict.fromkeys([*share, *(sub for _, sub in case.dep)]) if s not in placed]
        placed.update(new)
        items += [*new, case.dep, case.dep]
        modes += ["shared"] * len(new) + ["shared", "separate"]
    rest = [s for s in train if s not in placed]
    items += rest
    modes += ["shared"] * len(rest)
    start = time.perf_counter()
    results = profiler.measure_deployments(items, modes)
    seconds = time.perf_counter() - start
    single: dict[Subnet, tuple[float, float]] = {}
    joint: dict[tuple[int, str], ProfileResult] = {}
    dep_index = {id(case.dep): i for i, case in enumerate(cases)}
    for item, mode, result in zip(items, modes, results, strict=True):
        if isinstance(result, Exception):
            raise RuntimeError(f"{item!r} could not be timed") from result
        if isinstance(item, Deployment):
            joint[dep_index[id(item)], mode] = result
        else:
            assert isinstance(item, Subnet)
            single[item] = (result.value, result.rse * result.value)
    env = joint[0, "shared"].environment
    return Measured(
        space,
        train,
        cases,
        single,
        np.array([joint[i, "shared"].value for i in range(len(cases))]),
        np.array([joint[i, "separate"].value for i in range(len(cases))]),
        np.array([joint[i, "shared"].rse for i in range(len(cases))]),
        {
            "models": len(items),
            "chunks": env["chunks"],
            "rounds": env["rounds_timed"],
            "seconds": seconds,
            "reference_ms": env["reference_median_ms"],
            "drift": env["reference_spread"],
            "clock_cpu": float(args.clock == "cpu"),
        },
    )


def to_rows(m: Measured) -> list[dict[str, object]]:
    """The measurements as CSV rows (one per single path, one per deployment and input)."""
    name, fmt = m.space.name, m.space.format
    train = set(m.train)
    rows: list[dict[str, object]] = [
        {
            "space": name,
            "role": "train" if sub in train else "path",
            "case": -1,
            "kind": "",
            "tasks": "",
            "archs": fmt(sub),
            "input": "",
            "value_ms": value,
            "stderr_ms": err,
            "rse": err / value,
        }
        for sub, (value, err) in m.single.items()
    ]
    for i, case in enumerate(m.cases):
        for input, values in (("shared", m.shared), ("separate", m.separate)):
            rows.append(
                {
                    "space": name,
                    "role": "deployment",
                    "case": i,
                    "kind": case.kind,
                    "tasks": ";".join(case.dep.tasks),
                    "archs": ";".join(fmt(s) for _, s in case.dep),
                    "input": input,
                    "value_ms": values[i],
                    "stderr_ms": "",
                    "rse": m.shared_rse[i] if input == "shared" else "",
                }
            )
    geometry = m.space.geometry
    for row in rows:
        row |= {f"batch_{k}": v for k, v in m.batch.items()}
        row |= {
            "embed_dim": geometry.embed_dim,
            "head_dim": geometry.head_dim,
            "image_size": geometry.image_size,
        }
    return rows


def from_rows(table: pd.DataFrame) -> Measured:
    first = table.iloc[0]
    space = ufo_space(
        str(first.space),
        embed_dim=int(first.embed_dim),
        head_dim=int(first.head_dim),
        image_size=int(first.image_size),
    )
    singles = table[table.role != "deployment"]
    single = {
        space.parse(a): (float(v), float(e))
        for a, v, e in zip(singles.archs, singles.value_ms, singles.stderr_ms, strict=True)
    }
    train = [space.parse(a) for a in singles[singles.role == "train"].archs]
    deps = table[table.role == "deployment"].sort_values("case")
    shared_rows, separate_rows = deps[deps.input == "shared"], deps[deps.input == "separate"]
    cases = [
        Case(
            str(r.kind),
            Deployment.of(
                space.name,
                dict(zip(str(r.tasks).split(";"), space.parse_many(str(r.archs).split(";")), strict=True)),
            ),
        )
        for r in shared_rows.itertuples()
    ]
    batch = {k[len("batch_") :]: float(first[k]) for k in table.columns if k.startswith("batch_")}
    return Measured(
        space,
        train,
        cases,
        single,
        shared_rows.value_ms.to_numpy(float),
        separate_rows.value_ms.to_numpy(float),
        shared_rows.rse.to_numpy(float),
        batch,
    )


def analyse(m: Measured) -> list[str]:
    space, train, cases, single = m.space, m.train, m.cases, m.single
    shared, separate = m.shared, m.separate
    y = np.array([single[s][0] for s in train])
    y_std = np.array([single[s][1] for s in train])
    gp = create_predictor("gpnas", space, metric="latency_ms").fit(
        train, torch.as_tensor(y), y_std=torch.as_tensor(y_std)
    )
    deps = [case.dep for case in cases]
    dep_paths = list(dict.fromkeys(sub for dep in deps for _, sub in dep))
    most = max(len(d) for d in deps)
    measured_mean = np.full((len(deps), most), np.nan)
    measured_std = np.full_like(measured_mean, np.nan)
    for i, dep in enumerate(deps):
        for j, (_, sub) in enumerate(dep):
            measured_mean[i, j], measured_std[i, j] = single[sub]
    rows: list[str] = []
    model = DeploymentLatencyModel.fit(space, train, y, y_std)
    gp_mean, gp_std = model.path_latencies(deps, gp)

    def add(label: str, pred: np.ndarray, std: np.ndarray | None = None) -> None:
        rows.append(f"| {label} | {_stats(pred, shared, std)} |")

    def variant(**changes: object) -> DeploymentLatencyModel:
        return dataclasses.replace(model, **changes)  # type: ignore[arg-type]

    for rule in STD_RULES:
        mean, std = (t.numpy() for t in variant(std_rule=rule).predict(deps, (gp_mean, gp_std)))
        add(f"model, GP paths, std `{rule}`" + (" (default)" if rule == "correlated" else ""), mean, std)
    mean, std = (t.numpy() for t in variant(joint_rel_std=0.0).predict(deps, (gp_mean, gp_std)))
    add("model, GP paths, std `correlated` without `joint_rel_std`", mean, std)
    alone = variant(saving_rel_std=0.0, fixed_rel_std=0.0, joint_rel_std=0.0)
    mean, std = (t.numpy() for t in alone.predict(deps, (gp_mean, gp_std)))
    add("model, GP paths, std of the paths alone", mean, std)
    add("sum of the paths (GP)", np.nansum(gp_mean, 1), np.sqrt(np.nansum(gp_std**2, 1)))
    add("slowest path (GP)", np.nanmax(gp_mean, 1))
    add("model, measured paths", model.predict(deps, (measured_mean, measured_std))[0].numpy())
    # The alternative the model does not take: layers at the cost line's absolute costs, and a
    # share of its intercept as the stem.
    codes = model.choices(deps)
    line_layers = (model.layer_costs(codes) * reused_layers(space, codes)).sum((1, 2))
    extra = np.array([len(d) - 1 for d in deps])
    for share in (1.0, 0.5, 0.0):
        mean = np.nansum(measured_mean, 1) - line_layers - extra * share * model.cost_model.weights[0]
        add(
            f"line costs, measured paths, {share:g} x intercept as the stem",
            np.maximum(mean, np.nanmax(measured_mean, 1)),
        )
    add("sum of the paths (measured)", np.nansum(measured_mean, 1))
    add("slowest path (measured)", np.nanmax(measured_mean, 1))

    pred_shared, pred_std = (t.numpy() for t in model.predict(deps, (gp_mean, gp_std)))
    pred_separate, sep_std = (t.numpy() for t in model.predict(deps, (gp_mean, gp_std), input="separate"))
    sep_rel = pred_separate / separate - 1
    speedup = separate / shared
    overhead = separate / np.nansum(measured_mean, 1)
    path_rel = gp.predict(dep_paths)[0].numpy() / np.array([single[s][0] for s in dep_paths]) - 1
    kinds = list(dict.fromkeys(c.kind for c in cases))
    per_kind = [
        "| kind | deployments | tasks | measured shared ms | separate / shared, measured | predicted | "
        "shared-input error (median abs) | MACs shared / separate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        idx = [i for i, c in enumerate(cases) if c.kind == kind]
        macs = [
            deployment_macs(space, deps[i], "shared") / deployment_macs(space, deps[i], "separate")
            for i in idx
        ]
        per_kind.append(
            f"| {kind} | {len(idx)} | {'-'.join(str(len(deps[i])) for i in idx)} | "
            f"{np.median(shared[idx]):.1f} | {np.median(speedup[idx]):.2f} | "
            f"{np.median(pred_separate[idx] / pred_shared[idx]):.2f} | "
            f"{np.median(np.abs(pred_shared[idx] / shared[idx] - 1)):.1%} | {np.median(macs):.2f} |"
        )
    b = m.batch
    values = [v for v, _ in single.values()]
    lines = [
        f"## {space.name}",
        "",
        f"{len(train)} training paths, {len(dep_paths)} distinct deployment paths, {len(cases)} deployments "
        f"(2-4 tasks), each on a shared and on separate inputs: {int(b['models'])} models in one "
        f"interleaved batch ({int(b['chunks'])} chunks by memory), {int(b['rounds'])} rounds in all, "
        f"{b['seconds']:.0f} s; reference {b['reference_ms']:.1f} ms, drift (p90 - p10) / median "
        f"{b['drift']:.1%}; median RSE of a shared-input deployment {np.median(m.shared_rse):.1%}. "
        f"Paths take {min(values):.1f}-{max(values):.1f} ms.",
        "",
        "Shared-input latency of the deployments, predicted from the training paths only:",
        "",
        "| prediction | median abs rel error | p90 abs rel error | mean rel error | 90% interval coverage |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Separate inputs (all tasks one after another = sum of the GP's paths): median abs rel error "
        f"{np.median(np.abs(sep_rel)):.1%}, p90 {np.percentile(np.abs(sep_rel), 90):.1%}, "
        f"coverage {np.mean(np.abs(pred_separate - separate) <= Z90 * sep_std):.0%}. "
        f"The GP's error on the deployments' own paths: median abs {np.median(np.abs(path_rel)):.1%}, "
        f"p90 {np.percentile(np.abs(path_rel), 90):.1%}, mean {np.mean(path_rel):+.1%}. "
        f"Measured separate-input deployment / sum of its measured single paths (the joint model's "
        f"own overhead): median {np.median(overhead):.3f} (range {overhead.min():.3f}-{overhead.max():.3f}).",
        "",
        "Measured speed-up of a shared input over separate ones, by kind of sharing:",
        "",
        *per_kind,
        "",
        f"Cost line: intercept {model.cost_model.weights[0]:.2f} ms, out-of-fold relative RMS error "
        f"{model.saving_rel_std:.1%} (the layers' saving's relative std); stem {model.stem_ms:.2f} ms and "
        f"head {model.head_ms:.3f} ms at the paths' median time per MAC.",
        "",
        "<details><summary>Every deployment</summary>",
        "",
        "| kind | tasks | shared ms | predicted ± std | separate ms | predicted | sum of measured paths |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for i, case in enumerate(cases):
        lines.append(
            f"| {case.kind} | {', '.join(case.dep.tasks)} | {shared[i]:.2f} | {pred_shared[i]:.2f} ± "
            f"{pred_std[i]:.2f} | {separate[i]:.2f} | {pred_separate[i]:.2f} | "
            f"{np.nansum(measured_mean[i]):.2f} |"
        )
    lines += ["", "</details>", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["ufo2-multipath", "ufo-track2"])
    parser.add_argument("--train", type=int, default=30, help="single paths the models are fitted on")
    parser.add_argument("--deployments", type=int, default=24)
    parser.add_argument("--embed-dim", type=int, default=384)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds at least")
    parser.add_argument("--max-rounds", type=int, default=20)
    parser.add_argument("--memory-mb", type=float, default=5000.0, help="weights of one chunk of the batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path("benchmarks/results/deployment_latency.csv"),
        help="where the measurements are written (or, with --from-csv, read)",
    )
    parser.add_argument(
        "--from-csv", action="store_true", help="analyse the measurements of --csv, time nothing"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/deployment_latency.md"))
    args = parser.parse_args(argv)
    command = _report.command("deployment_latency", argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.from_csv:
        table = pd.read_csv(args.csv, dtype={"archs": str, "tasks": str, "kind": str}, keep_default_na=False)
        measured = [from_rows(part) for _, part in table.groupby("space", sort=False)]
    else:
        measured = [measure(name, args) for name in args.spaces]
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([row for m in measured for row in to_rows(m)]).to_csv(args.csv, index=False)
    body: list[str] = []
    for m in measured:
        lines = analyse(m)
        body += lines
        print("\n".join(lines), flush=True)
    g = measured[0].space.geometry
    timed = sum(m.batch["seconds"] for m in measured)
    clock = "cpu" if measured[0].batch.get("clock_cpu", 0.0) else "wall"
    header = [
        "# Deployment latency: predicted from single paths, against measured deployments",
        "",
        f"Command: `{command}`" + (" (analysis of the measurements in the CSV)" if args.from_csv else ""),
        "",
        f"torch-cpu on {cpu_model()}, 1 thread, clock `{clock}`, batch 1, ViT geometry "
        f"embed_dim {g.embed_dim}, head_dim {g.head_dim}, image {g.image_size} (patch {g.patch_size}: "
        f"{g.num_tokens} tokens), torch {torch.__version__}; {timed:.0f} s of timing, "
        f"{time.perf_counter() - start:.0f} s in all. Errors are relative to the measured shared-input "
        "latency (median over the rounds, reference-normalised); coverage: the measured latency "
        "within the prediction ± 1.645 std. Measurements: "
        f"[{args.csv.name}]({args.csv.name}).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + body))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
