"""``gpnas measurements upload``: a chip's latencies from the CSV file ``gpnas profile --out``
wrote, for labs with no network path from the chip to the server.

Every row becomes one measurement whose id is derived from the row's content (the device, space,
canonical arch and every cell), so uploading the same file again stores nothing new: re-posting
an id with the same content is a duplicate (``MeasurementCreate.id``). The whole file is checked
before anything is sent, so a bad row stores nothing of the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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

if TYPE_CHECKING:
    from search_service.client import GpnasClient, Invalid
    from search_service.schemas import MeasurementCreate
    from supernet import SearchSpace

ID_PREFIX = "csv-"
"""Ids of uploaded rows: this prefix and 32 hex digits of the sha256 of the row's content."""

# The columns `gpnas profile --out` writes after `arch` and the value (the value column is named
# after the metric or --column). std, repeats and flagged are measurement fields; the others are
# kept in the measurement's environment, so nothing the file says is lost.
_FIELDS = ("std", "repeats", "flagged")
_KEPT = ("p10", "p90", "unscaled", "reference_ms", "level_ms")


@dataclass(frozen=True)
class Row:
    """A row of the file as a measurement, with where it came from (for error messages)."""

    number: int
    measurement: MeasurementCreate


class _BadCell(ValueError):
    """A cell that is not what its column holds (the message says why)."""


