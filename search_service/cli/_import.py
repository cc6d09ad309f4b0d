"""``gpnas import-checkpoint``: UFO's released supernet (a PaddlePaddle checkpoint) as the state dict
of a gpnas supernet, with the space definition it fits and the gates UFO learnt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import typer

from ..errors import UserError

if TYPE_CHECKING:
    from supernet import ImportReport, UFOSpace

T = TypeVar("T")


def _names(value: str | None, what: str) -> list[str] | None:
    if value is None:
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise UserError(f"{what}: give one or more comma-separated values")
    return names


def _numbers(value: str | None, what: str, kind: Callable[[str], T]) -> list[T] | None:
    names = _names(value, what)
    if names is None:
        return None
    try:
        return [kind(name) for name in names]
    except ValueError:
        raise UserError(f"{what}: {value!r} is not a comma-separated list of numbers") from None


def _metrics(value: str | None) -> dict[str, str] | None:
    pairs = _names(value, "--metrics")
    if pairs is None:
        return None
    out = {}
    for pair in pairs:
        task, sep, metric = pair.partition("=")
        if not sep or not task.strip() or not metric.strip():
            raise UserError(f"--metrics: {pair!r} is not TASK=METRIC")
        out[task.strip()] = metric.strip()
    return out


def _gate_table(report: ImportReport) -> list[str]:
    """P(specific expert) per task and layer; ``*`` marks the expert UFO's evaluation runs."""
    p = report.gates.p_specific()
    paths = report.gates.paths()
    width = max(len(t) for t in report.gates.tasks)
    header = " ".join(f"{'L' + str(n):>6}" for n in range(p.shape[1]))
    lines = [f"{'task':<{width}} {header}"]
    for t, row in zip(report.gates.tasks, p.tolist(), strict=True):
        cells = " ".join(
            f"{value:5.2f}{'*' if path == 'task' else ' '}" for value, path in zip(row, paths[t], strict=True)
        )
        lines.append(f"{t:<{width}} {cells}")
    return lines


def _write(path: Path, write: Callable[[Path], object], what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as error:
        raise UserError(f"cannot write {what} {str(path)!r}: {error.strerror or error}") from None


def register(app: typer.Typer) -> None:
    @app.command("import-checkpoint")
    def import_checkpoint(
        sources: list[Path] = typer.Argument(
            ...,
            help="UFO's checkpoint (.pdparams / .pdmodel / .pkl / .npz): one merged file, or one file per "
            "task as the training ranks save them, in --tasks order.",
        ),
        out: Path = typer.Option(..., "--out", help="Destination of the supernet state dict (torch.save)."),
        tasks: str | None = typer.Option(
            None,
            "--tasks",
            help="The tasks in UFO's order (its config's task_names), comma-separated; default: the "
            "names of the checkpoint's patch_embeds.",
        ),
        space_out: Path | None = typer.Option(
            None, "--space-out", help="Write the space definition here (YAML, for `gpnas spaces add`)."
        ),
        head_dim: int = typer.Option(64, "--head-dim", min=1, help="UFO's predefined_head_dim."),
        name: str = typer.Option("ufo-import", "--name", help="Name of the space."),
        depths: str | None = typer.Option(
            None, "--depths", help="Depth choices, e.g. 12,11,10 (default: the depth and two below)."
        ),
        num_heads: str | None = typer.Option(
            None, "--num-heads", help="Head-count choices (default: the most heads and two below)."
        ),
        mlp_ratios: str | None = typer.Option(
            None, "--mlp-ratios", help="FFN ratio choices (default: the widest and 0.5, 1.0 below)."
        ),
        metrics: str | None = typer.Option(
            None,
            "--metrics",
            help="TASK=METRIC,... (default: face verification, person reid ..., else top1).",
        ),
        gates_out: Path | None = typer.Option(
            None, "--gates-out", help="Write the gates as a gates.json (gpnas train's), for the search."
        ),
    ) -> None:
        """Convert UFO's task-MoE supernet checkpoint into a gpnas supernet state dict.

        Every key is mapped and every shape checked (the first key that does not fit is named);
        the state dict loads into `build_supernet(space)` of the definition written to
        --space-out, as supernet-eval's `checkpoint` setting loads it. The per-task gates are
        printed: P(specific expert) per layer, `*` where UFO's evaluation runs the task's expert.
        """
        import torch

        from supernet import UFOSpace, import_ufo_checkpoint, space_from_definition

        state, report = import_ufo_checkpoint(
            sources,
            _names(tasks, "--tasks"),
            head_dim=head_dim,
            name=name,
            depths=_numbers(depths, "--depths", int),
            num_heads=_numbers(num_heads, "--num-heads", int),
            mlp_ratios=_numbers(mlp_ratios, "--mlp-ratios", float),
            metrics=_metrics(metrics),
        )
        space = space_from_definition(report.definition)
        assert isinstance(space, UFOSpace)  # the definition of a UFO checkpoint
        _write(out, lambda path: torch.save(state, path), "the state dict")
        params = sum(t.numel() for t in state.values())
        used = sum(len(keys.split(", ")) for keys, _, _ in report.mapping)
        typer.echo(
            f"wrote {out}: the supernet of space {space.name} ({len(state)} tensors, {params} parameters) "
            f"from {used} arrays of {len(sources)} file(s)"
        )
        for key, why in report.skipped.items():
            typer.echo(f"skipped {key}: {why}")
        for note in report.notes:
            typer.echo(f"note: {note}")
        if space_out is not None:
            text = report.definition.to_yaml()
            _write(space_out, lambda path: path.write_text(text, encoding="utf-8"), "the definition")
            typer.echo(
                f"wrote {space_out}: space {space.name} (register it with `gpnas spaces add {space_out}`)"
            )
        else:
            typer.echo("the space definition: --space-out writes it")
        if gates_out is not None:
            _write_gates(gates_out, report, space)
        typer.echo("gates: P(specific expert) per layer; * = the expert UFO's evaluation runs")
        for line in _gate_table(report):
            typer.echo("  " + line)
        typer.echo("UFO's evaluation paths (most heads, widest FFN):")
        for task in report.gates.tasks:
            typer.echo(f"  {task}: {report.eval_arch(space, task)}")


def _write_gates(path: Path, report: ImportReport, space: UFOSpace) -> None:
    """The gates as ``gpnas train``'s ``gates.json`` (per task P(task expert) per layer), which the
    search's gate helpers (``fix_ffn_paths``, ``ffn_path_log_prior``) read."""
    from supernet.training import LearnedGates

    p = report.gates.p_specific().tolist()
    gates = LearnedGates(space.name, {t: tuple(row) for t, row in zip(report.gates.tasks, p, strict=True)})
    _write(path, gates.save, "the gates")
    typer.echo(f"wrote {path}: the gates (gates.json)")
