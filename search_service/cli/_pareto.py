"""``gpnas pareto``: print (and optionally plot) the stored predicted front of (space, task, device).

The front comes from ``GET /v1/pareto`` through the typed client: of a running server
(``--server``), or of the app built in-process on a database (``--database-url``), so both print
exactly what the API serves: on (score, latency) or (``--objective params``) on (score,
parameters), optionally of the subnets within ``--max-params``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UserError
from ._options import DEFAULT_DATABASE_URL, DatabaseUrlOption, ServerOption, api_client, server_or_database

if TYPE_CHECKING:
    from search_service.client import GpnasClient
    from search_service.schemas import FrontObjectiveName, ParetoPoint

_PAGE = 1000  # the route's largest page


@dataclass(frozen=True)
class StoredFront:
    """Every point of one stored front version, as ``GET /v1/pareto`` pages them.

    Attributes:
        points: The front's points, ordered by the objective.
        version: The front's version.
    """

    points: list[ParetoPoint]
    version: int


def fetch_front(
    api: GpnasClient,
    space: str,
    task: str,
    device: str,
    objective: FrontObjectiveName = "latency",
    max_params: int | None = None,
) -> StoredFront:
    """Every page of the stored front, all of one version (paging starts over if a newer one is
    stored meanwhile).

    Args:
        api: The client of a server, or of the app built in-process.
        space, task, device: What to show.
        objective: ``latency`` for the (score, latency) front, ``params`` for (score, parameters).
        max_params: Show the front of the subnets with at most this many parameters.

    Raises:
        ApiError: The service answered with an error (its detail says why).
        ServerUnreachable: The server does not answer.
    """
    points: list[ParetoPoint] = []
    version: int | None = None
    while True:
        page = api.pareto(space, task, device, _PAGE, len(points), objective=objective, max_params=max_params)
        if version is not None and page.version != version:
            # A newer front was stored while paging; start over so all points come from one version.
            points, version = [], None
            continue
        version = page.version
        points.extend(page.points)
        if not page.points or len(points) >= page.total:
            return StoredFront(points, version)


def format_table(points: list[ParetoPoint]) -> str:
    """The front as an aligned text table (one row per point, ordered as given)."""
    header = ("#", "arch", "score", "latency ms", "params", "measured")
    rows = [
        (
            str(i),
            p.arch,
            f"{p.score:.4g} ± {p.score_std:.2g}",
            f"{p.latency_ms:.4g} ± {p.latency_std:.2g}",
            "-" if p.params is None else f"{p.params:,}",
            "yes" if p.measured else "no",
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
    points: list[ParetoPoint], path: Path, title: str, objective: FrontObjectiveName = "latency"
) -> None:
    """Save the front (latency, or parameters for ``objective="params"``, on x; score on y; ±1 std
    bars; measured subnets filled) as an image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    x_key = "latency_ms" if objective == "latency" else "params"
    x = [getattr(p, x_key) for p in points]
    ax.step(x, [p.score for p in points], where="post", color="0.6", linewidth=1, zorder=1)
    styles: tuple[tuple[bool, dict[str, Any]], ...] = ((False, {"mfc": "white"}), (True, {}))
    for measured, style in styles:
        sel = [p for p in points if p.measured == measured]
        if sel:
            ax.errorbar(
                [getattr(p, x_key) for p in sel],
                [p.score for p in sel],
                xerr=[p.latency_std for p in sel] if objective == "latency" else None,
                yerr=[p.score_std for p in sel],
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
        from search_service.client import ApiError, ServerUnreachable

        chosen: FrontObjectiveName = "latency" if objective == "latency" else "params"
        server, database = server_or_database(ctx, server, database_url, old_database=old_database)
        try:
            with api_client(server, None, database) as api:
                front = fetch_front(api, space, task, device, chosen, max_params)
        except ServerUnreachable as error:
            raise UserError(
                f"cannot reach the gpnas server at {server} ({error.last}); start it with `gpnas serve` "
                "or read a database directly with --database-url URL"
            ) from None
        except ApiError as error:
            raise UserError(str(error)) from None
        points = front.points
        against = "latency" if chosen == "latency" else "parameters"
        cap = "" if max_params is None else f", at most {max_params:,} parameters"
        typer.echo(
            f"{space} front v{front.version} on score and {against}: {len(points)} subnets, task {task}, "
            f"device {device}{cap} (predicted mean ± std)"
        )
        typer.echo(format_table(points))
        if plot is not None:
            title = f"{space}: {task} on {device} (front v{front.version})"
            plot_front(points, plot, title, chosen)
            typer.echo(f"plot written to {plot}")
