"""``gpnas train``: train a UFO supernet on this machine's data (multi-task, chip stage, new task).

The data set is a *name* resolved on this machine, as ``supernet-eval``'s ``data`` setting is (the
local config's ``[datasets]`` or a ``gpnas.datasets`` entry point; built in: ``digits``,
``digits-ufo``). **Training data contract**: the name is a ``callable(task, split, ...)`` that
``gpnas train`` calls as ``factory(task, split="train")`` (plus ``batch_size=N`` when it takes that
keyword) and that returns an iterable of ``(inputs, labels)`` batches (or mappings / objects with
``inputs`` and ``labels``, e.g. :class:`profilers.EvalBatch`): a list (held in memory and
reshuffled every pass) or a ``DataLoader``. Its ``split="val"`` (``factory(task)``, as
``supernet-eval`` calls it) is the evaluation data. Labels are class indices for tasks with a head
and identities / classes for embedding tasks (contrastive loss).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import typer

from ..errors import UserError
from ._profile import LOCAL_CONFIG_HELP
from ._spaces import resolve_space, space_help

DATA_HELP = (
    "name of a training data set on this machine: callable(task, split='train'|'val'[, batch_size=N]) "
    "in the local config's [datasets] or a gpnas.datasets entry point (built in: digits, digits-ufo)"
)


def _keywords(fn: Callable[..., Any]) -> set[str] | None:
    """Keyword arguments ``fn`` takes (``None``: any, or its signature cannot be read)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name for name, p in parameters.items() if p.kind in keyword}


def training_data(name: str, tasks: list[str], batch_size: int, config: Path | None = None) -> dict[str, Any]:
    """Task -> training batches of data set ``name`` (the contract in the module docstring).

    Raises:
        UserError: ``name`` is no data set here, or it takes no ``split`` keyword.
    """
    from profilers import LocalConfig

    factory = LocalConfig.load(config).resolve_callable("dataset", name, "--data")
    keywords = _keywords(factory)
    if keywords is not None and "split" not in keywords:
        raise UserError(
            f"--data: data set {name!r} takes no 'split' keyword, so it has no training split; a "
            "training data set is callable(task, split='train'|'val'[, batch_size=N])"
        )
    options: dict[str, Any] = {"split": "train"}
    if keywords is None or "batch_size" in keywords:
        options["batch_size"] = batch_size
    return {task: factory(task, **options) for task in tasks}


def _stage(stage: str, task: str | None, new_task: str | None) -> tuple[str, str | None]:
    if stage not in ("multi", "chip"):
        raise UserError(f"--stage must be 'multi' or 'chip', got {stage!r}")
    if new_task is not None:
        if stage == "chip" or task is not None:
            raise UserError(
                "--new-task trains the new task's branch; give it without --stage chip and --task"
            )
        return "new-task", new_task
    if stage == "chip" and task is None:
        raise UserError("--stage chip trains one task's supernet: give --task")
    if stage == "multi" and task is not None:
        raise UserError("--task is for --stage chip (the multi-task stage trains every task)")
    return stage, task


