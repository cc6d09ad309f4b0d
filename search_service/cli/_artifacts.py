"""Artifacts fetched from a server: what ``gpnas export --server`` and ``gpnas deploy --export``
share (the server builds, checks and stores the file; the CLI downloads it, sha256-verified)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..errors import UserError

if TYPE_CHECKING:
    from search_service.client import GpnasClient
    from search_service.schemas import ArtifactCreate, ArtifactPublic


def describe_weights(artifact: ArtifactPublic) -> str:
    """Which weights the file holds, as a user reads it."""
    weights = artifact.weights
    if weights.supernet_version is not None:
        return f"supernet version {weights.supernet_version} of {artifact.space}"
    return f"random weights (seed {weights.random_seed})"


def fetch_artifact(api: GpnasClient, body: ArtifactCreate, out: Path, err: bool = False) -> ArtifactPublic:
    """Have the server build (or find) ``body``'s artifact and download it to ``out``; one line
    (on stderr with ``err``, so that it does not mix into JSON on stdout) says what was written.

    Raises:
        UserError: The server refused the request or the download (its message).
    """
    from search_service.client import ClientError

    try:
        artifact = api.create_artifact(body)
        api.download_artifact(artifact.digest, out)
    except ClientError as error:
        raise UserError(str(error)) from None
    typer.echo(
        f"wrote {out}: {artifact.format} {artifact.precision}, {artifact.size_bytes:,} bytes, sha256 "
        f"{artifact.digest}, {describe_weights(artifact)}; onnxruntime max |diff| vs torch "
        f"{artifact.max_abs_diff:.3g}",
        err=err,
    )
    return artifact
