"""``gpnas suggest``: the next subnets to measure on a target, from a CSV of measurements."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from predictors import TransferPredictor, create_strategy
from search_service.cli import main
from supernet import TRACK2_TASKS, get_space

DEVICES = ["gold_6226", "fpga", "eyeriss", "titan_rtx_256"]


def _run(monkeypatch, *args: str) -> int | None:
    monkeypatch.setattr(sys, "argv", ["gpnas", "suggest", "--space", "nasbench201", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


def _archs(path: Path) -> list[str]:
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["arch"]
    return [r[0] for r in rows[1:]]


def test_new_chip_gets_the_transfer_prior_design(tmp_path, nb201, monkeypatch):
    """A chip absent from TRAIN: the picks are the integrated-variance design under the other
    chips' transfer prior, among TRAIN's archs."""
    nb201.loc[:149, ["arch", *DEVICES]].to_csv(tmp_path / "train.csv", index=False)
    code = _run(
        monkeypatch, "--train", str(tmp_path / "train.csv"), "--target", "raspi4", "--n", "6",
        "--out", str(tmp_path / "next.csv"),
    )  # fmt: skip
    assert code in (0, None)
    space = get_space("nasbench201")
    subs = space.parse_many(nb201.arch[:150].tolist())
    prior = TransferPredictor(space, metric="latency_ms").fit_sources(
        subs, torch.tensor(nb201.loc[:149, DEVICES].to_numpy(), dtype=torch.float64)
    )
    expected = create_strategy("integrated-variance").select(space, prior, [], 6, candidates=subs, seed=0)
    assert _archs(tmp_path / "next.csv") == [space.format(s) for s in expected]


def test_measured_chip_skips_its_measured_and_honours_candidates(tmp_path, nb201, monkeypatch):
    train = nb201.loc[:149, ["arch", *DEVICES, "raspi4"]].copy()
    train.loc[5:, "raspi4"] = np.nan  # five values: the posterior guides the next picks
    train.to_csv(tmp_path / "train.csv", index=False)
    nb201.loc[1000:1039, ["arch"]].to_csv(tmp_path / "pool.csv", index=False)
    args = ["--train", str(tmp_path / "train.csv"), "--target", "raspi4", "--out", str(tmp_path / "next.csv")]
    assert _run(monkeypatch, *args, "--n", "4", "--strategy", "max-variance") in (0, None)
    picks = _archs(tmp_path / "next.csv")
    assert len(set(picks)) == 4 and not set(picks) & set(nb201.arch[:5])
    assert set(picks) <= set(nb201.arch[:150])
    assert _run(monkeypatch, *args, "--n", "4", "--candidates", str(tmp_path / "pool.csv")) in (0, None)
    assert set(_archs(tmp_path / "next.csv")) <= set(nb201.arch[1000:1040])


def test_errors_name_the_problem(tmp_path, nb201, monkeypatch, capsys):
    nb201.loc[:9, ["arch", "fpga"]].to_csv(tmp_path / "train.csv", index=False)
    args = ["--train", str(tmp_path / "train.csv"), "--target", "raspi4", "--out", str(tmp_path / "o.csv")]
    assert _run(monkeypatch, *args, "--n", "11") == 2
    assert "only 10 unmeasured candidates" in capsys.readouterr().err
    assert _run(monkeypatch, *args, "--n", "2", "--strategy", "qlognehvi") == 2
    assert "single-target strategy" in capsys.readouterr().err


def test_small_or_score_trains_still_suggest(tmp_path, ufo, nb201, monkeypatch):
    """Too few related values for a transfer prior: picks are spread out instead of failing; a new
    task among score columns is treated as a score (ranks include 0, which a log would refuse)."""
    subs, Y = ufo
    space = get_space("ufo-track2")
    rows = [[space.format(s), *y.tolist()] for s, y in zip(subs[:40], Y[:40], strict=True)]
    with (tmp_path / "scores.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["arch", *TRACK2_TASKS], *rows])
    out = tmp_path / "next.csv"
    args = ["--target", "cifar100", "--n", "3", "--out", str(out), "--train", str(tmp_path / "scores.csv")]
    monkeypatch.setattr(sys, "argv", ["gpnas", "suggest", "--space", "ufo-track2", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    assert len(set(_archs(out))) == 3
    nb201.loc[:3, ["arch", "fpga"]].to_csv(tmp_path / "tiny.csv", index=False)
    tiny = ["--train", str(tmp_path / "tiny.csv"), "--target", "raspi4", "--n", "2", "--out", str(out)]
    assert _run(monkeypatch, *tiny) in (0, None)
    assert len(set(_archs(out))) == 2 and set(_archs(out)) <= set(nb201.arch[:4])
