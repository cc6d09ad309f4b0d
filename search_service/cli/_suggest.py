"""``gpnas suggest``: which subnets to measure next on a target, from a CSV of measurements."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import typer

from predictors import Predictor, TransferPredictor, create_strategy, list_strategies, transfer_prior
from supernet import Metric

from ..errors import UserError
from ._predict import _parse_archs, _read_csv, infer_metric, parse_metric_option, read_measurements
from ._spaces import resolve_space, space_help


def register(app: typer.Typer) -> None:
    @app.command("suggest")
    def _suggest(
        space: str = typer.Option(..., "--space", help=space_help()),
        train: Path = typer.Option(
            ..., "--train", help="CSV: column 'arch' plus one numeric column per device/task."
        ),
        target: str = typer.Option(
            ..., "--target", help="The device/task to measure next; a name not in TRAIN is a new one."
        ),
        n: int = typer.Option(..., "--n", min=1, help="How many subnets to suggest."),
        out: Path = typer.Option(..., "--out", help="Output CSV: column 'arch', best first."),
        candidates: Path | None = typer.Option(
            None,
            "--candidates",
            help="CSV with column 'arch' to choose from; default: TRAIN's archs not measured on TARGET.",
        ),
        strategy: str = typer.Option(
            "integrated-variance", "--strategy", help=f"One of: {', '.join(list_strategies())}."
        ),
        metric: str = typer.Option(
            "auto",
            "--metric",
            help="latency_ms, score, or auto (as for gpnas predict; a target with no values is a "
            "score if any other column is).",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for random picks and subsets."),
    ) -> None:
        """Suggest N subnets to measure on TARGET next.

        With fewer than 2 values of TARGET the other columns' transfer prior designs the picks (a
        new chip's first measurements); with more, the transfer GP's posterior does.
        """
        if strategy == "qlognehvi" or strategy not in list_strategies():
            raise UserError(
                f"--strategy {strategy!r} is not a single-target strategy; use random, max-variance "
                "or integrated-variance"
            )
        search_space = resolve_space(space)
        subnets, columns, Y = read_measurements(search_space, train)
        if target not in columns:
            columns.append(target)
            Y = torch.cat([Y, torch.full((len(Y), 1), float("nan"), dtype=torch.float64)], dim=1)
        t = columns.index(target)
        measured_rows = ~torch.isnan(Y[:, t])
        others = [j for j in range(Y.shape[1]) if j != t]
        if metric == "auto":
            metric = infer_metric(target, Y[:, t], search_space.tasks)
            if not bool(measured_rows.any()) and any(
                infer_metric(columns[j], Y[:, j], search_space.tasks) is Metric.SCORE for j in others
            ):
                metric = Metric.SCORE  # a new target is measured like the related columns
        else:
            metric = parse_metric_option(metric)
        measured = [s for s, m in zip(subnets, measured_rows.tolist(), strict=True) if m]
        if candidates is None:
            pool = [s for s, m in zip(subnets, measured_rows.tolist(), strict=True) if not m]
        else:
            header, body = _read_csv(candidates, "candidates")
            pool = _parse_archs(search_space, header, body, "candidates")
        chooser = create_strategy(strategy)
        model: Predictor | None = None
        if chooser.uses_transfer_prior:
            transfer = TransferPredictor(search_space, metric=metric, seed=seed)
            if len(measured) >= 2:
                model = transfer.fit_multi(subnets, Y, t)
            elif others:
                model = transfer_prior(search_space, metric, subnets, Y[:, others], seed=seed)
        picks = chooser.select(search_space, model, measured, n, candidates=pool, seed=seed)
        with out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["arch"])
            writer.writerows([search_space.format(s)] for s in picks)
        typer.echo(f"wrote {len(picks)} subnets to measure on {target!r} ({strategy}) to {out}")
