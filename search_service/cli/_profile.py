"""``gpnas profile``: measure sampled subnets with a profiler; ``gpnas profilers``: list them."""

from __future__ import annotations

import csv
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

from supernet import Metric, SearchSpace, Subnet

from ..errors import UserError
from ..levels import DEFAULT_SHIFT_THRESHOLD, check_shift, rescale_factor, shift
from ._levels import LevelFile, Recorded, default_levels_path, device_key
from ._options import ENVIRONMENT, ServerOption, TokenOption, option_source
from ._spaces import resolve_space, space_help

if TYPE_CHECKING:
    from profilers import ProfileResult


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """``["threads=1", "batch_size=8"]`` -> ``{"threads": "1", "batch_size": "8"}``.

    Values stay strings; the profiler's settings spec converts and checks them.

    Raises:
        UserError: If a pair has no ``=`` or an empty key, or a key repeats.
    """
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}")
        if key in settings:
            raise UserError(f"--set {key} is given twice")
        settings[key] = value.strip()
    return settings


LOCAL_CONFIG_HELP = (
    "TOML file saying what dataset and supernet names in device settings mean on this machine, "
    "and its data_dir (see the README's trust model)"
)
DATA_DIR_HELP = "directory that file settings of a server's device are relative to (overrides --config)"


