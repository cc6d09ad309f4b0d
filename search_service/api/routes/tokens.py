"""API tokens: create (the only answer with the secret), list and revoke. Admin tokens only."""

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, status

from ... import repositories as repo
from ...errors import InvalidError, NotFoundError
from ...models import ApiToken, utcnow
from ...schemas import INT32, TokenCreate, TokenCreated, TokenPublic
from ..deps import PrincipalDep, SessionDep, WriteSessionDep

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])

TokenId = Annotated[int, Path(ge=1, le=INT32)]


def _public(token: ApiToken, now: dt.datetime) -> TokenPublic:
    return TokenPublic(
        id=token.id,
        label=token.label,
        device=token.device,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        status=repo.token_status(token, now),
    )


@router.post("", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, session: WriteSessionDep, principal: PrincipalDep) -> TokenCreated:
    """Create a token; the answer holds its secret, which no other route shows.

    422 naming `device` when that device is not registered.
    """
    principal.require_admin("create tokens")
    if body.device is not None:
        try:
            repo.get_device(session, body.device)
        except NotFoundError as error:
            raise InvalidError(error.message, ["body", "device"]) from None
    expires_at = None if body.expires_in_s is None else utcnow() + dt.timedelta(seconds=body.expires_in_s)
    token, secret = repo.create_token(session, body.device, body.label, expires_at)
    out = TokenCreated(
        id=token.id,
        token=secret,
        label=token.label,
        device=token.device,
        expires_at=token.expires_at,
        created_at=token.created_at,
    )
    session.commit()
    return out


@router.get("", response_model=list[TokenPublic])
def list_tokens(session: SessionDep, principal: PrincipalDep) -> list[TokenPublic]:
    """All tokens, oldest first, with their status; never a secret nor its hash."""
    principal.require_admin("list tokens")
    now = utcnow()
    return [_public(token, now) for token in repo.list_tokens(session)]


@router.delete("/{token_id}", response_model=TokenPublic)
def revoke_token(token_id: TokenId, session: WriteSessionDep, principal: PrincipalDep) -> TokenPublic:
    """Revoke a token at once and for good; revoking it again changes nothing. 404 if unknown."""
    principal.require_admin("revoke tokens")
    token = repo.revoke_token(session, token_id)
    out = _public(token, utcnow())
    session.commit()
    return out
