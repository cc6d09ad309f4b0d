"""``gpnas export --server`` and ``gpnas deploy --export`` fetch the file the server built (named
weights, sha256-verified) from a live server."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from service_helpers import RIDGE, make_settings
from test_artifacts import DEFINITION, NARROW, SPACE
from typer.testing import CliRunner

import supernet
from search_service import create_app
from search_service.cli import app as cli_app
from search_service.client import GpnasClient
from search_service.errors import UserError
from search_service.testing import serving

runner = CliRunner()


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[str, GpnasClient]]:
    """A live server (auth off) with the tiny space registered."""
    app = create_app(make_settings(db_url, data_dir=tmp_path / "data", **RIDGE))
    with serving(app) as base, GpnasClient(base) as api:
        api.http.post(f"{base}/v1/spaces", json=DEFINITION).raise_for_status()
        yield base, api


def _export(base: str, out: Path, *extra: str) -> Any:
    args = [
        "export",
        "--server",
        base,
        "--space",
        SPACE,
        "--arch",
        NARROW,
        "--task",
        "face",
        "--out",
        str(out),
    ]
    return runner.invoke(cli_app, [*args, *extra])


def test_gpnas_export_server_fetches_the_named_weights(
    server: tuple[str, GpnasClient], tmp_path: Path
) -> None:
    base, api = server
    out = tmp_path / "face.onnx"
    result = _export(base, out, "--random-weights", "--seed", "3", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    (artifact,) = api.list_artifacts().artifacts
    assert hashlib.sha256(out.read_bytes()).hexdigest() == artifact.digest
    assert artifact.weights.random_seed == 3 and artifact.precision == "fp16"
    assert f"sha256 {artifact.digest}, random weights (seed 3)" in result.output
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((2, 3, 32, 32), np.float32)})[0].shape == (2, 8)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "name the weights: --supernet-version N or --random-weights"),
        (("--random-weights", "--supernet-version", "1"), "name the weights"),
        (("--random-weights", "--checkpoint", "w.pt"), "--checkpoint apply to local exports only"),
        (("--random-weights", "--task", "car"), "car"),
        (("--supernet-version", "2"), "unknown supernet version 2"),
    ],
)
def test_gpnas_export_server_errors_name_the_problem(
    server: tuple[str, GpnasClient], tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    base, api = server
    result = _export(base, tmp_path / "x.onnx", *extra)
    assert isinstance(result.exception, UserError) and message in str(result.exception), result.output
    assert not (tmp_path / "x.onnx").exists()
    assert api.list_artifacts().total == 0


def test_server_options_need_a_server(tmp_path: Path) -> None:
    args = ["export", "--space", "ufo-track2", "--arch", "k" + "1" * 36, "--out", str(tmp_path / "x.onnx")]
    result = runner.invoke(cli_app, [*args, "--precision", "fp16"])
    assert isinstance(result.exception, UserError) and "give --server URL" in str(result.exception)


def _scored(space: supernet.SearchSpace, n: int, tasks: list[str]) -> list[dict[str, Any]]:
    """Latency on dev1 (proportional to MACs) and a score per task of ``n`` random subnets."""
    subs = space.sample(n, seed=0)
    out = []
    for sub, mac in zip(subs, space.macs(subs), strict=True):
        common = {"space": space.name, "arch": space.format(sub)}
        out.append(
            {"id": str(uuid.uuid4()), **common, "device": "dev1", "metric": "latency_ms", "value": mac / 1e6}
        )
        for i, task in enumerate(tasks):
            value = float(np.log(mac)) * (i + 1)
            out.append({"id": str(uuid.uuid4()), **common, "task": task, "metric": "score", "value": value})
    return out


def test_gpnas_deploy_export_fetches_the_chosen_deployment(
    server: tuple[str, GpnasClient], tmp_path: Path
) -> None:
    base, api = server
    device = {"name": "dev1", "profiler": "torch-cpu", "settings": {}}
    api.http.post(f"{base}/v1/devices", json=device).raise_for_status()
    space = supernet.get_space(SPACE)
    measurements = {"measurements": _scored(space, 12, ["face", "person"])}
    api.http.post(f"{base}/v1/measurements", json=measurements).raise_for_status()
    assert api.http.post(f"{base}/v1/refit", json={"wait": True}).json()["errors"] == []
    out = tmp_path / "deployment.onnx"
    args = [
        "deploy",
        "--server",
        base,
        "--space",
        SPACE,
        "--device",
        "dev1",
        "--task",
        "face",
        "--task",
        "person",
    ]
    result = runner.invoke(cli_app, [*args, "--input", "shared", "--export", str(out)])
    assert result.exit_code == 0, result.output
    (artifact,) = api.list_artifacts().artifacts
    assert hashlib.sha256(out.read_bytes()).hexdigest() == artifact.digest
    assert artifact.input == "shared" and set(artifact.tasks or {}) == {"face", "person"}
    assert f"wrote {out}" in result.output
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["output_face", "output_person"]
