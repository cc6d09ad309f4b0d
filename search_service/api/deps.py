"""FastAPI dependencies: database sessions, settings, services and the caller's token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .. import repositories as repo
from ..admission import ANONYMOUS, Admission
from ..core.config import Settings
from ..errors import ForbiddenError, UnauthorizedError
from ..refit import Refitter
from ..search import FrontCache


def get_db(request: Request) -> Iterator[Session]:
    """A read session (SQLite: a deferred transaction, never blocks the writer)."""
    with request.app.state.read_sessions() as session:
        yield session


def get_write_db(request: Request) -> Iterator[Session]:
    """A write session. Routes commit it themselves before answering, so an acknowledged write is
    durable; anything not committed is rolled back when the request ends."""
    with request.app.state.write_sessions() as session:
        yield session


async def get_settings(request: Request) -> Settings:
    result: Settings = request.app.state.settings
    return result


async def get_refitter(request: Request) -> Refitter:
    result: Refitter = request.app.state.refitter
    return result


async def get_front_cache(request: Request) -> FrontCache:
    result: FrontCache = request.app.state.front_cache
    return result


SessionDep = Annotated[Session, Depends(get_db)]
WriteSessionDep = Annotated[Session, Depends(get_write_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RefitterDep = Annotated[Refitter, Depends(get_refitter)]
FrontCacheDep = Annotated[FrontCache, Depends(get_front_cache)]

_bearer = HTTPBearer(auto_error=False, description="A token from `gpnas token create [--device NAME]`.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: an unrestricted token (``device`` None) or one device's token.

    Attributes:
        device: The device a device token is restricted to; None for an unrestricted one.
        token_id: The token's id; None when authentication is off (everyone is one caller).
    """

    device: str | None
    token_id: int | None = None

    @property
    def caller(self) -> str:
        """Whose budget of heavy requests this caller's count against."""
        return "everyone (auth off)" if self.token_id is None else f"token {self.token_id}"

    def check_device(self, device: str | None, what: str) -> None:
        """Raise 403 unless this caller may act for ``device``."""
        if self.device is not None and device != self.device:
            raise ForbiddenError(f"this token belongs to device {self.device!r} and cannot {what}")

    def require_admin(self, what: str) -> None:
        if self.device is not None:
            raise ForbiddenError(f"a device token cannot {what}; use a token made without --device")


def get_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller of a write (or of an admin read). With GPNAS_AUTH=off everyone is unrestricted.

    Raises:
        UnauthorizedError: No Bearer token, or one that is unknown, revoked or expired.
    """
    if not request.app.state.settings.auth:
        return Principal(device=None)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError(
            "this route needs an 'Authorization: Bearer <token>' header (gpnas token create)"
        )
    # Looked up on every request (no cache), so a revocation takes effect at once.
    with request.app.state.read_sessions() as session:
        token = repo.authenticate(session, credentials.credentials)
    return Principal(device=token.device, token_id=token.id)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def get_reader(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    """The caller of a read: ``None`` for an anonymous one (auth on, no token).

    Reads are open, but device settings, measurement environments and job errors name files,
    hosts and libraries of the measuring machines, so anonymous readers get them blanked.
    """
    if request.app.state.settings.auth and credentials is None:
        return None
    return get_principal(request, credentials)


ReaderDep = Annotated[Principal | None, Depends(get_reader)]


def caller_of(reader: Principal | None) -> str:
    """The budget of heavy requests a reader's count against (all anonymous callers share one)."""
    return ANONYMOUS if reader is None else reader.caller


async def get_admission(request: Request) -> Admission:
    result: Admission = request.app.state.admission
    return result


AdmissionDep = Annotated[Admission, Depends(get_admission)]
