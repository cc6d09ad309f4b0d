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

from ..errors import UserError
from ._spaces import resolve_space, space_help

_SCORE_NAME = re.compile(r"rank|score|acc|top1|top5|map|mAP|miou|f1", re.IGNORECASE)


def _read_csv(path: Path, label: str) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise UserError(f"{label} file {str(path)!r} does not exist")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise UserError(f"{label} file {str(path)!r} is empty")
    header = [name.strip() for name in rows[0]]
    if "arch" not in header:
        raise UserError(f"{label} file {str(path)!r} has no 'arch' column (header: {','.join(header)})")
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
            raise UserError(
                f"{label} row {i} (line {i + 1}), column 'arch': unknown arch {cell!r}: {error}"
            ) from None
    return subnets


def read_measurements(space: SearchSpace, path: Path) -> tuple[list[Subnet], list[str], torch.Tensor]:
    """Subnets, column names and an ``n x T`` float64 matrix (NaN = empty cell) from TRAIN.csv.

    Raises:
        UserError: Naming the row and column of an unknown arch or a non-numeric cell.
    """
    header, body = _read_csv(path, "train")
    subnets = _parse_archs(space, header, body, "train")
    columns = [name for name in header if name != "arch"]
    if not columns:
        raise UserError("train file has no numeric columns besides 'arch'")
    Y = torch.full((len(body), len(columns)), float("nan"), dtype=torch.float64)
    for i, row in enumerate(body, start=1):
        if len(row) > len(header):
            raise UserError(
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
                raise UserError(
                    f"train row {i} (line {i + 1}), column {name!r}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise UserError(
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
    """``--metric``'s value as a metric (a UserError naming the option otherwise)."""
    try:
        return Metric.parse(value)
    except ValueError:
        raise UserError(f"--metric must be auto, latency_ms or score, got {value!r}") from None


def default_models() -> dict[Metric, str]:
    """The predictor ``gpnas predict`` uses without ``--model``, per metric: the service's
    (``predictor_latency`` and ``predictor_score`` in :mod:`search_service.core.config`, set by
    ``GPNAS_PREDICTOR_LATENCY`` / ``GPNAS_PREDICTOR_SCORE``; the defaults were chosen on the
    held-out-chip table of benchmarks/results/new_chip.md and the CV table of
    benchmarks/results/accuracy_models.md)."""
    from search_service.core.config import Settings

    settings = Settings()
    return {metric: settings.predictor_for(metric) for metric in Metric}


def model_listing(defaults: dict[Metric, str]) -> str:
    """The ``--model list`` text: one registered predictor a line, each metric's default marked."""
    lines = []
    for name in list_predictors():
        related = " (uses the other columns)" if predictor_class(name).uses_related_targets else ""
        marks = "".join(f"  [default for {metric}]" for metric, model in defaults.items() if model == name)
        lines.append(f"{name}{related}{marks}")
    return "\n".join(lines)


def cross_validate(
    space: SearchSpace,
    model: str,
    options: dict[str, object],
    subnets: list[Subnet],
    Y: torch.Tensor,
    target: int,
    folds: int,
    seed: int,
) -> list[float]:
    """Kendall tau of ``model`` on each of ``folds`` folds of the rows with a target value.

    A fold's rows lose their target value (their other columns stay, as for a new chip or task
    measured on some subnets only); the model is fitted with ``fit_multi`` on the rest.

    Raises:
        UserError: If ``folds`` < 2 or there are fewer than ``2 * folds`` target values.
    """
    import numpy as np
    from scipy.stats import kendalltau

    rows = torch.nonzero(~torch.isnan(Y[:, target])).squeeze(-1).numpy()
    if folds < 2:
        raise UserError(f"--cv must be at least 2, got {folds}")
    if len(rows) < 2 * folds:
        raise UserError(f"--cv {folds} needs at least {2 * folds} target values, got {len(rows)}")
    order = rows[np.random.default_rng(seed).permutation(len(rows))]
    taus = []
    for k in range(folds):
        held = np.sort(order[k::folds])
        Ym = Y.clone()
        Ym[torch.as_tensor(held), target] = float("nan")
        predictor = create_predictor(model, space, **options).fit_multi(subnets, Ym, target)
        mean, _ = predictor.predict([subnets[i] for i in held])
        tau = kendalltau(mean.numpy(), Y[torch.as_tensor(held), target].numpy())[0]
        taus.append(float(tau) if math.isfinite(tau) else 0.0)
    return taus


def _required(value: object, option: str) -> None:
    if value is None:
        raise UserError(f"missing option {option} (`gpnas predict --help` lists them)")


def register(app: typer.Typer) -> None:
    defaults = default_models()

    @app.command("predict")
    def _predict(
        space: str | None = typer.Option(None, "--space", help=space_help() + " Required."),
        train: Path | None = typer.Option(
            None, "--train", help="CSV: column 'arch' plus one numeric column per device/task. Required."
        ),
        query: Path | None = typer.Option(
            None, "--query", help="CSV with column 'arch': the subnets to predict. Required."
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Output CSV: arch,mean,std in the query's order. Required."
        ),
        target: str | None = typer.Option(None, "--target", help="The TRAIN column to predict. Required."),
        model: str | None = typer.Option(
            None,
            "--model",
            help=f"Predictor name (default: the service's for the metric, {defaults[Metric.LATENCY]} for "
            f"latency_ms, chosen on held-out chips (benchmarks/results/new_chip.md), and "
            f"{defaults[Metric.SCORE]} for scores, chosen by UFO CV "
            "(benchmarks/results/accuracy_models.md)); `--model list` prints every name and exits. "
            "Models that use the other columns learn from them as related outputs; the others fit "
            "the target column alone. Known: " + ", ".join(list_predictors()) + ".",
        ),
        metric: str = typer.Option(
            "auto",
            "--metric",
            help="latency_ms (log scale) or score (rank-Gauss scale); auto: score when the column "
            "names a task of the space, a value is <= 0 or the name looks like a score (rank, acc, "
            "score, ...), else latency_ms.",
        ),
        cv: int = typer.Option(
            0,
            "--cv",
            help="If K >= 2: first print the K-fold CV Kendall tau of the model on the target's TRAIN "
            "rows (each fold's target values hidden, its other columns kept), then predict.",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed for subset choices and the CV folds."),
    ) -> None:
        """Predict COLUMN for every arch of QUERY.csv with mean and std, from TRAIN.csv."""
        if model == "list":
            typer.echo(model_listing(default_models()))
            return
        for value, option in ((space, "--space"), (train, "--train"), (query, "--query"), (out, "--out"),
                              (target, "--target")):  # fmt: skip
            _required(value, option)
        assert space is not None
        assert train is not None
        assert query is not None
        assert out is not None
        assert target is not None
        search_space = resolve_space(space)
        if model is not None and model not in list_predictors():
            raise UserError(
                f"--model {model!r} is unknown; known: {', '.join(list_predictors())} (or `--model list`)"
            )
        subnets, columns, Y = read_measurements(search_space, train)
        if target not in columns:
            raise UserError(
                f"--target {target!r} is not a column of the train file; columns: {', '.join(columns)}"
            )
        t = columns.index(target)
        measured = ~torch.isnan(Y[:, t])
        if int(measured.sum()) == 0:
            raise UserError(f"train column {target!r} has no values: nothing to fit")
        if int(measured.sum()) < 2:
            raise UserError(f"train column {target!r} has only 1 value; at least 2 are needed")
        auto = metric == "auto"
        metric = infer_metric(target, Y[:, t], search_space.tasks) if auto else parse_metric_option(metric)
        if metric is Metric.LATENCY and (Y[measured, t] <= 0).any():
            row = int(torch.nonzero(measured & (Y[:, t] <= 0))[0]) + 1
            raise UserError(
                f"train row {row} (line {row + 1}), column {target!r}: latency_ms must be positive"
            )
        if model is None:
            model = default_models()[metric]
        q_header, q_body = _read_csv(query, "query")
        queries = _parse_archs(search_space, q_header, q_body, "query")
        options: dict[str, object] = {"metric": metric}
        if "seed" in inspect.signature(predictor_class(model)).parameters:
            options["seed"] = seed
        if cv:
            taus = cross_validate(search_space, model, options, subnets, Y, t, cv, seed)
            mean_tau = sum(taus) / len(taus)
            spread = (sum((x - mean_tau) ** 2 for x in taus) / max(len(taus) - 1, 1)) ** 0.5
            typer.echo(
                f"cv: {cv}-fold Kendall tau of {model} on {target!r} ({int(measured.sum())} values): "
                f"{mean_tau:.4f} ± {spread:.4f} (folds: {', '.join(f'{x:.3f}' for x in taus)})"
            )
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
