"""Service errors raised by repositories and routes; the app turns each into a 4xx JSON answer.

Also the home, for the service and its CLI, of :class:`UserError` (defined in
:mod:`supernet.errors`, the lowest layer, so that every package's input errors can derive from it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from supernet.errors import UserError

__all__ = [
    "ConflictError",
    "ForbiddenError",
    "InvalidError",
    "NotFoundError",
    "ServiceError",
    "TooLargeError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnavailableError",
    "UserError",
]


class ServiceError(Exception):
    """A client error with an HTTP status and a message saying what to change."""

    status_code = 400

    def __init__(
        self, message: str, loc: Sequence[str | int] | None = None, *, retry_after_s: float | None = None
    ) -> None:
        # A message may quote client input; lone surrogates in it could not be encoded as UTF-8.
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.message = message
        self.loc = list(loc) if loc is not None else None
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str] | None:
        """The answer's headers: ``WWW-Authenticate`` on a 401, ``Retry-After`` (whole seconds)
        when the error says when to try again."""
        if self.status_code == 401:
            return {"WWW-Authenticate": "Bearer"}
        if self.retry_after_s is not None:
            return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}
        return None

    def detail(self) -> str | list[dict[str, object]]:
        """FastAPI's shape: a string, or for field errors a list like its validation errors."""
        if self.loc is None:
            return self.message
        return [{"loc": self.loc, "msg": self.message, "type": "value_error"}]


class NotFoundError(ServiceError):
    status_code = 404


class ConflictError(ServiceError):
    status_code = 409


class InvalidError(ServiceError):
    status_code = 422


class TooLargeError(ServiceError):
    """What the request asks for exceeds a configured size limit (the message names it)."""

    status_code = 413


class ForbiddenError(ServiceError):
    status_code = 403


class UnauthorizedError(ServiceError):
    status_code = 401


class TooManyRequestsError(ServiceError):
    """The caller has as many heavy requests in flight as its budget allows."""

    status_code = 429


class UnavailableError(ServiceError):
    """Work the answer waits for did not finish in time (no worker running, or all busy), or the
    server cannot take more work now; ``retry_after_s`` says when to ask again."""

    status_code = 503

    def __init__(
        self, message: str, loc: Sequence[str | int] | None = None, *, retry_after_s: float | None = 5.0
    ) -> None:
        super().__init__(message, loc, retry_after_s=retry_after_s)
