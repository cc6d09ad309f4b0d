"""``gpnas token create|list|revoke``: API tokens; ``create`` prints the new one as the last word."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

import typer

from ..errors import UserError
from ._options import DEFAULT_DATABASE_URL, DatabaseUrlOption, database_session

if TYPE_CHECKING:
    pass

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a whole number with a unit, ``3600s``, ``90m``, ``12h`` or ``30d``.

    Raises:
        UserError: Not such a number, or outside the range the API accepts (60 s to 5 years).
    """
    from search_service.schemas import TOKEN_MAX_EXPIRES_S, TOKEN_MIN_EXPIRES_S

    match = _DURATION.match(text.strip())
    if match is None:
        raise UserError(f"--expires-in {text!r}: give a whole number and a unit, e.g. 30d, 12h, 90m, 3600s")
    seconds = int(match[1]) * _UNIT_S[match[2]]
    if not TOKEN_MIN_EXPIRES_S <= seconds <= TOKEN_MAX_EXPIRES_S:
        raise UserError(
            f"--expires-in {text!r}: must be from {TOKEN_MIN_EXPIRES_S} s "
            f"to {TOKEN_MAX_EXPIRES_S // 86_400} days"
        )
    return seconds


def _checked(kind: Any, value: str, option: str) -> str:
    """``value`` validated as the API validates it (pydantic type ``kind``).

    Raises:
        UserError: One line naming ``option`` and the reason.
    """
    from pydantic import TypeAdapter, ValidationError

    try:
        return str(TypeAdapter(kind).validate_python(value))
    except ValidationError as error:
        raise UserError(f"{option} {value!r}: {error.errors()[0]['msg']}") from None


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%MZ")


def register(app: typer.Typer) -> None:
    token = typer.Typer(help="API tokens (stored hashed; shown once).", no_args_is_help=True)

    @token.command("create")
    def _create(
        device: str = typer.Option(None, help="Restrict the token to leasing and posting for this device."),
        label: str = typer.Option(None, help="Who or what the token is for (shown by `gpnas token list`)."),
        expires_in: str = typer.Option(
            None, "--expires-in", help="Lifetime: 30d, 12h, 90m or 3600s (default: never expires)."
        ),
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Create a token and print it (the last word of the output); it cannot be shown again."""
        from search_service import repositories as repo
        from search_service.models import utcnow
        from search_service.schemas import Name, TokenLabel

        # Validated before the database is touched, with the API's rules, so that a bad value is
        # one error line here rather than a row PostgreSQL would refuse.
        if device is not None:
            _checked(Name, device, "--device")
        if label is not None:
            _checked(TokenLabel, label, "--label")
        lifetime = None if expires_in is None else dt.timedelta(seconds=parse_duration(expires_in))
        expires_at = None if lifetime is None else utcnow() + lifetime
        with database_session(database_url, write=True) as session:
            row, secret = repo.create_token(session, device, label, expires_at)
            token_id = row.id
            session.commit()
        scope = f"device {device!r}" if device else "all routes"
        expiry = "" if expires_at is None else f", expires {_when(expires_at)}"
        typer.echo(f"created token {token_id} for {scope}{expiry}; keep it secret: {secret}")

    @token.command("list")
    def _list(database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL) -> None:
        """List the tokens with their status (active, expired, revoked); secrets are never shown."""
        from search_service import repositories as repo
        from search_service.models import utcnow

        with database_session(database_url, write=True) as session:
            now = utcnow()
            rows = [
                (
                    str(t.id),
                    t.label or "-",
                    t.device or "(any)",  # parentheses cannot occur in a device name
                    repo.token_status(t, now),
                    _when(t.created_at),
                    _when(t.expires_at),
                )
                for t in repo.list_tokens(session)
            ]
        header = ("id", "label", "device", "status", "created", "expires")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    @token.command("revoke")
    def _revoke(
        token_id: int = typer.Argument(..., metavar="ID", help="The id shown by `gpnas token list`."),
        database_url: DatabaseUrlOption = DEFAULT_DATABASE_URL,
    ) -> None:
        """Revoke a token at once and for good (revoking it again changes nothing)."""
        from search_service import repositories as repo
        from search_service.errors import NotFoundError
        from search_service.schemas import INT32

        if not 1 <= token_id <= INT32:  # no such id can exist, and PostgreSQL would refuse the lookup
            raise UserError(f"unknown token id {token_id}")
        with database_session(database_url, write=True) as session:
            try:
                row = repo.revoke_token(session, token_id)
            except NotFoundError as error:
                raise UserError(error.message) from None
            revoked_at = row.revoked_at
            session.commit()
        typer.echo(f"token {token_id} revoked at {_when(revoked_at)}")

    app.add_typer(token, name="token")
