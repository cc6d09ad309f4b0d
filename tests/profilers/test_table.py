"""Replay profilers against the real reference data in ../shared/data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from profilers import create_profiler
from supernet import get_space

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FBNET = DATA / "device_latency" / "fbnet.csv"
NB201 = DATA / "device_latency" / "nasbench201.csv"
TRACK2 = DATA / "ufo_track2" / "train.json"
needs_data = pytest.mark.skipif(not FBNET.exists(), reason="../shared/data is not beside the checkout")


@needs_data
def test_table_latency_replays_the_csv_column():
    with open(FBNET, newline="") as handle:
        rows = [row for _, row in zip(range(20), csv.DictReader(handle), strict=False)]
    profiler = create_profiler("table", get_space("fbnet"), path=str(FBNET), column="pixel2")
    for row in rows:
        result = profiler.measure(row["arch"])
        assert result.value == float(row["pixel2"])
        assert result.environment["column"] == "pixel2"
    known = profiler.known_subnets()
    assert len(known) == 5000 and get_space("fbnet").format(known[0]) == rows[0]["arch"]


@needs_data
def test_table_latency_nb201_and_errors():
    space = get_space("nasbench201")
    profiler = create_profiler("table", space, path=str(NB201), column="raspi4")
    arch = space.format(space.sample(1, seed=3)[0])  # NB201's table holds the whole space
    assert profiler.measure(arch).value > 0
    with pytest.raises(ValueError, match="'gold_9999' is not a column.*raspi4"):
        create_profiler("table", space, path=str(NB201), column="gold_9999")
    with pytest.raises(ValueError, match="no such file"):
        create_profiler("table", space, path="/nonexistent.csv", column="raspi4")


@needs_data
def test_table_score_reads_ufo_track2_ranks():
    data = json.loads(TRACK2.read_text())
    record = next(iter(data.values()))
    profiler = create_profiler("table-score", get_space("ufo-track2"), path=str(TRACK2))
    assert profiler.metric == "score"
    for task in ("cplfw", "sop", "veriwild"):
        assert profiler.score(record["arch"], task).value == record[f"{task}_rank"]
    assert profiler.profile(record["arch"], "sop").value == record["sop_rank"]
    with pytest.raises(ValueError, match="task 'imagenet' has no column.*market1501"):
        profiler.score(record["arch"], "imagenet")
    with pytest.raises(ValueError, match="no task was given"):
        profiler.profile(record["arch"])
    unknown = "l" + "111" * 12
    if unknown not in {r["arch"] for r in data.values()}:
        with pytest.raises(ValueError, match="is not in table"):
            profiler.score(unknown, "sop")


def test_table_score_csv(tmp_path):
    space = get_space("ufo-track2")
    archs = [space.format(s) for s in space.sample(3, seed=0)]
    path = tmp_path / "scores.csv"
    path.write_text("arch,face,person\n" + "".join(f"{a},{i},{10 - i}\n" for i, a in enumerate(archs)))
    profiler = create_profiler("table-score", space, path=str(path))
    assert [profiler.score(a, "person").value for a in archs] == [10.0, 9.0, 8.0]
    path.write_text("arch,face\n" + archs[0] + ",abc\n")
    with pytest.raises(ValueError, match="column 'face' is not a number"):
        create_profiler("table-score", space, path=str(path))
