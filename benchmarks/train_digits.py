"""``gpnas train`` on real data: scikit-learn's digits as three tasks of one UFO 2.0 supernet.

Tasks (the built-in ``digits-ufo`` data set, 75/25 train/validation split of the 1,797 8x8
images): ``low`` = digits 0-4 and ``high`` = digits 5-9 (classification heads, top-1), and
``retrieval`` = all ten digits as an embedding task without a head (supervised contrastive
training, scored by Recall@1 with every validation image a query against all the others, the SOP
protocol of ``profilers.RetrievalMetric``). The space is a tiny ``ufo2-multipath`` definition (per
layer ffn_path shared/task, mlp_ratio 4/2/0.5, heads 4/2/1; depth 1-4; embed 32, patch 2).

The script writes the space definition, runs the real CLI (``gpnas train ... --data digits-ufo``) in
a subprocess, then scores subnets of the trained supernet on the validation split with the
``supernet-eval`` profiler and each task's metric: per task the largest, a mid and the smallest
subnet on the ``ffn_path`` the task's gates chose (argmax per layer), and the largest subnet with
every layer on the shared FFN or on the task's expert (what the gates' choice is worth). It checks
that the larger subnets beat the smallest on every task and reports the learned gates and their
distances between tasks.

Usage::

    python -m benchmarks.train_digits --out benchmarks/results/train_digits.md
    python -m benchmarks.train_digits --device cuda --amp --out benchmarks/results/train_digits_cuda.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from profilers import LocalConfig, create_profiler
from supernet import LearnedGates, MultipathSpace, SpaceDefinition, Subnet, space_from_definition

TASKS = [
    {"name": "low", "head": 5, "metric": "top1"},
    {"name": "high", "head": 5, "metric": "top1"},
    {"name": "retrieval", "head": None, "metric": "retrieval"},
]
#: Skeletons: name -> (depth, mlp_ratio, num_heads) in every layer; ffn_path from the gates.
SKELETONS = {"largest": (4, 4.0, 4), "mid": (2, 2.0, 2), "smallest": (1, 0.5, 1)}


def definition(patch_size: int) -> dict:
    return {
        "name": "digits-3task",
        "family": "ufo",
        "arch_format": "multipath",
        "tasks": TASKS,
        "depths": [1, 2, 3, 4],
        "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [4.0, 2.0, 0.5], "num_heads": [4, 2, 1]},
        "geometry": {
            "embed_dim": 32,
            "patch_size": patch_size,
            "image_size": 8,
            "head_dim": 8,
            "in_chans": 1,
        },
    }


def subnet(space: MultipathSpace, skeleton: tuple[int, float, int], paths: list[str]) -> Subnet:
    depth, ratio, heads = skeleton
    layers = [{"ffn_path": paths[i], "mlp_ratio": ratio, "num_heads": heads} for i in range(depth)]
    return space.from_config({"layers": layers})


def gpnas_command() -> list[str]:
    script = Path(sys.executable).with_name("gpnas")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from search_service.cli import main; main()"]


def train_args(args: argparse.Namespace, space_file: Path, run: Path) -> list[str]:
    out = ["train", "--space", str(space_file), "--data", "digits-ufo", "--epochs", str(args.epochs)]
    out += [
        "--batch-size",
        str(args.batch_size),
        "--lr",
        str(args.lr),
        "--warmup-steps",
        str(args.warmup_steps),
    ]
    out += ["--seed", str(args.seed), "--device", args.device, "--checkpoint-dir", str(run)]
    out += ["--threads", str(args.threads)] + (["--amp"] if args.amp else [])
    return out


def score_rows(
    args: argparse.Namespace, space: MultipathSpace, work: Path, gates: LearnedGates
) -> tuple[list, dict]:
    settings = {"checkpoint": "run/supernet.pt", "data": "digits-ufo", "device": args.device}
    if args.amp:
        settings["amp"] = True
    profiler = create_profiler("supernet-eval", space, local=LocalConfig(data_dir=work), **settings)
    rows, scores = [], {}
    for task in space.tasks:
        chosen = gates.ffn_paths(task)
        cases = [(name, skeleton, chosen) for name, skeleton in SKELETONS.items()]
        cases += [("largest, all shared", SKELETONS["largest"], ["shared"] * 4)]
        cases += [("largest, all task experts", SKELETONS["largest"], ["task"] * 4)]
        for name, skeleton, paths in cases:
            sub = subnet(space, skeleton, paths)
            result = profiler.score(sub, task)
            scores[task, name] = result.value
            metric = result.environment["task_metric"]
            rows.append(
                f"| {task} | {metric} | {name} | `{space.format(sub)}` | {space.param_count(sub, task):,} "
                f"| {result.value:.3f} ± {result.std:.3f} | {result.repeats} |"
            )
    profiler.close()
    return rows, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup-steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None, help="keep the run here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_digits.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="gpnas-train-digits-"))
    work.mkdir(parents=True, exist_ok=True)
    run = work / "run"
    if run.exists():
        shutil.rmtree(run)
    space_file = work / "digits-3task.json"
    space_file.write_text(json.dumps(definition(args.patch_size), indent=2))
    space = space_from_definition(SpaceDefinition.model_validate(definition(args.patch_size)))
    assert isinstance(space, MultipathSpace)

    cli = train_args(args, space_file, run)
    began = time.perf_counter()
    done = subprocess.run([*gpnas_command(), *cli], capture_output=True, text=True)
    train_s = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"gpnas train failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    print(done.stdout)
    history = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["history"]
    gates = LearnedGates.load(run / "gates.json")
    rows, scores = score_rows(args, space, work, gates)

    verdicts = []
    for task in space.tasks:
        small = scores[task, "smallest"]
        ok = all(scores[task, name] > small for name in ("largest", "mid"))
        verdicts.append(
            f"`{task}`: largest {scores[task, 'largest']:.3f}, mid {scores[task, 'mid']:.3f} vs smallest "
            f"{small:.3f}: " + ("larger better" if ok else "**NOT better: train longer**")
        )
    depth = space.max_depth
    gate_rows = [
        f"| {task} | "
        + " | ".join(f"{p:.2f}" for p in gates.p_task[task])
        + f" | {''.join(p[0] for p in gates.ffn_paths(task))} |"
        for task in gates.tasks
    ]
    pairs = [
        f"`{a}`-`{b}` {gates.distance(a, b):.3f} ({gates.path_disagreements(a, b)} of {depth} layers differ)"
        for a, b in itertools.combinations(gates.tasks, 2)
    ]
    total = time.perf_counter() - start
    script = "python -m benchmarks.train_digits" + (
        f" --device {args.device}" if args.device != "cpu" else ""
    )
    script += " --amp" if args.amp else ""
    command = "gpnas " + " ".join(cli).replace(str(space_file), "digits-3task.json").replace(str(run), "run")
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    where = gpu or f"{os.cpu_count()} shared CPU cores, {args.threads} thread(s)"
    lines = [
        "### `gpnas train`: three digits tasks on one UFO 2.0 supernet",
        "",
        f"Command: `{script}` ({total:.0f} s in all on {where}), which runs",
        "",
        f"    {command}",
        "",
        "with `digits-3task.json` = " + f"`{json.dumps(definition(args.patch_size))}`",
        "",
        f"Training: {train_s:.0f} s. Data: scikit-learn's digits through the built-in `digits-ufo` data set "
        "(`low` = digits 0-4, `high` = 5-9, 5 classes each with a head; `retrieval` = all ten digits, no "
        "head: supervised contrastive loss, temperature 0.1). Per step one batch of every task; per task "
        "the sandwich rule (largest, smallest, 2 random paths, in-place distillation weight 0.5), per "
        "task and layer a hard Gumbel-softmax gate between the shared FFN and the task's expert (tau 5 -> "
        "0.5), AdamW with warm-up and cosine. Largest-path loss, first -> last epoch: "
        + ", ".join(f"{t} {history[0][t]:.2f} -> {history[-1][t]:.2f}" for t in space.tasks)
        + ".",
        "",
        "Scores on the validation split (`supernet-eval`, each task's metric: top-1 accuracy, or "
        "Recall@1 with every image a query against all the others); `± ` is the binomial standard "
        "error, `n` the images (queries). The first three rows of a task follow the task's gates "
        "(argmax `ffn_path` per layer); the last two override them on the largest subnet.",
        "",
        "| task | metric | subnet | arch | params | score | n |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Larger vs smallest (measured): " + "; ".join(verdicts) + ".",
        "",
        "Learned gates, P(task expert) per layer (`softmax(logits)[1]`, what the hard gate picks), and the "
        "argmax path (`t` = task expert, `s` = shared FFN):",
        "",
        "| task | " + " | ".join(f"L{i}" for i in range(depth)) + " | ffn_path |",
        "|---|" + "---|" * depth + "---|",
        *gate_rows,
        "",
        "Distance between tasks' gates (mean |ΔP| over the layers): " + "; ".join(pairs) + ".",
        "",
        "What following the gates is worth on the largest subnet (gates' path minus all shared FFNs): "
        + ", ".join(
            f"{t} {scores[t, 'largest'] - scores[t, 'largest, all shared']:+.3f}" for t in space.tasks
        )
        + ". An expert trains only on its task's batches and only when its gate picks it, so once a gate "
        "leans to the expert the shared FFN of that layer learns little for that task; searching "
        "`ffn_path` freely on such a supernet spends measurements on paths it never trained, which is "
        "what `supernet.fix_ffn_paths` / `sample_with_gates` avoid.",
        "",
    ]
    if not torch.cuda.is_available():
        lines += [
            "CUDA: `python -m benchmarks.train_digits --device cuda --amp` trains and evaluates on a GPU; "
            "this machine has none, so no CUDA numbers are reported here.",
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
