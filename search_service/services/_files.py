"""The server's content-addressed file stores under its data directory (supernet weights,
artifacts): one folder per kind of file, each file named by its SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ConflictError

CHUNK_BYTES = 1 << 20
"""Bytes read and written at a time when a stored file is copied or hashed."""


def store_folder(data_dir: Path | None, name: str, what: str) -> Path:
    """``<data_dir>/<name>``, created if missing.

    Raises:
        ConflictError: The server has no data directory, so it cannot store ``what``.
    """
    if data_dir is None:
        raise ConflictError(f"this server has no data directory (GPNAS_DATA_DIR), so it cannot store {what}")
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def file_sha256(path: Path) -> str:
    """The SHA-256 (hex) of the file at ``path``, read :data:`CHUNK_BYTES` at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
