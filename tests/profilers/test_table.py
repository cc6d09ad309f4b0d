"""Replay profilers against the real reference data in ../shared/data."""

from __future__ import annotations

import csv
import json

import pytest

from profilers import LocalConfig, create_profiler
from supernet import get_space
from tests._data import DATA_DIR

FBNET = "device_latency/fbnet.csv"  # file settings are relative to the machine's data directory
NB201 = "device_latency/nasbench201.csv"
TRACK2 = "ufo_track2/train.json"
LOCAL = LocalConfig(data_dir=DATA_DIR)


@pytest.mark.usefixtures("data_dir")
def test_table_latency_replays_the_csv_column():
    with open(DATA_DIR / FBNET, newline="") as handle:
        rows = [row for _, row in zip(range(20), csv.DictReader(handle), strict=False)]
    profiler = create_profiler("table", get_space("fbnet"), local=LOCAL, path=FBNET, column="pixel2")
    for row in rows:
        result = profiler.measure(row["arch"])
        assert result.value == float(row["pixel2"])
        assert result.environment == {"source": FBNET, "column": "pixel2"}  # not the machine's path
    known = profiler.known_subnets()
    assert len(known) == 5000 and get_space("fbnet").format(known[0]) == rows[0]["arch"]


@pytest.mark.usefixtures("data_dir")
def test_table_latency_nb201_and_errors():
    space = get_space("nasbench201")
    profiler = create_profiler("table", space, local=LOCAL, path=NB201, column="raspi4")
    arch = space.format(space.sample(1, seed=3)[0])  # NB201's table holds the whole space
    assert profiler.measure(arch).value > 0
    with pytest.raises(ValueError, match="'gold_9999' is not a column.*raspi4"):
        create_profiler("table", space, local=LOCAL, path=NB201, column="gold_9999")
    with pytest.raises(ValueError, match="no such file"):
        create_profiler("table", space, local=LOCAL, path="nonexistent.csv", column="raspi4")


@pytest.mark.usefixtures("data_dir")
def test_table_score_reads_ufo_track2_ranks():
    data = json.loads((DATA_DIR / TRACK2).read_text())
    record = next(iter(data.values()))
    profiler = create_profiler("table-score", get_space("ufo-track2"), local=LOCAL, path=TRACK2)
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
    local = LocalConfig(data_dir=tmp_path)
    profiler = create_profiler("table-score", space, local=local, path="scores.csv")
    assert [profiler.score(a, "person").value for a in archs] == [10.0, 9.0, 8.0]
    path.write_text("arch,face\n" + archs[0] + ",abc\n")
    with pytest.raises(ValueError, match="column 'face' is not a number"):
        create_profiler("table-score", space, local=local, path="scores.csv")


def test_file_settings_stay_inside_the_data_directory(tmp_path):
    """A device's settings come from whoever registered it: they must not open other files."""
    space = get_space("nasbench201")
    root, outside = tmp_path / "data", tmp_path / "secret.csv"
    root.mkdir()
    outside.write_text("arch,chip\n")
    (root / "link.csv").symlink_to(outside)
    local = LocalConfig(data_dir=root)
    for path, reason in [
        ("/etc/passwd", "absolute paths are refused"),
        (str(outside), "absolute paths are refused"),
        ("~/secret.csv", "absolute paths are refused"),
        ("../secret.csv", "'..' is refused"),
        ("sub/../../secret.csv", "'..' is refused"),
        ("link.csv", "leads outside the data directory"),
    ]:
        with pytest.raises(ValueError, match=reason):
            create_profiler("table", space, local=local, path=path, column="chip")
    with pytest.raises(ValueError, match="no data directory"):
        create_profiler("table", space, local=LocalConfig(), path="secret.csv", column="chip")
    # This machine's own user (gpnas profile --set path=...) may name any file of theirs.
    own = create_profiler("table", space, local=LocalConfig(trusted=True), path=str(outside), column="chip")
    assert own.known_subnets() == []


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("null", "a JSON table is an object or a list of records, not NoneType"),
        ("[1, 2]", "every record needs an 'arch' field"),
        ('{"a": ', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_unreadable_json_tables_are_value_errors(tmp_path, content, reason):
    path = tmp_path / "t.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=reason):
        create_profiler(
            "table-score", get_space("ufo-track2"), local=LocalConfig(data_dir=tmp_path), path="t.json"
        )


def test_a_csv_field_over_the_csv_limit_is_a_value_error(tmp_path):
    (tmp_path / "t.csv").write_text("arch,chip\n" + "x" * 200_000 + ",1\n")
    with pytest.raises(ValueError, match="not a readable CSV .*field larger than field limit"):
        create_profiler(
            "table", get_space("fbnet"), local=LocalConfig(data_dir=tmp_path), path="t.csv", column="chip"
        )
