"""Supernet weights as a registered, versioned resource.

An admin registers a checkpoint of a space's supernet (``POST /v1/supernets``, ``gpnas supernets
add``). It must be a safetensors file (never a pickle: loading one runs code) whose tensors have
exactly the names and shapes of the space's supernet; only its header is read, never its tensors.
It is stored once under its SHA-256 at ``<data_dir>/supernets/<sha256>.safetensors`` and gets the
space's next version number; the same bytes registered again for the space answer the version
they already have.

The file arrives in chunks into a temporary file beside its final place (:class:`UploadFile`),
hashed as it is written, so that no upload is ever held in memory; it is moved into place only
once it is checked, and removed otherwise, so nothing of a refused upload is kept. The route and
the CLI are thin adapters over :class:`UploadFile` and :func:`register_supernet`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from safetensors import SafetensorError, safe_open
from sqlalchemy.orm import Session

from supernet import SearchSpace, UFOSpace, UFOSupernet

from .. import repositories as repo
from ..errors import InvalidError
from ..models import SupernetVersion
from ._files import CHUNK_BYTES, store_folder

__all__ = [
    "Received",
    "UploadFile",
    "expected_shapes",
    "check_checkpoint",
    "register_supernet",
    "stored_supernet",
    "supernets_dir",
]


def supernets_dir(data_dir: Path | None) -> Path:
    """Where registered checkpoints are stored: ``<data_dir>/supernets`` (created if missing).

    Raises:
        ConflictError: The server has no data directory, so it cannot store weights.
    """
    return store_folder(data_dir, "supernets", "supernet weights")


def stored_supernet(folder: Path, sha256: str) -> Path:
    """The stored file of the checkpoint ``sha256`` in :func:`supernets_dir`'s ``folder``."""
    return folder / f"{sha256}.safetensors"


@dataclass(frozen=True)
class Received:
    """A checkpoint written to a temporary file: its path, SHA-256 (hex) and size in bytes."""

    path: Path
    sha256: str
    size: int


class UploadFile:
    """A temporary file in the store's folder that a checkpoint is written to, chunk by chunk,
    and hashed on the way; removed when the ``with`` block ends unless
    :func:`register_supernet` moved it into place.

    Args:
        folder: The store's folder (:func:`supernets_dir`): on the same file system as the final
            place, so that the move is an atomic rename.
    """

    def __init__(self, folder: Path) -> None:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
        self.path = Path(name)
        self._file: BinaryIO = os.fdopen(handle, "wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def __enter__(self) -> UploadFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    def write(self, chunk: bytes) -> None:
        """Append ``chunk`` to the file and to its hash."""
        self._file.write(chunk)
        self._hash.update(chunk)
        self._size += len(chunk)

    def copy_from(self, source: BinaryIO) -> None:
        """Write all of ``source``, :data:`CHUNK_BYTES` at a time."""
        while chunk := source.read(CHUNK_BYTES):
            self.write(chunk)

    def finish(self) -> Received:
        """Close the file (flushed to disk) and say what it holds."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return Received(self.path, self._hash.hexdigest(), self._size)


def expected_shapes(space: SearchSpace) -> dict[str, tuple[int, ...]]:
    """The state_dict names and shapes of ``space``'s supernet, in its order (built on torch's
    meta device: shapes without storage, in milliseconds for a ViT-Base).

    Raises:
        InvalidError: ``space`` has no supernet (only UFO spaces have one).
    """
    if not isinstance(space, UFOSpace):
        raise InvalidError(f"space {space.name!r} has no supernet; only UFO spaces do", ["query", "space"])
    net = UFOSupernet(space, device="meta")
    return {name: tuple(tensor.shape) for name, tensor in net.state_dict().items()}


def check_checkpoint(path: Path, space: SearchSpace) -> None:
    """Check that ``path`` is a safetensors file of ``space``'s supernet, reading its header only.

    Raises:
        InvalidError: It is not a valid safetensors file, or naming its first bad key: a tensor
            of the supernet it lacks, one with another shape, or one the supernet does not have.
    """
    expected = expected_shapes(space)
    try:
        with safe_open(str(path), framework="numpy") as checkpoint:
            names = checkpoint.keys()  # the header's names: no tensor is read
            shapes = {name: tuple(checkpoint.get_slice(name).get_shape()) for name in names}
    except (SafetensorError, OSError, ValueError) as error:
        raise InvalidError(
            f"not a safetensors file ({error}); write one with safetensors' save_file"
        ) from None
    for name, shape in expected.items():
        if name not in shapes:
            raise InvalidError(f"key {name!r} of the {space.name} supernet is missing from the checkpoint")
        if shapes[name] != shape:
            raise InvalidError(
                f"key {name!r} has shape {list(shapes[name])}; the {space.name} supernet's is {list(shape)}"
            )
    for name in sorted(shapes):
        if name not in expected:
            raise InvalidError(f"key {name!r} is not a tensor of the {space.name} supernet")


def register_supernet(
    session: Session, space: SearchSpace, received: Received, folder: Path
) -> tuple[SupernetVersion, bool]:
    """Register the checkpoint ``received`` for ``space`` (the caller commits).

    Args:
        session: A write session.
        space: The space whose supernet the weights are.
        received: The checkpoint in a temporary file of ``folder`` (:class:`UploadFile`).
        folder: The store (:func:`supernets_dir`).

    Returns:
        The version and whether it is new (False: these bytes were registered for the space
        already, and that version is answered).

    Raises:
        InvalidError: The file is not a checkpoint of the space's supernet (:func:`check_checkpoint`).
    """
    existing = repo.find_supernet_version(session, space.name, received.sha256)
    if existing is not None:
        return existing, False
    check_checkpoint(received.path, space)
    # Content-addressed: the same bytes registered for another space are one file already.
    os.replace(received.path, stored_supernet(folder, received.sha256))
    return repo.add_supernet_version(session, space.name, received.sha256, received.size), True
