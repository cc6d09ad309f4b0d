"""A separate distribution (examples/gpnas-example-chip) adds a chip through entry points."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from profilers import LatencyProfiler, available_profilers, create_profiler
from supernet import get_space

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gpnas-example-chip"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """pip-installs the example package (no deps, no network) into a fresh target folder."""
    source = tmp_path_factory.mktemp("src") / "gpnas-example-chip"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
    )
    assert (target / "gpnas_example_chip").is_dir()
    return target


def test_the_example_package_is_at_most_30_lines():
    lines = (EXAMPLE / "pyproject.toml").read_text().splitlines()
    lines += (EXAMPLE / "gpnas_example_chip" / "__init__.py").read_text().splitlines()
    assert len(lines) <= 30


def test_installed_plugin_is_found_and_measures(installed_example, monkeypatch):
    assert "example-chip" not in available_profilers()
    monkeypatch.syspath_prepend(str(installed_example))
    assert "example-chip" in available_profilers()
    space = get_space("ufo-track2")
    chip = create_profiler("example-chip", space, tera_macs=2, bandwidth_gbs="10")
    assert isinstance(chip, LatencyProfiler) and chip.metric == "latency_ms"
    large, small = "l" + "111" * 12, "j" + "331" * 10 + "000" * 2
    assert chip.measure(large).value > chip.measure(small).value > 0
    faster = create_profiler("example-chip", space, tera_macs=20, bandwidth_gbs=100)
    assert faster.measure(large).value < chip.measure(large).value
    with pytest.raises(ValueError, match="unknown setting 'tops' for profiler 'example-chip'"):
        create_profiler("example-chip", space, tops=1)


def test_cli_uses_the_plugin(installed_example, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed_example)}
    gpnas = [sys.executable, "-c", "from search_service.cli import main; main()"]
    out = tmp_path / "chip.csv"
    subprocess.run(
        [
            *gpnas,
            "profile",
            "--space",
            "ufo-track2",
            "--device",
            "example-chip",
            "--set",
            "tera_macs=8",
            "--samples",
            "4",
            "--seed",
            "1",
            "--out",
            str(out),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    rows = out.read_text().splitlines()
    assert rows[0] == "arch,latency_ms,std,p10,p90,repeats,flagged,unscaled,reference_ms,level_ms"
    assert len(rows) == 5


def test_gpnas_profilers_lists_the_plugin(installed_example, monkeypatch):
    from typer.testing import CliRunner

    from search_service.cli import app

    monkeypatch.syspath_prepend(str(installed_example))
    result = CliRunner().invoke(app, ["profilers"])
    assert "example-chip" in result.output and "tera_macs" in result.output
