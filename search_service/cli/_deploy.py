"""``gpnas deploy``: the paths of several tasks deployed together on one chip, as a table.

Asks ``POST /v1/deployments/query`` of a running server (``--server``) or of the app built
in-process on a database (``--database-url``), so it prints exactly what the API answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from ..errors import UserError
from ._artifacts import fetch_artifact
from ._options import (
    DEFAULT_DATABASE_URL,
    DatabaseUrlOption,
    ServerOption,
    TokenOption,
    api_client,
    server_or_database,
    validated,
)
from ._spaces import space_help


def _per_task(values: list[float], tasks: list[str], option: str) -> Sequence[float | None]:
    """One value per task: as many as tasks, one for all, or none."""
    if not values:
        return [None] * len(tasks)
    if len(values) == 1:
        return values * len(tasks)
    if len(values) != len(tasks):
        raise UserError(
            f"give {option} once for all tasks or once per --task ({len(tasks)}), not {len(values)}"
        )
    return list(values)


def format_deployment(answer: dict[str, Any]) -> str:
    """The answer as an aligned table, one row per task, then the deployment's totals."""
    header = ("task", "arch", "score", "norm", "latency ms", "P(fit)", "params alone")
    rows = [
        (
            t["task"],
            t["arch"],
            f"{t['predicted']['score']:.4g} ± {t['predicted']['score_std']:.2g}",
            f"{t['predicted']['normalised_score']:.3f}",
            f"{t['predicted']['latency_ms']:.4g} ± {t['predicted']['latency_std']:.2g}",
            f"{t['predicted']['p_feasible']:.3f}",
            f"{t['params_alone']:,}",
        )
        for t in answer["tasks"]
    ]
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    saved = 1 - answer["params"] / answer["independent_params"]
    lines.append(
        f"deployment ({answer['input']} input): {answer['params']:,} parameters = "
        f"{answer['weight_mb']:.2f} MB as {answer['dtype']} ({saved:.0%} less than "
        f"{answer['independent_params']:,} as separate models); objective {answer['objective']:.4f} "
        f"({answer['method']}, {answer['evaluations']:,} evaluated)"
    )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def _deploy(
        ctx: typer.Context,
        space: str = typer.Option(..., "--space", help=space_help(server=True)),
        device: str = typer.Option(..., "--device", help="The chip (a registered device)."),
        task: list[str] = typer.Option(..., "--task", help="A task to deploy; repeat for each task."),
        budget: list[float] = typer.Option(
            [], "--budget", help="Latency budget in ms: once for all tasks, or once per --task in order."
        ),
        weight: list[float] = typer.Option(
            [], "--weight", help="Weight of a task's normalised score: once for all, or per --task."
        ),
        max_params: int | None = typer.Option(
            None, "--max-params", min=1, help="Parameter cap of the deployment."
        ),
        max_weight_mb: float | None = typer.Option(
            None, "--max-weight-mb", min=0.0, help="Cap on the weights' megabytes stored as --dtype."
        ),
        dtype: str = typer.Option("float32", "--dtype", help="float32, float16, bfloat16 or int8."),
        confidence: float = typer.Option(0.9, "--confidence", help="Required P(latency <= budget)."),
        input: str = typer.Option(
            "separate", "--input", help="separate: an image per task; shared: one image."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the API's JSON answer instead of a table."),
        export: Path | None = typer.Option(
            None, "--export", help="Also download the chosen deployment as one ONNX file to this path."
        ),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Choose the paths of several tasks on one chip under latency budgets and a memory cap."""
        from search_service.client import ApiError
        from search_service.schemas import DeploymentQueryRequest

        budgets = _per_task(budget, task, "--budget")
        weights = _per_task(weight, task, "--weight")
        body = validated(
            DeploymentQueryRequest,
            {
                "space": space,
                "device": device,
                "tasks": [
                    {"task": t, "latency_budget_ms": b} | ({} if w is None else {"weight": w})
                    for t, b, w in zip(task, budgets, weights, strict=True)
                ],
                "max_params": max_params,
                "max_weight_mb": max_weight_mb,
                "dtype": dtype,
                "confidence": confidence,
                "input": input,
            },
        )
        server, database = server_or_database(ctx, server, database_url)
        with api_client(server, token, database) as api:
            try:
                answer = api.query_deployment(body)
            except ApiError as error:
                raise UserError(str(error)) from None
            data = answer.model_dump(mode="json")
            typer.echo(json.dumps(data, indent=2) if as_json else format_deployment(data))
            if export is not None:
                # The answer says how to get its file: the body of POST /v1/artifacts, as it is.
                assert answer.artifact is not None
                fetch_artifact(api, answer.artifact, export, err=as_json)
