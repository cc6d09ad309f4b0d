"""``gpnas predict``: fit a predictor on a CSV of measurements and predict a target column."""

from __future__ import annotations

import csv
import inspect
import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import typer

from predictors import create_predictor, list_predictors, predictor_class
from supernet import Metric, SearchSpace, Subnet

from ._spaces import SPACE_HELP, resolve_space

_SCORE_NAME = re.compile(r"rank|score|acc|top1|top5|map|mAP|miou|f1", re.IGNORECASE)


def _read_csv(path: Path, label: str) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise ValueError(f"{label} file {str(path)!r} does not exist")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{label} file {str(path)!r} is empty")
    header = [name.strip() for name in rows[0]]
    if "arch" not in header:
        raise ValueError(f"{label} file {str(path)!r} has no 'arch' column (header: {','.join(header)})")
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    return header, body


def _parse_archs(space: SearchSpace, header: list[str], body: list[list[str]], label: str) -> list[Subnet]:
    column = header.index("arch")
    subnets = []
    for i, row in enumerate(body, start=1):
        cell = row[column].strip() if column < len(row) else ""
        try:
            subnets.append(space.parse(cell))
        except ValueError as error:
            raise ValueError(
                f"{label} row {i} (line {i + 1}), column 'arch': unknown arch {cell!r}: {error}"
            ) from None
    return subnets


def read_measurements(space: SearchSpace, path: Path) -> tuple[list[Subnet], list[str], torch.Tensor]:
    """Subnets, column names and an ``n x T`` float64 matrix (NaN = empty cell) from TRAIN.csv.

    Raises:
        ValueError: Naming the row and column of an unknown arch or a non-numeric cell.
    """
    header, body = _read_csv(path, "train")
    subnets = _parse_archs(space, header, body, "train")
    columns = [name for name in header if name != "arch"]
    if not columns:
        raise ValueError("train file has no numeric columns besides 'arch'")
    Y = torch.full((len(body), len(columns)), float("nan"), dtype=torch.float64)
    for i, row in enumerate(body, start=1):
        if len(row) > len(header):
            raise ValueError(
                f"train row {i} (line {i + 1}) has {len(row)} cells but the header has {len(header)}"
            )
        for c, name in enumerate(columns):
            position = header.index(name)
            cell = row[position].strip() if position < len(row) else ""
            if cell == "":
                continue
            try:
                value = float(cell)
            except ValueError:
                raise ValueError(
                    f"train row {i} (line {i + 1}), column {name!r}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise ValueError(
                    f"train row {i} (line {i + 1}), column {name!r}: {cell!r} is not a finite number"
                )
            Y[i - 1, c] = value
    return subnets, columns, Y


def infer_metric(name: str, values: torch.Tensor, tasks: Sequence[str]) -> Metric:
    """The metric of a TRAIN.csv column for ``--metric auto``.

    Args:
        name: The column name.
        values: The column's values, NaN where empty.
        tasks: The search space's task names.

    Returns:
        ``score`` for a column named after one of ``tasks``, with a non-positive value or with a
        score-like name (rank, acc, ...); else ``latency_ms``.
    """
    # A task column holds scores even when its name and values look like a latency's, e.g. the
    # track-2 ranks of a subset that happens to hold no rank 0.
    if name in tasks:
        return Metric.SCORE
    observed = values[~torch.isnan(values)]
    if (observed <= 0).any() or _SCORE_NAME.search(name):
        return Metric.SCORE
    return Metric.LATENCY


def parse_metric_option(value: str) -> Metric:
    """``--metric``'s value as a metric (ValueError naming the option otherwise)."""
    try:
        return Metric.parse(value)
    except ValueError:
        raise ValueError(f"--metric must be auto, latency_ms or score, got {value!r}") from None


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def _predict(
        space: str = typer.Option(..., "--space", help=SPACE_HELP),
        train: Path = typer.Option(
            ..., "--train", help="CSV: column 'arch' plus one numeric column per device/task."
        ),
        query: Path = typer.Option(..., "--query", help="CSV with column 'arch': the subnets to predict."),
        out: Path = typer.Option(..., "--out", help="Output CSV: arch,mean,std in the query's order."),
        target: str = typer.Option(..., "--target", help="The TRAIN column to predict."),
        model: str = typer.Option(
            "gpnas-transfer",
            "--model",
            help="Predictor name; the default uses the other columns as related outputs. "
            "Others fit the target column alone.",
        ),
        metric: str = typer.Option(
            "auto",
            "--metric",
            help="latency_ms (log scale) or score (rank-Gauss scale); auto: score when the column "
            "names a task of the space, a value is <= 0 or the name looks like a score (rank, acc, "
            "score, ...), else latency_ms.",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for subset choices."),
    ) -> None:
        """Predict COLUMN for every arch of QUERY.csv with mean and std, from TRAIN.csv."""
        search_space = resolve_space(space)
        if model not in list_predictors():
            raise ValueError(f"--model {model!r} is unknown; known: {', '.join(list_predictors())}")
        subnets, columns, Y = read_measurements(search_space, train)
        if target not in columns:
            raise ValueError(
                f"--target {target!r} is not a column of the train file; columns: {', '.join(columns)}"
            )
        t = columns.index(target)
        measured = ~torch.isnan(Y[:, t])
        if int(measured.sum()) == 0:
            raise ValueError(f"train column {target!r} has no values: nothing to fit")
        if int(measured.sum()) < 2:
            raise ValueError(f"train column {target!r} has only 1 value; at least 2 are needed")
        if metric == "auto":
            metric = infer_metric(target, Y[:, t], search_space.tasks)
        else:
            metric = parse_metric_option(metric)
        if metric is Metric.LATENCY and (Y[measured, t] <= 0).any():
            row = int(torch.nonzero(measured & (Y[:, t] <= 0))[0]) + 1
            raise ValueError(
                f"train row {row} (line {row + 1}), column {target!r}: latency_ms must be positive"
            )
        q_header, q_body = _read_csv(query, "query")
        queries = _parse_archs(search_space, q_header, q_body, "query")
        options: dict[str, object] = {"metric": metric}
        if "seed" in inspect.signature(predictor_class(model)).parameters:
            options["seed"] = seed
        # Predictors that use related targets learn from the other columns; the rest fit column t.
        predictor = create_predictor(model, search_space, **options).fit_multi(subnets, Y, t)
        mean, std = predictor.predict(queries) if queries else (torch.zeros(0), torch.zeros(0))
        arch_column = q_header.index("arch")
        with out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["arch", "mean", "std"])
            for query_row, m, s in zip(q_body, mean.tolist(), std.tolist(), strict=True):
                writer.writerow([query_row[arch_column].strip(), f"{m:.6g}", f"{s:.6g}"])
        typer.echo(f"wrote {len(queries)} predictions of {target!r} ({metric}, model {model}) to {out}")
