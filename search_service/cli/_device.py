"""``gpnas device add``: a chip onboarded in one command. It registers the device, starts its
cost-stratified latency campaign, makes its device token and prints, last, the two lines to run on
the chip (:func:`search_service.services.onboarding.onboard_device` does the work)."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UserError
from ._options import (
    DEFAULT_DATABASE_URL,
    DatabaseUrlOption,
    ServerOption,
    TokenOption,
    api_client,
    server_or_database,
)
from ._profile import parse_settings

if TYPE_CHECKING:
    from pydantic import ValidationError

    from search_service.services.onboarding import Onboarded

AGENT_INSTALL = 'pip install "gpnas[agent]"'
"""How a chip installs the agent: without torch or the server's dependencies."""

# 20 subnets: on HELP's protocol the transfer model reached a Spearman rank correlation of about
# 0.93 at k = 20, and the single-task GP (a chip with no related chip) 0.886 (docs/benchmarks.md).
DEFAULT_CAMPAIGN_SIZE = 20


def default_space(profiler: str, settings: dict[str, Any]) -> str:
    """The first preset (in ``supernet.preset_names()`` order) that ``profiler`` with ``settings``
    accepts, probed by building it on this machine for each preset: profilers that extract
    subnets from the supernet need a space with one (ufo-track2 first), and a replay profiler
    reads its table, which the chip's machine holds, not this one. A profiler refused only for
    hardware this machine lacks (e.g. ``torch-cuda`` without a GPU) accepted the space: the chip
    has the hardware.

    Raises:
        UserError: The profiler is not installed here, or accepts no preset here: give --space.
    """
    import supernet
    from profilers import LocalConfig, ProfilerUnavailableError, get_profiler_class

    try:
        profiler_class = get_profiler_class(profiler)
    except ValueError as error:
        raise UserError(
            f"{error}; to register a profiler installed only on the server, give --space"
        ) from None
    refusals: dict[str, list[str]] = {}  # reason -> the presets refused for it
    for name in supernet.preset_names():
        try:
            profiler_class(supernet.get_space(name), local=LocalConfig(), **settings).close()
        except ProfilerUnavailableError:
            return name
        except (ValueError, OSError) as error:
            refusals.setdefault(str(error), []).append(name)
            continue
        return name
    reasons = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in refusals.items())
    raise UserError(
        f"profiler {profiler!r} with these settings measures none of the presets here ({reasons}): "
        "give the space its campaign measures with --space"
    )


# The command line's name of each field of the requests built from it.
_OPTIONS = {
    "name": "NAME",
    "profiler": "--profiler",
    "settings": "--set",
    "space": "--space",
    "n": "--campaign-size",
}


def _refused(error: ValidationError) -> UserError:
    """A request field refused before anything is sent, named as the command line names it."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    return UserError(f"{_OPTIONS.get(field, field)} {first['input']!r}: {first['msg']}")


def agent_lines(server: str, onboarded: Onboarded) -> list[str]:
    """The two commands to run on the chip: install the agent, run it for the device. The second
    is what ``gpnas agent`` accepts too (``gpnas agent --server ...``)."""
    agent = ["gpnas-agent", "--server", server, "--device", onboarded.device.name]
    return [AGENT_INSTALL, shlex.join([*agent, "--token", onboarded.token.token])]


def _report(onboarded: Onboarded) -> list[str]:
    """What was done, one line per step, before the chip's lines."""
    device, campaign, token = onboarded.device, onboarded.campaign, onboarded.token
    jobs = ", ".join(f"{count} {status}" for status, count in sorted(campaign.jobs.items())) or "no jobs"
    if onboarded.device_created:
        first = (
            f"registered device {device.name} (profiler {device.profiler}, settings {device.settings or {}})"
        )
    else:
        first = f"device {device.name} exists with the same profiler and settings: kept as it is"
    if onboarded.campaign_created:
        second = (
            f"started campaign {campaign.id}: {campaign.n} {campaign.strategy} subnets of {campaign.space} "
            f"({jobs})"
        )
    else:
        second = (
            f"campaign {campaign.id} of {device.name} on {campaign.space} exists already "
            f"({campaign.n} {campaign.strategy} subnets: {jobs}): not started again"
        )
    third = (
        f"created token {token.id} for device {device.name} (keep it secret; "
        f"gpnas token revoke {token.id} withdraws it)"
    )
    return [first, second, third]


def register(app: typer.Typer) -> None:
    device = typer.Typer(help="Chips (devices): onboard one in one command.", no_args_is_help=True)

    @device.command("add")
    def _add(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="The chip's device name, e.g. jetson-orin-b1."),
        profiler: str = typer.Option(
            ..., "--profiler", help="The profiler that times it (`gpnas profilers`)."
        ),
        set_: list[str] = typer.Option([], "--set", help="Profiler setting KEY=VALUE (repeatable)."),
        space: str | None = typer.Option(
            None,
            "--space",
            help="The space its first campaign measures (a preset or a registered space). Default: "
            "the first preset the profiler accepts with these settings (ufo-track2 for the "
            "profilers that extract subnets from the supernet).",
        ),
        campaign_size: int = typer.Option(
            DEFAULT_CAMPAIGN_SIZE, "--campaign-size", min=1, help="Subnets the first campaign measures."
        ),
        agent_server: str | None = typer.Option(
            None,
            "--agent-server",
            help="The service's URL as the chip reaches it, printed in the agent's command "
            "(default: --server; required with --database-url).",
        ),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Onboard chip NAME: register the device (its settings validated as POST /v1/devices
        validates them), start a cost-stratified latency campaign, create its device token, and
        print, last, the two lines to run on the chip. On --server (an admin token) or in
        --database-url in process. Again with the same settings: the device and its campaign are
        kept, and a new token is printed; other settings are an error."""
        from pydantic import ValidationError

        from search_service.client import ClientError
        from search_service.errors import ServiceError
        from search_service.schemas import DeviceCreate
        from search_service.services.onboarding import onboard_device

        server, database = server_or_database(ctx, server, database_url)
        chip_server = agent_server or server
        if chip_server is None:
            raise UserError(
                "say at which URL the chip reaches the service: --agent-server URL (printed in the "
                "agent's command; with --server it defaults to that)"
            )
        settings = parse_settings(set_)
        try:
            body = DeviceCreate(name=name, profiler=profiler, settings=settings)
        except ValidationError as error:
            raise _refused(error) from None
        chosen_space = space or default_space(profiler, settings)
        where = server or database
        with api_client(server, token, database, as_admin=True) as api:
            try:
                onboarded = onboard_device(api, body, chosen_space, campaign_size)
            except ValidationError as error:
                raise _refused(error) from None
            except ServiceError as error:
                raise UserError(error.message) from None
            except ClientError as error:
                raise UserError(f"{where}: {error}") from None
        for line in _report(onboarded):
            typer.echo(line)
        typer.echo("On the chip, run:")
        for line in agent_lines(chip_server, onboarded):
            typer.echo(line)

    app.add_typer(device, name="device")
