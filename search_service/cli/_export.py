"""``gpnas export``: extract one subnet of a UFO supernet and write it as ONNX, or fetch the file a
server built (``--server``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from supernet import (
    SubnetViT,
    UFOSpace,
    UFOSupernet,
    build_supernet,
    example_input,
    export_onnx,
    resolve_path,
    ufo_space,
)

from ..errors import UserError
from ._artifacts import fetch_artifact
from ._options import ServerOption, TokenOption, api_client, validated
from ._spaces import resolve_space, space_help

VERIFY_TOLERANCE = 1e-3
"""Largest accepted |onnxruntime - torch| (float32 ViT outputs agree to ~1e-6 in practice)."""


def _load_state_dict(net: UFOSupernet, checkpoint: Path) -> None:
    """Load a supernet ``state_dict`` into ``net``: a safetensors file (what ``gpnas supernets add``
    registers), or ``torch.save``'s (plain, or under a ``"state_dict"`` key; read with
    ``weights_only``, which runs no code)."""
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {str(checkpoint)!r} is not a file")
    try:
        if checkpoint.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(checkpoint)
        else:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise several types for unreadable files
        raise UserError(f"checkpoint {str(checkpoint)!r} is not a torch state_dict: {error}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {str(checkpoint)!r} holds a {type(state).__name__}, not a state_dict")
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise UserError(f"checkpoint does not fit the {net.space.name} supernet: {detail}") from error


def _sha256(path: Path) -> str:
    """The SHA-256 (hex) of the file ``path``, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(model: SubnetViT, path: Path, batch_size: int) -> float:
    """Largest absolute difference between onnxruntime and torch on a fixed random input."""
    import onnxruntime

    x = example_input(model.geometry, batch_size)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch_out = model(x).numpy()
    return float(np.abs(onnx_out - torch_out).max())


