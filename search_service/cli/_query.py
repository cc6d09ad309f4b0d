"""``gpnas query``: the best subnet of a task that meets a device's latency budget (the main job).

Asks ``POST /v1/query`` of a running server (``--server``) or of the app built in-process on a
database (``--database-url``), so it prints exactly what the API answers.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from ..errors import UserError
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


def format_answer(answer: dict[str, Any], budget_ms: float) -> str:
    """The answer in a few lines: the arch, its predictions, and its size."""
    predicted = answer["predicted"]
    size = "" if answer["params"] is None else f"{answer['params']:,} parameters"
    if answer["macs"] is not None:
        size += f", {answer['macs'] / 1e9:.2f} GMACs"
    return "\n".join(
        [
            answer["arch"],
            f"  score    {predicted['score']:.4g} ± {predicted['score_std']:.2g}",
            f"  latency  {predicted['latency_ms']:.4g} ± {predicted['latency_std']:.2g} ms; "
            f"P(<= {budget_ms:g} ms) = {predicted['p_feasible']:.3f}",
            *([f"  size     {size}"] if size else []),
            f"  front version {answer['front_version']}",
        ]
    )


def register(app: typer.Typer) -> None:
    @app.command("query")
    def _query(
        ctx: typer.Context,
        space: str = typer.Option(..., "--space", help=space_help(server=True)),
        task: str = typer.Option(..., "--task", help="The task whose score to maximise."),
        device: str = typer.Option(..., "--device", help="The chip (a registered device)."),
        budget: float = typer.Option(..., "--budget", help="Latency budget in ms."),
        confidence: float = typer.Option(0.9, "--confidence", help="Required P(latency <= budget)."),
        max_params: int | None = typer.Option(
            None, "--max-params", min=1, help="Choose only among subnets with at most this many parameters."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the API's JSON answer."),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """The best subnet of TASK on DEVICE within a latency budget, with probability CONFIDENCE."""
        from search_service.client import ApiError
        from search_service.schemas import QueryRequest

        request = {"space": space, "task": task, "device": device, "latency_budget_ms": budget}
        body = validated(QueryRequest, request | {"confidence": confidence, "max_params": max_params})
        server, database = server_or_database(ctx, server, database_url)
        try:
            with api_client(server, token, database) as api:
                answer = api.query(body)
        except ApiError as error:
            raise UserError(str(error)) from None
        data = answer.model_dump(mode="json")
        typer.echo(json.dumps(data, indent=2) if as_json else format_answer(data, budget))
