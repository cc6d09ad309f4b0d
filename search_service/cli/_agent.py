"""``gpnas agent`` (and ``gpnas-agent``): run a device agent that measures the service's jobs.

``gpnas-agent`` is this command alone, for chips without the server's stack: this module and what
it imports load neither torch nor the server (``tests/test_layers.py`` checks it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from ..errors import UserError
from ._options import ServerOption, TokenOption, require, run_console_app
from ._profile import DATA_DIR_HELP, LOCAL_CONFIG_HELP


def run_agent(
    server: ServerOption = None,
    device: str = typer.Option(..., "--device", help="registered device name this machine measures"),
    token: TokenOption = None,
    max_jobs: int | None = typer.Option(None, "--max-jobs", min=1, help="stop after this many jobs"),
    exit_when_idle: bool = typer.Option(False, "--exit-when-idle", help="stop when the queue is empty"),
    lease_seconds: int = typer.Option(60, "--lease-seconds", min=1, help="lease length per job, seconds"),
    lease_size: int = typer.Option(
        8, "--lease-size", min=1, max=64, help="jobs leased and measured as one batch"
    ),
    poll_interval: float = typer.Option(5.0, "--poll-interval", min=0.0, help="seconds between polls"),
    verbose: bool = typer.Option(True, "--verbose/--quiet", help="log each job to standard error"),
    config: Path | None = typer.Option(None, "--config", envvar="GPNAS_LOCAL_CONFIG", help=LOCAL_CONFIG_HELP),
    data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Lease batches of jobs for DEVICE, measure each batch with its registered profiler
    (latency: interleaved rounds), heartbeat while measuring and post every result; network
    errors are retried with backoff. The device's settings name files under this machine's
    data directory and datasets or supernets of its --config, never code or paths of the
    server's choosing. Needs --server and --token (or GPNAS_SERVER and GPNAS_TOKEN)."""
    server = require(server, "--server", "GPNAS_SERVER")
    token = require(token, "--token", "GPNAS_TOKEN")
    from profilers import LocalConfig
    from search_service.agent import AgentError, DeviceAgent

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    # One line per request (60 for the heartbeats of 10 jobs) would bury what was measured.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    agent = DeviceAgent(
        server,
        device,
        token,
        local=LocalConfig.load(config, data_dir),
        max_jobs=max_jobs,
        lease_size=lease_size,
        exit_when_idle=exit_when_idle,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
    )
    try:
        stats = agent.run()
    except AgentError as error:
        raise UserError(str(error)) from None
    except KeyboardInterrupt:
        # The job in hand is not lost: its lease expires and the service re-queues it.
        stats = agent.stats
    typer.echo(f"jobs done: {stats.done}, failed: {stats.failed}, lost to another agent: {stats.lost}")


def register(app: typer.Typer) -> None:
    app.command("agent")(run_agent)


def agent_app() -> typer.Typer:
    """``gpnas-agent``: ``gpnas agent``'s command alone, with its options."""
    app = typer.Typer(name="gpnas-agent", add_completion=False, pretty_exceptions_enable=False)
    app.command()(run_agent)
    return app


def main() -> None:
    """The ``gpnas-agent`` console script."""
    run_console_app(agent_app())