def _export_from_server(
    server: str,
    token: str | None,
    space: str,
    arch: str,
    task: str | None,
    supernet_version: int | None,
    random_weights: bool,
    seed: int,
    precision: str,
    out: Path,
    local_only: dict[str, bool],
) -> None:
    """``gpnas export --server``: the server builds (or finds) the artifact; it is downloaded to
    ``out``, sha256-verified. The weights are named: a supernet version or random weights."""
    from search_service.schemas import ArtifactCreate

    given = [name for name, used in local_only.items() if used]
    if given:
        raise UserError(
            f"{', '.join(given)} apply to local exports only: the server builds with the space's own "
            "geometry, a dynamic batch axis and a check against torch"
        )
    if (supernet_version is None) == (not random_weights):
        raise UserError(
            "with --server, name the weights: --supernet-version N or --random-weights [--seed S]"
        )
    weights = (
        {"supernet_version": supernet_version} if supernet_version is not None else {"random_seed": seed}
    )
    body = validated(
        ArtifactCreate,
        {"space": space, "arch": arch, "task": task, "weights": weights, "precision": precision},
    )
    with api_client(server, token, None) as api:
        fetch_artifact(api, body, out)


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        space: str = typer.Option(..., "--space", help="A UFO space. " + space_help(server=True)),
        arch: str = typer.Option(..., "--arch", help="Arch string of the subnet to extract."),
        out: Path = typer.Option(..., "--out", help="Destination .onnx file."),
        task: str | None = typer.Option(None, "--task", help="Task path and head (required for multipath)."),
        checkpoint: Path | None = typer.Option(
            None,
            "--checkpoint",
            help="The supernet's weights: a .safetensors file (as `gpnas supernets add` registers) or a "
            "torch.save state_dict. Give it or --random-weights.",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of --random-weights."),
        batch_size: int = typer.Option(1, "--batch-size", min=1, help="Batch dimension of the graph."),
        embed_dim: int | None = typer.Option(None, "--embed-dim", help="Override the token width."),
        patch_size: int | None = typer.Option(None, "--patch-size", help="Override the patch side."),
        image_size: int | None = typer.Option(None, "--image-size", help="Override the input side."),
        head_dim: int | None = typer.Option(None, "--head-dim", help="Override the attention head width."),
        in_chans: int | None = typer.Option(None, "--in-chans", help="Override the input channels."),
        verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare onnxruntime with torch."),
        dynamo: bool = typer.Option(
            False, "--dynamo/--torchscript", help="ONNX exporter: torch.export or TorchScript (faster)."
        ),
        server: ServerOption = None,
        token: TokenOption = None,
        supernet_version: int | None = typer.Option(
            None, "--supernet-version", min=1, help="With --server: a registered version of the supernet."
        ),
        random_weights: bool = typer.Option(
            False,
            "--random-weights",
            help="Random weights from --seed, named explicitly (there is no default: locally, give "
            "this or --checkpoint; with --server, this or --supernet-version).",
        ),
        precision: str = typer.Option("fp32", "--precision", help="With --server: fp32 or fp16."),
    ) -> None:
        """Extract ARCH's path from SPACE's supernet and export it to ONNX (with --server: have the
        server build, check and store it, and download it)."""
        if server is not None:
            local_only = {
                "--checkpoint": checkpoint is not None,
                "--batch-size": batch_size != 1,
                "--dynamo": dynamo,
                "--no-verify": not verify,
                "geometry overrides": any(
                    v is not None for v in (embed_dim, patch_size, image_size, head_dim, in_chans)
                ),
            }
            _export_from_server(
                server,
                token,
                space,
                arch,
                task,
                supernet_version,
                random_weights,
                seed,
                precision,
                out,
                local_only,
            )
            return
        if supernet_version is not None or precision != "fp32":
            raise UserError("--supernet-version and --precision ask a server for the file: give --server URL")
        overrides = {
            name: value
            for name, value in dict(
                embed_dim=embed_dim,
                patch_size=patch_size,
                image_size=image_size,
                head_dim=head_dim,
                in_chans=in_chans,
            ).items()
            if value is not None
        }
        # Check everything cheap before allocating the (up to GB-sized) supernet.
        resolved = resolve_space(space)
        if not isinstance(resolved, UFOSpace):
            raise UserError(f"space {resolved.name!r} has no supernet; only UFO spaces do")
        try:
            target = ufo_space(resolved, **overrides)
            resolve_path(target, arch, task)
        except ValueError as error:  # a geometry override, --arch or --task the space refuses
            raise UserError(str(error)) from error
        if (checkpoint is None) == (not random_weights):
            raise UserError(
                "name the weights to export: --checkpoint FILE (a trained supernet) or --random-weights "
                "[--seed S] (one of them; there is no default)"
            )
        net = build_supernet(target, seed=seed)
        if checkpoint is not None:
            _load_state_dict(net, checkpoint)
            typer.echo(f"weights: checkpoint {checkpoint} sha256 {_sha256(checkpoint)}")
        else:
            typer.echo(f"weights: random weights (seed {seed})")
        model = net.extract(arch, task=task).eval()
        export_onnx(model, out, batch_size=batch_size, dynamo=dynamo)
        g = net.space.geometry
        params = sum(p.numel() for p in model.parameters())
        width = model.head.out_features if model.head is not None else g.embed_dim
        typer.echo(
            f"wrote {out}: {space} {model.arch} task={task or '-'} params={params} input "
            f"[{batch_size}, {g.in_chans}, {g.image_size}, {g.image_size}] -> output [{batch_size}, {width}]"
        )
        if verify:
            diff = _verify(model, out, batch_size)
            typer.echo(f"onnxruntime max |diff| vs torch: {diff:.3g}")
            if not diff <= VERIFY_TOLERANCE:
                typer.echo(f"error: onnxruntime differs from torch by more than {VERIFY_TOLERANCE}", err=True)
                raise typer.Exit(1)
