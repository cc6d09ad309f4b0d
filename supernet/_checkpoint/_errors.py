"""The one error of a checkpoint import."""

from __future__ import annotations

from ..errors import UserError


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit; the message names the first key at fault.

    Attributes:
        key: That key (in UFO's layout), or ``None`` when the fault is not one key's.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key