def resolve_device(
    device: str,
    settings: dict[str, str],
    server: str | None,
    token: str | None,
    *,
    from_environment: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The profiler name and settings for ``--device``.

    Without ``--server`` the device is a profiler name and ``--set`` gives its settings. With
    ``--server`` it is a device registered on the service (``GET /v1/devices/{name}``), whose
    settings ``--set`` may override. ``from_environment``: the server came from ``GPNAS_SERVER``
    (the errors say so).

    Raises:
        UserError: If the server is unreachable, does not know the device or refuses the token.
    """
    if server is None:
        return device, dict(settings)
    from search_service.client import ApiError, GpnasClient, NotFound, ServerUnreachable

    option = "GPNAS_SERVER" if from_environment else "--server"
    # A couple of quick retries: a person is waiting, unlike a device agent.
    with GpnasClient(server, token, max_retries=2, backoff=0.25) as api:
        try:
            info = api.get_device(device)
        except ServerUnreachable as error:
            raise UserError(f"{option} {server}: unreachable ({error.last})") from None
        except NotFound:
            hint = " (GPNAS_SERVER is set: unset it to use a profiler of that name)"
            hint = hint if from_environment else ""
            raise UserError(f"device {device!r} is not registered on {server}{hint}") from None
        except ApiError as error:
            raise UserError(f"{error} (on {server})") from None
    return info.profiler, {**(info.settings or {}), **settings}


def _choose_subnets(
    space: SearchSpace, known: list[Subnet] | None, samples: int | None, seed: int, archs: Path | None
) -> list[Subnet]:
    """The subnets to profile: ``--archs``'s, else ``samples`` drawn uniformly from the space, or
    from the profiler's known subnets when it can only replay a table."""
    if archs is not None:
        if not archs.is_file():
            raise UserError(f"--archs {archs}: no such file")
        with open(archs, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "arch" not in reader.fieldnames:
                raise UserError(f"--archs {archs}: needs an 'arch' column")
            try:
                return [space.parse(row["arch"]) for row in reader]
            except ValueError as error:
                raise UserError(f"--archs {archs}: {error}") from error
    assert samples is not None
    if known is None:
        return space.sample(samples, seed=seed)
    if samples > len(known):
        raise UserError(f"--samples {samples}: the profiler's table holds only {len(known)} subnets")
    order = np.random.default_rng(seed).permutation(len(known))[:samples]
    return [known[i] for i in order]


def _record_level(
    level_file: LevelFile,
    profiler: str,
    space: str,
    settings: dict[str, Any],
    outcomes: list[ProfileResult | Exception],
    number: int,
    threshold: float,
    say: Callable[[str], None],
) -> Recorded | None:
    """Count a batch's reference level in ``level_file`` and ``say`` how far it lies from the
    long-run level (a warning beyond ``threshold``); None for a batch timed without a reference."""
    timed = next((o for o in outcomes if not isinstance(o, Exception) and o.reference_ms is not None), None)
    if timed is None or timed.reference_ms is None or timed.reference_arch is None:
        return None
    key = device_key(profiler, space, timed.reference_arch, settings)
    recorded = level_file.record(key, timed.reference_ms)
    moved = shift(recorded.batch_ms, recorded.long_run_ms)
    say(
        f"batch {number}: reference level {recorded.batch_ms:.2f} ms, long-run level "
        f"{recorded.long_run_ms:.2f} ms ({moved:+.1%}; batch {recorded.batches} of this device in "
        f"{level_file.path}); values rescaled to the long-run level"
    )
    if check_shift(timed.reference_arch, recorded.batch_ms, recorded.long_run_ms, threshold):
        say(
            f"warning: batch {number}'s reference level moved {moved:+.1%} from the long-run level "
            f"(threshold {threshold:.0%}): the machine was in a {'slow' if moved > 0 else 'fast'} phase; "
            "its values are rescaled, but check the machine's load before trusting them"
        )
    return recorded


def _row(arch: str, outcome: ProfileResult, recorded: Recorded | None) -> list[Any]:
    """One CSV row: the value, std and percentiles rescaled to the long-run level when the batch
    had a reference level, with the unscaled value and both levels."""
    factor = rescale_factor(recorded.batch_ms, recorded.long_run_ms) if recorded else 1.0
    return [
        arch,
        f"{outcome.value * factor:.6g}",
        f"{outcome.std * factor:.4g}",
        "" if outcome.p10 is None else f"{outcome.p10 * factor:.6g}",
        "" if outcome.p90 is None else f"{outcome.p90 * factor:.6g}",
        outcome.repeats,
        int(outcome.flagged),
        f"{outcome.value:.6g}" if recorded else "",
        f"{recorded.batch_ms:.6g}" if recorded else "",
        f"{recorded.long_run_ms:.6g}" if recorded else "",
    ]


def _profilers() -> None:
    """List the registered profilers (built-in and plug-in) with their metric and settings."""
    from profilers import available_profilers, get_profiler_class

    for name in available_profilers():
        try:
            cls = get_profiler_class(name)
        except ValueError as error:
            typer.echo(f"{name:18s} (broken: {error})")
            continue
        typer.echo(f"{name:18s} {cls.metric:10s} v{cls.version}  {cls.__module__}.{cls.__qualname__}")
        for key, spec in cls.settings_spec.items():
            default = "required" if spec.required else f"default {spec.default!r}"
            choices = f" {list(spec.choices)}" if spec.choices else ""
            typer.echo(f"    {key:14s} {spec.type.__name__:5s} {default}{choices}  {spec.help}")


def register(app: typer.Typer) -> None:
    app.command("profilers")(_profilers)

    @app.command("profile")
    def _profile(
        ctx: typer.Context,
        space: str = typer.Option(..., "--space", help=space_help(server=True)),
        device: str = typer.Option(
            ...,
            "--device",
            help="profiler name (see `gpnas profilers`), or a registered device with --server / GPNAS_SERVER",
        ),
        samples: int | None = typer.Option(
            None, "--samples", min=1, help="number of uniformly sampled subnets"
        ),
        archs: Path | None = typer.Option(
            None, "--archs", help="CSV with an 'arch' column: profile these instead of sampling"
        ),
        seed: int = typer.Option(0, "--seed", help="sampling seed"),
        batch: int = typer.Option(
            16,
            "--batch",
            min=1,
            help="subnets measured together (latency: timed in interleaved rounds with a reference)",
        ),
        out: Path | None = typer.Option(None, "--out", help="CSV file to write (default: standard output)"),
        set_: list[str] = typer.Option([], "--set", help="profiler setting KEY=VALUE (repeatable)"),
        task: str | None = typer.Option(None, "--task", help="task to score (accuracy profilers)"),
        column: str | None = typer.Option(
            None, "--column", help="name of the value column (default: the metric, latency_ms or score)"
        ),
        server: ServerOption = None,
        token: TokenOption = None,
        config: Path | None = typer.Option(
            None, "--config", envvar="GPNAS_LOCAL_CONFIG", help=LOCAL_CONFIG_HELP
        ),
        data_dir: Path | None = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        levels: Path | None = typer.Option(
            None,
            "--levels",
            envvar="GPNAS_LEVELS",
            help="JSON file of long-run reference levels (default: ~/.cache/gpnas/levels.json, "
            "under $XDG_CACHE_HOME when set)",
        ),
        level_threshold: float = typer.Option(
            DEFAULT_SHIFT_THRESHOLD,
            "--level-threshold",
            envvar="GPNAS_LEVEL_SHIFT_THRESHOLD",
            min=0.0,
            help="warn about a batch whose reference level lies further than this (relative) from "
            "the long-run level",
        ),
    ) -> None:
        """Profile N sampled subnets (or --archs FILE); write CSV
        `arch,<metric>,std,p10,p90,repeats,flagged,unscaled,reference_ms,level_ms`.

        The value column is `latency_ms` (per forward pass of a batch of images) or `score`, or
        --column's name, so the file feeds `gpnas predict --train` directly. Subnets are measured
        --batch at a time (a latency batch in interleaved rounds with a reference subnet); rows
        are written as each batch finishes; `flagged` is 1 where the batch drifted.

        Latencies timed with a reference are rescaled to the device's long-run level (`level_ms`,
        kept in --levels; the device's first batch sets it): value, std, p10 and p90 are
        multiplied by level_ms / reference_ms, the batch's reference level; `unscaled` is the
        value before. Each batch's shift against the long-run level is printed, with a warning
        beyond --level-threshold. Other values are written as measured (last three columns empty).
        """
        from tqdm import tqdm

        from profilers import LocalConfig, ProfilerUnavailableError, create_profiler

        if (samples is None) == (archs is None):
            raise UserError("pass exactly one of --samples N or --archs FILE")
        search_space = resolve_space(space, server, token)
        from_environment = option_source(ctx, "server") == ENVIRONMENT
        name, settings = resolve_device(
            device, parse_settings(set_), server, token, from_environment=from_environment
        )
        # Settings typed here are this user's own (any file path); a server's never are.
        local = dataclasses.replace(LocalConfig.load(config, data_dir), trusted=server is None)
        try:
            profiler = create_profiler(name, search_space, local=local, **settings)
        except ProfilerUnavailableError as error:
            # Missing hardware (no GPU, no bf16) is the user's setup, not a bug: one error line.
            raise UserError(str(error)) from None
        except ValueError as error:  # a --set or device setting the profiler refuses
            raise UserError(str(error)) from error
        if profiler.metric == Metric.SCORE and task is None:
            raise UserError(f"profiler {name!r} scores a task: pass --task (one of {search_space.tasks})")
        subs = _choose_subnets(search_space, profiler.known_subnets(), samples, seed, archs)
        value_column = column or profiler.metric
        handle: Any = open(out, "w", newline="", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
        failed = 0
        bar = tqdm(
            total=len(subs), desc=f"{name} {space}", unit="subnet", file=sys.stderr, dynamic_ncols=True
        )
        level_file = LevelFile(levels or default_levels_path())
        try:
            writer = csv.writer(handle)
            writer.writerow([
                "arch", value_column, "std", "p10", "p90", "repeats", "flagged",
                "unscaled", "reference_ms", "level_ms",
            ])  # fmt: skip
            for number, start in enumerate(range(0, len(subs), batch), 1):
                chunk = subs[start : start + batch]
                outcomes = profiler.profile_many(chunk, task)
                recorded = _record_level(
                    level_file,
                    name,
                    search_space.name,
                    profiler.settings,
                    outcomes,
                    number,
                    level_threshold,
                    # Above the progress bar, not glued to it.
                    lambda text: bar.write(text, file=sys.stderr),
                )
                for sub, outcome in zip(chunk, outcomes, strict=True):
                    arch = search_space.format(sub)
                    if isinstance(outcome, Exception):
                        failed += 1
                        typer.echo(f"{arch}: not measured: {type(outcome).__name__}: {outcome}", err=True)
                        continue
                    writer.writerow(_row(arch, outcome, recorded))
                handle.flush()
                bar.update(len(chunk))
        finally:
            bar.close()
            profiler.close()
            if out:
                handle.close()
        if failed:
            raise UserError(f"{failed} of {len(subs)} subnets could not be measured (reasons above)")
        if out:
            typer.echo(f"wrote {len(subs)} rows to {out}", err=True)
