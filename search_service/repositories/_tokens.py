"""API tokens: stored hashed, listed, revoked, and looked up by their secret."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import NotFoundError, UnauthorizedError
from ..models import ApiToken, utcnow
from ..schemas import TokenStatus


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    device: str | None = None,
    label: str | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """Store a new token, hashed.

    Args:
        session: The write session (flushed, not committed).
        device: Restrict the token to this device's jobs and latencies; None: unrestricted.
        label: Who or what the token is for, shown by the listings.
        expires_at: When the token stops working (timezone-aware); None: never.

    Returns:
        The stored row and the secret in clear, which cannot be recovered later.
    """
    secret = "gpnas_" + secrets.token_urlsafe(32)
    token = ApiToken(token_hash=hash_token(secret), device=device, label=label, expires_at=expires_at)
    session.add(token)
    session.flush()
    return token, secret


def token_status(token: ApiToken, now: dt.datetime | None = None) -> TokenStatus:
    """Whether ``token`` is "active", "expired" or "revoked" at ``now`` (default: the current time).

    A revocation is reported even after the expiry: it is the deliberate act an admin looks for.
    """
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def get_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFoundError(f"unknown token id {token_id}")
    return token


def revoke_token(session: Session, token_id: int, now: dt.datetime | None = None) -> ApiToken:
    """Revoke a token for good; revoking it again keeps the first ``revoked_at``.

    Raises:
        NotFoundError: No token has this id.
    """
    token = get_token(session, token_id)
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
        session.flush()
    return token


def find_token(session: Session, secret: str) -> ApiToken | None:
    """The row of ``secret`` whatever its status; :func:`authenticate` checks that it is usable."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))


def authenticate(session: Session, secret: str, now: dt.datetime | None = None) -> ApiToken:
    """The active token whose secret is ``secret``.

    Args:
        session: Any session (nothing is written).
        secret: The Bearer token the caller sent.
        now: The time expiry is judged at (default: the current time); tests inject it.

    Raises:
        UnauthorizedError: The token is unknown, revoked or expired, saying which.
    """
    token = find_token(session, secret)
    if token is None:
        raise UnauthorizedError("unknown token")
    status = token_status(token, now)
    if status == "revoked":
        raise UnauthorizedError("this token was revoked; ask an admin for a new one (gpnas token create)")
    if status == "expired":
        raise UnauthorizedError("this token expired; ask an admin for a new one (gpnas token create)")
    return token
