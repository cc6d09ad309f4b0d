"""A front as stored in the ``fronts`` table: gzip-compressed JSON of :meth:`FrontResult.to_dict`."""

from __future__ import annotations

import gzip
import json

from supernet import space_with_task

from ._result import FrontResult


def encode_front(result: FrontResult) -> bytes:
    """Front (and candidate archive) as gzip-compressed JSON, the form stored in ``fronts.data``."""
    return gzip.compress(json.dumps(result.to_dict(), separators=(",", ":")).encode(), compresslevel=6)


def decode_front(data: bytes, space: str, task: str) -> FrontResult:
    """Inverse of :func:`encode_front` for a front of ``task``: fronts stored before they kept
    parameter counts get them computed (``space``'s, read again if it has gained ``task``)."""
    return FrontResult.from_dict(json.loads(gzip.decompress(data)), space_with_task(space, task), task)