def _gates_file(gates: Path | None, init: Path | None, kind: str) -> Path | None:
    """``--gates``, else (chip and new-task stages) a ``gates.json`` next to ``--init``."""
    if gates is not None:
        return gates
    if kind != "multi" and init is not None and (init.parent / "gates.json").is_file():
        return init.parent / "gates.json"
    return None


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        space: str = typer.Option(..., "--space", help="A UFO space. " + space_help()),
        data: str = typer.Option(..., "--data", help=DATA_HELP),
        epochs: int = typer.Option(..., "--epochs", min=1, help="passes over the data"),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="items per batch"),
        lr: float = typer.Option(1e-3, "--lr", help="peak AdamW learning rate"),
        weight_decay: float = typer.Option(0.05, "--weight-decay", help="AdamW weight decay of matrices"),
        warmup_steps: int = typer.Option(0, "--warmup-steps", min=0, help="linear warm-up before the cosine"),
        device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda or cuda:N"),
        amp: bool = typer.Option(False, "--amp", help="mixed precision (float16 autocast, CUDA only)"),
        checkpoint_dir: Path = typer.Option(
            Path("gpnas-train"), "--checkpoint-dir", help="where last.pt, supernet.pt and gates.json go"
        ),
        resume: bool = typer.Option(False, "--resume", help="continue the run of CHECKPOINT_DIR/last.pt"),
        seed: int = typer.Option(0, "--seed", help="seed of the weights, paths, gate noise, data order"),
        random_paths: int = typer.Option(2, "--random-paths", min=0, help="random paths per task and step"),
        tau_start: float = typer.Option(5.0, "--tau-start", help="gate temperature at the start"),
        tau_end: float = typer.Option(0.5, "--tau-end", help="gate temperature at the end"),
        distill_weight: float = typer.Option(
            0.5, "--distill-weight", help="weight of in-place distillation in the smaller paths' loss"
        ),
        stage: str = typer.Option("multi", "--stage", help="multi (all tasks, gates) or chip (one task)"),
        task: str | None = typer.Option(None, "--task", help="the task of --stage chip"),
        new_task: str | None = typer.Option(
            None, "--new-task", help="train a task added to the space on the --init supernet"
        ),
        init: Path | None = typer.Option(None, "--init", help="start from this supernet.pt or last.pt"),
        gates: Path | None = typer.Option(
            None, "--gates", help="gates.json of the multi stage (default: next to --init)"
        ),
        config: Path | None = typer.Option(
            None, "--config", envvar="GPNAS_LOCAL_CONFIG", help=LOCAL_CONFIG_HELP
        ),
        threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads"),
        progress: bool | None = typer.Option(
            None, "--progress/--no-progress", help="progress bar on stderr (default: on a terminal)"
        ),
    ) -> None:
        """Train a UFO supernet: per-task Gumbel gates between the shared FFN and each task's expert,
        the sandwich rule with in-place distillation, AdamW with warm-up and cosine; last.pt every
        epoch, supernet.pt (what supernet-eval loads), gates.json and space-gated.yaml (the space with
        every task's ffn_path fixed as its gates chose) at the end."""
        from supernet import LearnedGates, TrainConfig, UFOSpace, train_supernet
        from supernet.training import gate_table

        kind, trained = _stage(stage, task, new_task)
        search_space = resolve_space(space)
        if not isinstance(search_space, UFOSpace):
            raise UserError(f"space {search_space.name!r} has no supernet to train; only UFO spaces do")
        if kind == "new-task" and init is None:
            raise UserError("--new-task extends a trained supernet: give --init SUPERNET.pt")
        if threads is not None:
            torch.set_num_threads(threads)
        train_config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            random_paths=random_paths,
            tau_start=tau_start,
            tau_end=tau_end,
            distill_weight=distill_weight,
            amp=amp,
            device=device,
            seed=seed,
            stage=kind,  # type: ignore[arg-type]  # checked by _stage
            task=trained,
        )
        tasks = [trained] if trained is not None else list(search_space.tasks)
        batches = training_data(data, tasks, batch_size, config)
        gates_path = _gates_file(gates, init, kind)
        learned = LearnedGates.load(gates_path) if gates_path is not None else None
        started = time.perf_counter()
        result = train_supernet(
            search_space,
            batches,
            train_config,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            init=init,
            gates=learned,
            progress=progress,
            log=typer.echo,
        )
        seconds = time.perf_counter() - started
        typer.echo(f"trained {result.epochs} epochs ({result.steps} steps) in {seconds:.1f} s on {device}")
        if result.gates is not None:
            what = "fixed ffn_path (from the gates)" if kind == "chip" else "P(task expert) per layer"
            typer.echo(f"gates, {what}:\n{gate_table(result.gates)}")
        for name, path in result.files.items():
            typer.echo(f"wrote {name}: {path}")
