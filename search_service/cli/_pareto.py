"""``gpnas pareto``: print (and optionally plot) the stored predicted front of (space, task, device).

The front comes from ``GET /v1/pareto``: from a running server (``--server``), or from a database
read in-process through the same route (``--database-url``), so both print exactly what the API
serves: on (score, latency) or (``--objective params``) on (score, parameters), optionally of
the subnets within ``--max-params``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

import httpx
import typer

from ._options import DEFAULT_DATABASE_URL, DatabaseUrlOption, ServerOption, server_or_database

DEFAULT_SERVER = "http://127.0.0.1:8000"
_PAGE = 1000  # the route's largest page
Objective = Literal["latency", "params"]


async def _fetch_pages(
    client: httpx.AsyncClient,
    space: str,
    task: str,
    device: str,
    objective: Objective = "latency",
    max_params: int | None = None,
) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    offset, version, total = 0, None, None
    while total is None or offset < total:
        params: dict[str, str | int] = {
            "space": space,
            "task": task,
            "device": device,
            "limit": _PAGE,
            "offset": offset,
            "objective": objective,
        }
        if max_params is not None:
            params["max_params"] = max_params
        response = await client.get("/v1/pareto", params=params)
        if response.status_code >= 400:
            raise ValueError(f"GET /v1/pareto answered {response.status_code}: {_detail(response)}")
        page = response.json()
        if version is not None and page["version"] != version:
            # A newer front was stored while paging; start over so all points come from one version.
            points, offset, version, total = [], 0, None, None
            continue
        version, total = page["version"], page["total"]
        points.extend(page["points"])
        if not page["points"]:
            break
        offset += len(page["points"])
    return {"points": points, "version": version, "total": total}


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(detail, list):  # validation errors: name each field and its reason
        return "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return str(detail)


def fetch_front(
    space: str,
    task: str,
    device: str,
    *,
    server: str | None = None,
    database: str | None = None,
    objective: Objective = "latency",
    max_params: int | None = None,
) -> dict[str, Any]:
    """The stored front as ``{"points": [...], "version": int, "total": int}``, every page fetched.

    Args:
        space, task, device: What to show.
        server: Base URL of a running service (default :data:`DEFAULT_SERVER`).
        database: SQLAlchemy URL; the app is built in-process on it (no server needed, read only).
        objective: ``latency`` for the (score, latency) front, ``params`` for (score, parameters).
        max_params: Show the front of the subnets with at most this many parameters.

    Raises:
        ValueError: If the server cannot be reached or answers with an error (its detail is included),
            or the database is not migrated.
    """

    async def run() -> dict[str, Any]:
        if database is not None:
            from search_service.core import SchemaOutdatedError, Settings
            from search_service.main import create_app

            try:
                app = create_app(Settings(database_url=database, refit_worker=False))
            except SchemaOutdatedError as error:  # one line saying to run `gpnas db upgrade`
                raise ValueError(str(error)) from None
            try:
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://gpnas.local"
                ) as client:
                    return await _fetch_pages(client, space, task, device, objective, max_params)
            finally:
                app.state.engine.dispose()
        url = server or DEFAULT_SERVER
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
                return await _fetch_pages(client, space, task, device, objective, max_params)
        except httpx.TransportError as error:
            raise ValueError(
                f"cannot reach the gpnas server at {url} ({error}); start it with `gpnas serve` "
                "or read a database directly with --database-url URL"
            ) from None

    return asyncio.run(run())


def format_table(points: list[dict[str, Any]]) -> str:
    """The front as an aligned text table (one row per point, ordered as given)."""
    header = ("#", "arch", "score", "latency ms", "params", "measured")
    rows = [
        (
            str(i),
            p["arch"],
            f"{p['score']:.4g} ± {p['score_std']:.2g}",
            f"{p['latency_ms']:.4g} ± {p['latency_std']:.2g}",
            "-" if p.get("params") is None else f"{p['params']:,}",
            "yes" if p.get("measured") else "no",
        )
        for i, p in enumerate(points, start=1)
    ]
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if k == 1 else cell.rjust(w)
            for k, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_front(
    points: list[dict[str, Any]], path: Path, title: str, objective: Objective = "latency"
) -> None:
    """Save the front (latency, or parameters for ``objective="params"``, on x; score on y; ±1 std
    bars; measured subnets filled) as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    x_key = "latency_ms" if objective == "latency" else "params"
    x = [p[x_key] for p in points]
    ax.step(x, [p["score"] for p in points], where="post", color="0.6", linewidth=1, zorder=1)
    styles: tuple[tuple[bool, dict[str, Any]], ...] = ((False, {"mfc": "white"}), (True, {}))
    for measured, style in styles:
        sel = [p for p in points if bool(p.get("measured")) == measured]
        if sel:
            ax.errorbar(
                [p[x_key] for p in sel],
                [p["score"] for p in sel],
                xerr=[p["latency_std"] for p in sel] if objective == "latency" else None,
                yerr=[p["score_std"] for p in sel],
                fmt="o",
                color="C0",
                ecolor=(0.12, 0.47, 0.71, 0.35),  # faint bars keep the front itself readable
                elinewidth=0.8,
                capsize=2,
                markersize=5,
                zorder=2,
                label="measured" if measured else "predicted only",
                **style,
            )
    ax.set_xlabel("predicted latency (ms)" if objective == "latency" else "parameters")
    ax.set_ylabel("predicted score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def register(app: typer.Typer) -> None:
    @app.command("pareto")
    def _pareto(
        ctx: typer.Context,
        space: str = typer.Option(..., "--space", help="Search space, e.g. ufo-track2."),
        task: str = typer.Option(..., "--task", help="Task whose predicted score is maximised."),
        device: str = typer.Option(..., "--device", help="Device whose predicted latency is minimised."),
        plot: Path | None = typer.Option(None, "--plot", help="Also save the front as an image (PNG)."),
        objective: str = typer.Option(
            "latency",
            "--objective",
            help="What the score is traded against: latency (ordered by latency) or params "
            "(the score/parameter-count front, ordered by parameters).",
        ),
        max_params: int | None = typer.Option(
            None,
            "--max-params",
            min=1,
            help="Show the front of the subnets with at most this many parameters.",
        ),
        server: ServerOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
        old_database: str | None = typer.Option(
            None, "--database", hidden=True, help="Deprecated name of --database-url."
        ),
    ) -> None:
        """Show the stored predicted Pareto front of SPACE for TASK on DEVICE, ordered by latency
        (or, with --objective params, the score/parameters front ordered by parameters).

        Asks the service at --server, or reads --database-url in-process: give one of them (an
        option on the command line wins over the other's environment variable)."""
        if old_database is not None:
            typer.echo("warning: --database is deprecated; use --database-url", err=True)
        if objective not in ("latency", "params"):
            raise typer.BadParameter(
                f"must be latency or params, got {objective!r}", param_hint="--objective"
            )
        chosen: Objective = "latency" if objective == "latency" else "params"
        server, database = server_or_database(ctx, server, database_url, old_database=old_database)
        front = fetch_front(
            space, task, device, server=server, database=database, objective=chosen, max_params=max_params
        )
        points = front["points"]
        against = "latency" if chosen == "latency" else "parameters"
        cap = "" if max_params is None else f", at most {max_params:,} parameters"
        typer.echo(
            f"{space} front v{front['version']} on score and {against}: {len(points)} subnets, task {task}, "
            f"device {device}{cap} (predicted mean ± std)"
        )
        typer.echo(format_table(points))
        if plot is not None:
            title = f"{space}: {task} on {device} (front v{front['version']})"
            plot_front(points, plot, title, chosen)
            typer.echo(f"plot written to {plot}")
