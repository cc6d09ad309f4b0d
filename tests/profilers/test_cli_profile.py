"""``gpnas profile`` and ``gpnas profilers``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from profilers import ProfileResult
from search_service.cli import app
from search_service.cli._levels import LevelFile, device_key
from search_service.cli._profile import _record_level, _row
from tests._data import DATA_DIR

FBNET = DATA_DIR / "device_latency" / "fbnet.csv"
GPNAS = [sys.executable, "-c", "from search_service.cli import main; main()"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default level file under this test's directory, not the user's cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GPNAS_LEVELS", raising=False)


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
    assert len(rows) == 6 and list(rows[0]) == [
        "arch", "pixel2", "std", "p10", "p90", "repeats", "flagged", "unscaled", "reference_ms", "level_ms",
    ]  # fmt: skip
    # A table has no reference level: values as measured, the level columns empty, no level file.
    assert {(r["unscaled"], r["reference_ms"], r["level_ms"]) for r in rows} == {("", "", "")}
    assert not (tmp_path / "cache").exists()
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


def _result(value: float, level: float) -> ProfileResult:
    return ProfileResult(
        value, 1.0, 9, value - 1, value + 1, reference_arch="k" + "221" * 11 + "000", reference_ms=level
    )


def test_the_level_file_rescales_every_batch_to_the_first_batchs_level(tmp_path):
    levels = LevelFile(tmp_path / "levels.json")
    said: list[str] = []
    settings = {"threads": 1, "batch_size": 1, "seed": 0, "max_repeats": 15}
    first = _record_level(
        levels, "torch-cpu", "ufo-track2", settings, [_result(20.0, 100.0)], 1, 0.1, said.append
    )
    assert first is not None and (first.batch_ms, first.long_run_ms, first.batches) == (100.0, 100.0, 1)
    assert said == [said[0]] and "+0.0%" in said[0] and "batch 1 of this device" in said[0]
    # A pass in a slow phase: timing-only settings (seed, rounds) differ, the device is the same.
    slow_settings = {**settings, "seed": 5, "max_repeats": 7}
    outcomes: list[ProfileResult | Exception] = [_result(26.0, 130.0), ValueError("not measured")]
    slow = _record_level(levels, "torch-cpu", "ufo-track2", slow_settings, outcomes, 2, 0.1, said.append)
    assert slow is not None and (slow.batch_ms, slow.long_run_ms, slow.batches) == (130.0, 100.0, 2)
    assert said[-1].startswith("warning: batch 2's reference level moved +30.0%")
    assert _row("a", _result(26.0, 130.0), slow) == [
        "a", "20", "0.7692", "19.2308", "20.7692", 9, 0, "26", "130", "100",
    ]  # fmt: skip
    # Within the threshold: reported, no warning; another thread count is another device.
    assert _record_level(
        levels, "torch-cpu", "ufo-track2", settings, [_result(21, 105.0)], 3, 0.1, said.append
    )
    assert not said[-1].startswith("warning")
    other = _record_level(
        levels, "torch-cpu", "ufo-track2", {**settings, "threads": 2}, [_result(9, 60.0)], 1, 0.1, said.append
    )
    assert other is not None and other.long_run_ms == 60.0
    stored = json.loads((tmp_path / "levels.json").read_text())
    assert [(d["settings"]["threads"], d["long_run_ms"], d["batches"]) for d in stored["devices"]] == [
        (1, 100.0, 3),
        (2, 60.0, 1),
    ]
    assert "seed" not in stored["devices"][0]["settings"]
    # A batch without a reference (tables, the sequential protocol) is written as measured.
    plain = ProfileResult(5.0)
    assert _record_level(levels, "table", "fbnet", {}, [plain], 1, 0.1, said.append) is None
    assert _row("b", plain, None)[1:] == ["5", "0", "", "", 1, 0, "", "", ""]


def test_a_broken_level_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "levels.json"
    broken.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a gpnas level file"):
        LevelFile(broken).record(device_key("torch-cpu", "ufo-track2", "k", {}), 10.0)


def test_two_profile_passes_share_one_level(tmp_path):
    archs = tmp_path / "archs.csv"
    archs.write_text("arch\n" + "j" + "331" * 10 + "000" * 2 + "\n" + "l" + "111" * 12 + "\n")
    base = [
        "profile", "--space", "ufo-track2", "--device", "torch-cpu", "--archs", str(archs),
        "--set", "threads=1", "--set", "image_size=32", "--set", "warmup=1", "--set", "min_repeats=3",
        "--set", "max_repeats=3",
    ]  # fmt: skip
    passes = []
    for k in (1, 2):
        out = tmp_path / f"pass{k}.csv"
        result = CliRunner().invoke(app, [*base, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "batch 1: reference level" in result.stderr and f"batch {k} of this device" in result.stderr
        passes.append(_rows(out))
    level = float(passes[0][0]["reference_ms"])  # the first batch set it
    for rows in passes:
        for row in rows:
            assert float(row["level_ms"]) == pytest.approx(level, rel=1e-5)
            factor = float(row["level_ms"]) / float(row["reference_ms"])
            assert float(row["latency_ms"]) == pytest.approx(float(row["unscaled"]) * factor, rel=1e-5)
    default = tmp_path / "cache" / "gpnas" / "levels.json"  # no --levels: the user's cache
    assert json.loads(default.read_text())["devices"][0]["batches"] == 2
