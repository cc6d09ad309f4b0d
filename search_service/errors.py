"""Service errors raised by repositories and routes; the app turns each into a 4xx JSON answer."""

from __future__ import annotations

from collections.abc import Sequence


class ServiceError(Exception):
    """A client error with an HTTP status and a message saying what to change."""

    status_code = 400

    def __init__(self, message: str, loc: Sequence[str | int] | None = None) -> None:
        # A message may quote client input; lone surrogates in it could not be encoded as UTF-8.
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.message = message
        self.loc = list(loc) if loc is not None else None

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


class ForbiddenError(ServiceError):
    status_code = 403


class UnauthorizedError(ServiceError):
    status_code = 401


class UnavailableError(ServiceError):
    """Work the answer waits for did not finish in time (no worker running, or all busy)."""

    status_code = 503
