"""``gpnas profile`` and ``gpnas profilers``."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from search_service.cli import app
from tests._data import DATA_DIR

FBNET = DATA_DIR / "device_latency" / "fbnet.csv"
GPNAS = [sys.executable, "-c", "from search_service.cli import main; main()"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.usefixtures("data_dir")
def test_profile_table_writes_predict_ready_csv(tmp_path):
    out = tmp_path / "pixel2.csv"
    args = [
        "profile",
        "--space",
        "fbnet",
        "--device",
        "table",
        "--set",
        f"path={FBNET}",
        "--set",
        "column=pixel2",
        "--samples",
        "6",
        "--seed",
        "3",
        "--out",
        str(out),
        "--column",
        "pixel2",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert len(rows) == 6 and list(rows[0]) == ["arch", "pixel2", "std", "p10", "p90", "repeats", "flagged"]
    truth = {r["arch"]: float(r["pixel2"]) for r in _rows(FBNET)}
    assert all(float(r["pixel2"]) == pytest.approx(truth[r["arch"]]) for r in rows)
    again = tmp_path / "again.csv"
    CliRunner().invoke(app, [*args[:-4], "--out", str(again), "--column", "pixel2"])
    assert _rows(again) == rows  # same seed, same subnets


def test_profile_torch_cpu_with_progress_and_archs_file(tmp_path):
    archs = tmp_path / "archs.csv"
    archs.write_text("arch\n" + "j" + "331" * 10 + "000" * 2 + "\n")
    out = tmp_path / "cpu.csv"
    args = [
        "profile",
        "--space",
        "ufo-track2",
        "--device",
        "torch-cpu",
        "--set",
        "threads=1",
        "--set",
        "image_size=32",
        "--set",
        "warmup=1",
        "--set",
        "min_repeats=3",
        "--archs",
        str(archs),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1/1" in result.stderr and "subnet/s" in result.stderr  # tqdm progress bar with rate/ETA
    (row,) = _rows(out)
    assert float(row["latency_ms"]) > 0 and int(row["repeats"]) >= 3
    assert float(row["p10"]) <= float(row["latency_ms"]) <= float(row["p90"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "torch-cpu", "--set", "thread=1"], "unknown setting 'thread' for profiler 'torch-cpu'"),
        (["--device", "torch-cpu", "--set", "threads"], "--set expects KEY=VALUE"),
        (["--device", "nope"], "unknown profiler 'nope'; known profilers:"),
        (["--device", "table-score", "--set", "path=/nonexistent.json"], "no such file"),
        (
            ["--device", "table-score", "--set", "path=/x.json", "--archs", "a.csv"],
            "exactly one of --samples",
        ),
    ],
)
def test_profile_bad_input_raises_a_value_error_naming_it(args, message):
    result = CliRunner().invoke(app, ["profile", "--space", "ufo-track2", "--samples", "2", *args])
    assert isinstance(result.exception, ValueError) and message in str(result.exception)


def test_errors_are_one_line_and_exit_2():
    done = subprocess.run(
        [
            *GPNAS,
            "profile",
            "--space",
            "ufo-track2",
            "--samples",
            "2",
            "--device",
            "torch-cpu",
            "--set",
            "threads=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: setting 'threads' of profiler 'torch-cpu' must be >= 1, got 0"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch-cuda is available on this machine")
def test_missing_hardware_is_one_error_line_and_exit_2():
    done = subprocess.run(
        [*GPNAS, "profile", "--space", "ufo-track2", "--samples", "2", "--device", "torch-cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: profiler 'torch-cuda' needs a CUDA device; none is visible"
    ]
    assert done.returncode == 2


def test_profilers_lists_builtins_with_settings():
    result = CliRunner().invoke(app, ["profilers"])
    assert result.exit_code == 0
    for name in ("torch-cpu", "onnxruntime-cpu", "torch-cuda", "table", "table-score", "supernet-eval"):
        assert f"\n{name} " in "\n" + result.output
    assert "threads" in result.output and "required" in result.output
