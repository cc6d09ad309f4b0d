"""ONNX export of extracted subnets (Python API and ``gpnas export``), checked with onnxruntime."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from search_service.cli import app, main
from supernet import ONNX_INPUT, ONNX_OUTPUT, build_supernet, example_input, export_onnx

MULTIPATH_ARCH = "11" + "s12t31s23t11s32t22s13t33s21t12s31" + "000"
TRACK2_ARCH = "k" + "121331211111" * 2 + "331221311" + "000"


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {ONNX_INPUT: x.numpy()})
    return out


def tiny_args(tiny: dict[str, int]) -> list[str]:
    return [arg for name, value in tiny.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


@pytest.mark.parametrize(
    ("name", "arch", "task", "dynamo"),
    [
        ("ufo-track2", TRACK2_ARCH, None, False),
        ("ufo2-multipath", MULTIPATH_ARCH, "product", False),
        # The torch.export-based exporter takes seconds even for a tiny model: one case.
        pytest.param("ufo2-multipath", MULTIPATH_ARCH, "product", True, marks=pytest.mark.slow),
    ],
)
def test_onnxruntime_reproduces_torch(
    name: str, arch: str, task, dynamo: bool, make_supernet, tmp_path
) -> None:
    net = make_supernet(name)
    model = net.extract(arch, task=task)
    path = export_onnx(model, tmp_path / "nested" / "m.onnx", batch_size=2, dynamo=dynamo)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == [ONNX_INPUT]
    assert [o.name for o in graph.graph.output] == [ONNX_OUTPUT]
    assert not list(tmp_path.glob("nested/*.data"))  # weights live inside the one file
    x = example_input(model.geometry, 2, seed=4)
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnx(path, x)
    assert got.shape == expected.shape == (2, 512 if task else 32)
    assert np.abs(got - expected).max() <= 1e-4


def test_a_dynamic_batch_serves_any_batch(make_supernet, tmp_path) -> None:
    model = make_supernet("ufo-track2").extract(TRACK2_ARCH).eval()
    path = export_onnx(model, tmp_path / "m.onnx", dynamic_batch=True)
    for batch in (1, 3):
        x = example_input(model.geometry, batch, seed=batch)
        with torch.no_grad():
            np.testing.assert_allclose(run_onnx(path, x), model(x).numpy(), atol=1e-4)
    fixed = export_onnx(model, tmp_path / "fixed.onnx")
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(fixed, example_input(model.geometry, 3))
    with pytest.raises(ValueError, match="TorchScript exporter only"):
        export_onnx(model, tmp_path / "d.onnx", dynamo=True, dynamic_batch=True)


def test_export_needs_a_geometry_and_a_batch(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs a ViTGeometry"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
    net = build_supernet("ufo-track2", seed=0, embed_dim=16, head_dim=2, patch_size=16, image_size=32)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        export_onnx(net.extract(TRACK2_ARCH), tmp_path / "x.onnx", batch_size=0)


def test_cli_export_is_seeded_and_verified(tiny, tmp_path) -> None:
    out = tmp_path / "face.onnx"
    args = [
        "export",
        "--space",
        "ufo2-multipath",
        "--arch",
        MULTIPATH_ARCH,
        "--task",
        "face",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args + tiny_args(tiny) + ["--random-weights"])
    assert result.exit_code == 0, result.output
    weights, first, second = result.output.strip().splitlines()
    assert weights == "weights: random weights (seed 0)"
    model = build_supernet("ufo2-multipath", seed=0, **tiny).extract(MULTIPATH_ARCH, task="face")
    params = sum(p.numel() for p in model.parameters())
    assert first.startswith(f"wrote {out}: ufo2-multipath {MULTIPATH_ARCH} task=face params={params} ")
    assert first.endswith("input [1, 3, 32, 32] -> output [1, 512]")
    assert float(second.rsplit(" ", 1)[1]) <= 1e-4
    # --random-weights without --seed is seed 0: the file reproduces that model.
    x = example_input(model.geometry, 1, seed=9)
    with torch.no_grad():
        assert np.abs(run_onnx(out, x) - model(x).numpy()).max() <= 1e-4


@pytest.mark.parametrize("kind", ["torch.save", "safetensors"])
def test_cli_export_loads_a_checkpoint(kind: str, tiny, make_supernet, tmp_path) -> None:
    trained = make_supernet("ufo-track2", seed=3)
    if kind == "safetensors":
        checkpoint = tmp_path / "supernet.safetensors"
        save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(checkpoint))
    else:
        checkpoint = tmp_path / "supernet.pt"
        torch.save({"state_dict": trained.state_dict()}, checkpoint)
    out = tmp_path / "t.onnx"
    args = [
        "export",
        "--space",
        "ufo-track2",
        "--arch",
        TRACK2_ARCH,
        "--out",
        str(out),
        "--checkpoint",
        str(checkpoint),
    ]
    result = CliRunner().invoke(app, args + tiny_args(tiny) + ["--no-verify", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    weights, _ = result.output.strip().splitlines()
    assert (
        weights
        == f"weights: checkpoint {checkpoint} sha256 {hashlib.sha256(checkpoint.read_bytes()).hexdigest()}"
    )
    x = example_input(trained.space.geometry, 3, seed=1)
    with torch.no_grad():
        expected = trained(x, TRACK2_ARCH).numpy()
    assert np.abs(run_onnx(out, x) - expected).max() <= 1e-4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--space", "ufo-track2", "--arch", "j" + "411" * 11],
            "error: ufo-track2 arch must be a 37-character",
        ),
        (
            ["--space", "ufo-track2", "--arch", "j" + "411" + "111" * 9 + "000" * 2],
            "error: ufo-track2 arch position 1",
        ),
        (["--space", "resnet", "--arch", TRACK2_ARCH], "error: unknown space 'resnet'"),
        (["--space", "fbnet", "--arch", "0" * 22], "error: space 'fbnet' has no supernet"),
        (
            ["--space", "ufo2-multipath", "--arch", MULTIPATH_ARCH, "--task", "cat"],
            "error: unknown task 'cat'",
        ),
        (
            ["--space", "ufo2-multipath", "--arch", MULTIPATH_ARCH],
            "error: space 'ufo2-multipath' routes FFNs",
        ),
        (
            ["--space", "ufo-track2", "--arch", TRACK2_ARCH, "--checkpoint", "/nonexistent.pt"],
            "error: checkpoint",
        ),
        (
            ["--space", "ufo-track2", "--arch", TRACK2_ARCH, "--embed-dim", "0"],
            "error: geometry embed_dim must be",
        ),
    ],
)
def test_cli_export_errors_are_one_line(extra, message: str, tiny, monkeypatch, capsys, tmp_path) -> None:
    out = tmp_path / "m.onnx"
    argv = ["gpnas", "export", "--out", str(out)] + tiny_args(
        {k: v for k, v in tiny.items() if k != "embed_dim"}
    )
    monkeypatch.setattr(sys, "argv", argv + extra)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not out.exists()


@pytest.mark.parametrize("weights", [[], ["--random-weights", "--checkpoint", "w.pt"]])
def test_cli_export_names_its_weights_or_refuses(
    weights: list[str], tiny, monkeypatch, capsys, tmp_path
) -> None:
    """No silent random default: neither --checkpoint nor --random-weights (or both) is an error."""
    out = tmp_path / "m.onnx"
    argv = ["gpnas", "export", "--space", "ufo-track2", "--arch", TRACK2_ARCH, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv + tiny_args(tiny) + weights)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--checkpoint FILE" in line and "--random-weights" in line and "no default" in line
    assert not out.exists()


def test_cli_export_rejects_a_checkpoint_of_another_geometry(tiny, monkeypatch, capsys, tmp_path) -> None:
    checkpoint = tmp_path / "wide.pt"
    torch.save(build_supernet("ufo-track2", seed=0, **{**tiny, "embed_dim": 16}).state_dict(), checkpoint)
    argv = [
        "gpnas",
        "export",
        "--space",
        "ufo-track2",
        "--arch",
        TRACK2_ARCH,
        "--out",
        str(tmp_path / "m.onnx"),
    ]
    monkeypatch.setattr(sys, "argv", argv + tiny_args(tiny) + ["--checkpoint", str(checkpoint)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint does not fit the ufo-track2 supernet")