def _number(cell: str, *, positive: bool = False, whole: bool = False) -> float | int | None:
    """The number in ``cell`` (None when empty).

    Raises:
        _BadCell: Not a (finite, positive, whole) number as asked.
    """
    if not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        raise _BadCell(f"{cell!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadCell(f"{cell!r} is not a finite number")
    if positive and value <= 0:
        raise _BadCell(f"{cell!r} must be positive")
    if whole:
        if value != int(value):
            raise _BadCell(f"{cell!r} is not a whole number")
        return int(value)
    return value


def _flag(cell: str) -> bool:
    if cell.strip() in ("", "0"):
        return False
    if cell.strip() == "1":
        return True
    raise _BadCell(f"{cell!r} is not 0 or 1")


def _content_id(content: dict[str, Any]) -> str:
    """The id of a measurement with ``content``: the same row always gets the same id."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]


def _header(path: Path, header: list[str]) -> str:
    """The value column of ``header``, checked.

    Raises:
        UserError: Not the header ``gpnas profile --out`` writes for latencies.
    """
    if len(header) < 2 or header[0] != "arch":
        raise UserError(
            f"{path}: the first line must be the header `gpnas profile --out` writes "
            "(arch,latency_ms,std,...), got " + ",".join(header)
        )
    value = header[1]
    if value == "score":
        raise UserError(
            f"{path}: column 'score' holds scores of a task; this command uploads a chip's latencies"
        )
    for name in header[2:]:
        if name not in _FIELDS + _KEPT:
            raise UserError(f"{path}: unknown column {name!r}; known: {', '.join(_FIELDS + _KEPT)}")
    if len(set(header)) != len(header):
        raise UserError(f"{path}: a column is named twice in the header")
    return value


def read_rows(path: Path, space: SearchSpace, device: str) -> list[Row]:
    """Every row of ``path`` as a latency of ``device`` on ``space``, checked as the API checks it.

    Raises:
        UserError: The file cannot be read, or a row is bad: naming the row, its line and column.
    """
    from pydantic import ValidationError

    from search_service.schemas import MeasurementCreate

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if not lines:
        raise UserError(f"{path} is empty")
    header, body = lines[0], lines[1:]
    value_column = _header(path, header)
    rows = []
    for number, cells in enumerate(body, start=1):
        where = f"{path} row {number} (line {number + 1})"
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise UserError(f"{where} has {len(cells)} cells but the header has {len(header)}")
        cell = dict(zip(header, cells, strict=True))
        column = "arch"
        try:
            arch = space.format(space.parse(cell["arch"]))
            column = value_column
            value = _number(cell[value_column], positive=True)
            if value is None:
                raise _BadCell("empty: every row needs its latency")
            column = "std"
            std = _number(cell.get("std", ""))
            column = "repeats"
            repeats = _number(cell.get("repeats", ""), whole=True)
            column = "flagged"
            flagged = _flag(cell.get("flagged", ""))
            kept = {}
            for column in _KEPT:
                number_kept = _number(cell.get(column, ""))
                if number_kept is not None:
                    kept[column] = number_kept
        except ValueError as error:  # _BadCell, or an arch the space refuses
            raise UserError(f"{where}, column {column!r}: {error}") from None
        content = {
            "space": space.name,
            "arch": arch,
            "device": device,
            "metric": "latency_ms",
            "value": value,
            "std": std,
            "repeats": repeats,
            "flagged": flagged,
            "environment": {"profile_csv": kept} if kept else None,
        }
        try:
            measurement = MeasurementCreate.model_validate({"id": _content_id(content), **content})
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or value_column
            raise UserError(f"{where}, {field}: {first['msg']}") from None
        rows.append(Row(number, measurement))
    if not rows:
        raise UserError(f"{path} has no rows under its header")
    return rows


def _space_of(api: GpnasClient, device: str, given: str | None) -> SearchSpace:
    """The space the file's archs belong to: ``given``, else the one space of the device's
    campaigns (what `gpnas device add` started).

    Raises:
        UserError: No ``given`` space and the device's campaigns name none or several; or the
            server does not know the space.
    """
    import supernet

    name = given
    if name is None:
        spaces = sorted({c.space for c in api.list_campaigns() if c.device == device and c.task is None})
        if len(spaces) != 1:
            found = f"its campaigns measure {', '.join(spaces)}" if spaces else "it has no campaign"
            raise UserError(f"say which space the file's archs belong to with --space ({device}: {found})")
        name = spaces[0]
    if supernet.is_preset(name):
        return supernet.get_space(name)
    return supernet.space_from_definition(api.get_space_definition(name))


def _too_large(error: Invalid) -> bool:
    """The server refused a batch for its size alone (413, or the 422 of ``max_batch``, whose
    ``loc`` is the list itself), so a smaller one can go through."""
    detail = error.detail
    whole_list = isinstance(detail, list) and any(
        isinstance(item, dict) and item.get("loc") == ["body", "measurements"] for item in detail
    )
    return error.status_code == 413 or whole_list


def largest_batch() -> int:
    """The most measurements one request may hold by the wire schema (a server's ``max_batch``
    may be lower: :func:`upload` then sends fewer at a time)."""
    from annotated_types import MaxLen

    from search_service.schemas import MeasurementBatch

    limits = MeasurementBatch.model_fields["measurements"].metadata
    return next(m.max_length for m in limits if isinstance(m, MaxLen))


def upload(
    api: GpnasClient, rows: list[Row], first_batch: int, say: Callable[[str], None]
) -> tuple[int, int]:
    """Post ``rows`` in batches of at most ``first_batch``, halved while the server refuses one
    for its size (``max_batch``, the body size limit); ``(stored, stored before)``.

    Raises:
        UserError: The server refused a row, naming it (and what earlier batches stored).
    """
    from search_service.client import Invalid
    from search_service.schemas import MeasurementBatch

    stored = duplicate = done = 0
    size = first_batch
    while done < len(rows):
        batch = rows[done : done + size]
        try:
            answer = api.post_measurements(MeasurementBatch(measurements=[r.measurement for r in batch]))
        except Invalid as error:
            if _too_large(error) and len(batch) > 1:
                size = len(batch) // 2
                say(f"the server refused {len(batch)} measurements in one batch; sending {size} at a time")
                continue
            raise UserError(_refusal(error, batch, done)) from None
        stored, duplicate, done = stored + answer.inserted, duplicate + answer.duplicate, done + len(batch)
    return stored, duplicate


def _refusal(error: Invalid, batch: list[Row], done: int) -> str:
    """``error`` naming the row of the batch it points at, and what earlier batches stored."""
    detail = error.detail
    first: dict[str, Any] = (
        detail[0] if isinstance(detail, list) and detail and isinstance(detail[0], dict) else {}
    )
    loc = first.get("loc", [])
    index = loc[2] if len(loc) >= 3 and loc[:2] == ["body", "measurements"] else None
    if isinstance(index, int) and 0 <= index < len(batch):
        row = batch[index].number
        message = f"row {row} (line {row + 1}): {'.'.join(str(p) for p in loc[3:])}: {first.get('msg')}"
    else:
        message = str(error)
    if done:
        message += (
            f" (the {done} rows before this batch were stored; uploading the file again once it "
            "is fixed stores only the rest)"
        )
    return f"the server refused the file: {message}"


def register(app: typer.Typer) -> None:
    measurements = typer.Typer(
        help="Measurements: upload a chip's latencies measured offline.", no_args_is_help=True
    )

    @measurements.command("upload")
    def _upload(
        ctx: typer.Context,
        file: Path = typer.Argument(..., help="The CSV file `gpnas profile --out` wrote on the chip."),
        device: str = typer.Option(
            ..., "--device", help="The registered device the file's latencies are of."
        ),
        space: str | None = typer.Option(
            None,
            "--space",
            help="The space of the file's archs (default: the one space of the device's campaigns).",
        ),
        server: ServerOption = None,
        token: TokenOption = None,
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Store the latencies FILE holds (`gpnas profile --out`'s CSV) as DEVICE's measurements,
        on --server (an admin token, or DEVICE's token) or in --database-url in process. Every row
        is checked first: a bad one is an error naming it and nothing of the file is stored.
        Uploading the same file again stores nothing new (each row's id is derived from its
        content)."""
        from search_service.client import ClientError, NotFound

        server, database = server_or_database(ctx, server, database_url)
        where = server or database
        with api_client(server, token, database, as_admin=True) as api:
            try:
                try:
                    api.get_device(device)
                except NotFound:
                    raise UserError(
                        f"device {device!r} is not registered ({where}); register it with gpnas device add"
                    ) from None
                rows = read_rows(file, _space_of(api, device, space), device)
                stored, duplicate = upload(
                    api, rows, largest_batch(), lambda text: typer.echo(text, err=True)
                )
            except ClientError as error:
                raise UserError(f"{where}: {error}") from None
        space_name = rows[0].measurement.space
        typer.echo(
            f"{file}: {len(rows)} rows of device {device} on {space_name}: {stored} stored, "
            f"{duplicate} stored before"
        )

    app.add_typer(measurements, name="measurements")
