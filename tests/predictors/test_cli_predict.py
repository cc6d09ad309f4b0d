"""The ``gpnas predict`` contract: once as the installed console script, errors in-process."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search_service.cli import main
from search_service.cli._predict import default_models
from supernet import Metric

GPNAS = str(Path(sys.executable).parent / "gpnas")


@pytest.fixture(scope="module")
def files(tmp_path_factory, nb201):
    tmp = tmp_path_factory.mktemp("cli")
    devices = ["gold_6226", "fpga", "eyeriss", "pixel2", "titan_rtx_256"]
    train = nb201.loc[:199, ["arch", *devices]].copy()
    train.loc[15:, "pixel2"] = np.nan  # the new chip: 15 measurements
    train.to_csv(tmp / "train.csv", index=False)
    nb201.loc[1000:1099, ["arch"]].to_csv(tmp / "query.csv", index=False)
    return tmp


def _args(tmp: Path, train: str = "train.csv", query: str = "query.csv", target: str = "pixel2") -> list[str]:
    return [
        "predict", "--space", "nasbench201", "--train", str(tmp / train), "--query", str(tmp / query),
        "--out", str(tmp / "out.csv"), "--target", target,
    ]  # fmt: skip


def test_contract(files, nb201):
    result = subprocess.run([GPNAS, *_args(files)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    # A latency column gets the latency default (the held-out-chip winner), not the score one.
    assert f"(latency_ms, model {default_models()[Metric.LATENCY]})" in result.stdout
    with (files / "out.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["arch", "mean", "std"]
    assert [r[0] for r in rows[1:]] == nb201.loc[1000:1099, "arch"].tolist()
    mean = np.array([float(r[1]) for r in rows[1:]])
    std = np.array([float(r[2]) for r in rows[1:]])
    assert (std > 0).all()
    truth = nb201.loc[1000:1099, "pixel2"].to_numpy()
    assert np.corrcoef(mean, truth)[0, 1] > 0.8


def _error_line(files, capsys, monkeypatch, name: str | None = None, text: str = "", **kwargs) -> str:
    """Run the console-script entry point in-process; it must exit non-zero with one error line."""
    if name is not None:
        (files / name).write_text(text)
    monkeypatch.setattr(sys, "argv", ["gpnas", *_args(files, **kwargs)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code not in (0, None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def test_unknown_arch_names_row_and_column(files, nb201, capsys, monkeypatch):
    text = f"arch,pixel2\n{nb201.arch[0]},3\nnot-an-arch,4\n"
    line = _error_line(files, capsys, monkeypatch, "bad_arch.csv", text, train="bad_arch.csv")
    assert "row 2" in line and "'arch'" in line and "not-an-arch" in line


def test_non_numeric_cell_names_row_and_column(files, nb201, capsys, monkeypatch):
    text = f"arch,gold_6226,pixel2\n{nb201.arch[0]},1.5,3\n{nb201.arch[1]},fast,4\n{nb201.arch[2]},2,5\n"
    line = _error_line(files, capsys, monkeypatch, "bad_cell.csv", text, train="bad_cell.csv")
    assert "row 2" in line and "'gold_6226'" in line and "'fast'" in line


def test_no_target_values(files, nb201, capsys, monkeypatch):
    text = f"arch,gold_6226,pixel2\n{nb201.arch[0]},1.5,\n{nb201.arch[1]},2.5,\n"
    line = _error_line(files, capsys, monkeypatch, "no_target.csv", text, train="no_target.csv")
    assert "'pixel2'" in line and "no values" in line


def test_unknown_query_arch_and_target(files, capsys, monkeypatch):
    line = _error_line(
        files, capsys, monkeypatch, "bad_query.csv", "arch\n|none~0|+|bogus|\n", query="bad_query.csv"
    )
    assert "query row 1" in line and "'arch'" in line
    line = _error_line(files, capsys, monkeypatch, target="nope")
    assert "'nope'" in line and "pixel2" in line


def test_task_columns_are_scores(tmp_path, ufo, capsys, monkeypatch):
    """Columns named after the space's tasks are ranks: fit as scores, not as latencies.

    The real ``dukemtmc`` ranks of these subnets are all positive while other tasks hold a
    rank 0, so only the column name can tell that the file holds scores.
    """
    from scipy.stats import kendalltau

    from supernet import TRACK2_TASKS, get_space

    space = get_space("ufo-track2")
    subs, Y = ufo
    archs = [space.format(sub) for sub in subs]
    target = TRACK2_TASKS.index("dukemtmc")
    with (tmp_path / "train.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch", *TRACK2_TASKS])
        for i in range(150):
            # The new task: 20 measured subnets, the others only on the related tasks.
            values = [str(int(v)) if j != target or i < 20 else "" for j, v in enumerate(Y[i].tolist())]
            writer.writerow([archs[i], *values])
    (tmp_path / "query.csv").write_text("arch\n" + "\n".join(archs[300:400]) + "\n")
    monkeypatch.setattr(sys, "argv", [
        "gpnas", "predict", "--space", "ufo-track2", "--train", str(tmp_path / "train.csv"),
        "--query", str(tmp_path / "query.csv"), "--out", str(tmp_path / "out.csv"), "--target", "dukemtmc",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 0, captured.err
    assert "(score," in captured.out
    with (tmp_path / "out.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["arch"] for row in rows] == archs[300:400]
    tau = kendalltau([float(row["mean"]) for row in rows], Y[300:400, target].numpy()).statistic
    assert tau > 0.3


def test_debug_shows_the_traceback_of_an_error(tmp_path):
    command = [sys.executable, "-c", "from search_service.cli import main; main()"]
    args = [
        "predict",
        "--space",
        "nope",
        "--train",
        "t.csv",
        "--query",
        "q.csv",
        "--out",
        "o.csv",
        "--target",
        "x",
    ]
    plain = subprocess.run([*command, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert plain.returncode == 2 and plain.stderr.strip() == (
        "error: unknown space 'nope'; known spaces: ufo-track2, ufo2-multipath, fbnet, nasbench201"
    )
    debug = subprocess.run(
        [*command, "--debug", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert (
        debug.returncode != 0 and "Traceback" in debug.stderr and "ValueError: unknown space" in debug.stderr
    )
