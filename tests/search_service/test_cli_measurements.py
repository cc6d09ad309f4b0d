"""``gpnas measurements upload``: what ``gpnas profile --out`` wrote on a chip with no network
path to the server, stored once however often it is uploaded, all or nothing."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings
from typer.testing import CliRunner, Result

from search_service import Settings, create_app
from search_service import repositories as repo
from search_service.cli import app
from search_service.core import make_engine, make_sessionmaker, upgrade
from search_service.errors import UserError
from search_service.testing import serving
from tests._data import DATA_DIR

# What `gpnas profile --space ufo-track2 --device torch-cpu --out` wrote on a machine here: values
# rescaled to the long-run level, with the batch's level columns.
TORCH_CSV = """\
arch,latency_ms,std,p10,p90,repeats,flagged,unscaled,reference_ms,level_ms
l131331111211111131211221231131111111,56.2458,7.282,52.3164,63.5582,3,0,56.2458,52.2961,52.2961
l121331221211121221311221231331311321,55.6848,6.656,50.5699,59.2765,3,1,55.6848,52.2961,52.2961
k231311311211311331311211311111231000,54.7783,7.294,48.4662,58.7142,3,0,54.7783,52.2961,52.2961
"""
PIXEL2 = {"path": "device_latency/nasbench201.csv", "column": "pixel2"}


def _gpnas(*args: str, database: str | None = None, **env: str) -> Result:
    variables: dict[str, str | None] = {"GPNAS_SERVER": None, "GPNAS_DATABASE_URL": database}
    return CliRunner().invoke(app, list(args), env={**variables, **env})


def _refusal(result: Result) -> str:
    assert isinstance(result.exception, UserError), result.output
    return str(result.exception)


def _stored(database: str, device: str) -> list[dict[str, Any]]:
    with TestClient(create_app(make_settings(database))) as client:
        page = client.get("/v1/measurements", params={"device": device, "limit": 1000}).json()
    return sorted(page["measurements"], key=lambda m: m["arch"])


def _register(database: str, name: str, profiler: str, settings: dict[str, Any]) -> None:
    with TestClient(create_app(make_settings(database))) as client:
        body = {"name": name, "profiler": profiler, "settings": settings}
        assert client.post("/v1/devices", json=body).status_code == 201


def test_a_profiled_file_is_stored_once_however_often_it_is_uploaded(db_url: str, tmp_path: Path) -> None:
    _register(db_url, "pixel2", "table", PIXEL2)
    out = tmp_path / "pixel2.csv"
    # On the chip, offline: the settings its own user types name the table on that machine.
    profiled = _gpnas("profile", "--space", "nasbench201", "--device", "table", "--samples", "5",
                      "--set", f"path={DATA_DIR / PIXEL2['path']}", "--set", "column=pixel2",
                      "--out", str(out), "--levels", str(tmp_path / "levels.json"))  # fmt: skip
    assert profiled.exit_code == 0, profiled.output
    upload = ["measurements", "upload", str(out), "--device", "pixel2", "--space", "nasbench201"]
    # A server that takes 2 measurements a request: the file goes in smaller batches.
    first = _gpnas(*upload, database=db_url, GPNAS_MAX_BATCH="2")
    assert first.exit_code == 0, first.output
    assert "5 rows of device pixel2 on nasbench201: 5 stored, 0 stored before" in first.output
    assert "sending 2 at a time" in first.output
    again = _gpnas(*upload, database=db_url)
    assert "5 stored before" in again.output and ": 0 stored" in again.output
    with open(out, newline="", encoding="utf-8") as handle:
        written = {row["arch"]: float(row["latency_ms"]) for row in csv.DictReader(handle)}
    stored = _stored(db_url, "pixel2")
    assert {m["arch"]: m["value"] for m in stored} == written
    assert all(m["id"] and m["metric"] == "latency_ms" and m["space"] == "nasbench201" for m in stored)


def test_every_column_of_a_torch_profile_is_kept(db_url: str, tmp_path: Path) -> None:
    """With the space of the device's campaign (what `gpnas device add` started) as the default."""
    add = _gpnas("device", "add", "cpu-1", "--profiler", "torch-cpu", "--campaign-size", "2",
                 "--agent-server", "http://gpnas.example", database=db_url)  # fmt: skip
    assert add.exit_code == 0, add.output
    out = tmp_path / "cpu.csv"
    out.write_text(TORCH_CSV)
    done = _gpnas("measurements", "upload", str(out), "--device", "cpu-1", database=db_url)
    assert "3 rows of device cpu-1 on ufo-track2: 3 stored" in done.output, done.output
    first, second, _ = _stored(db_url, "cpu-1")
    assert first["arch"] == "k231311311211311331311211311111231000" and first["value"] == 54.7783
    assert (first["std"], first["repeats"], first["flagged"], second["flagged"]) == (7.294, 3, False, True)
    assert first["environment"] == {
        "profile_csv": {
            "p10": 48.4662,
            "p90": 58.7142,
            "unscaled": 54.7783,
            "reference_ms": 52.2961,
            "level_ms": 52.2961,
        }
    }


BAD_ROWS = [
    pytest.param((2, "std", "x"), "row 2 (line 3), column 'std': 'x' is not a number", id="number"),
    pytest.param((3, "latency_ms", "-1"), "row 3 (line 4), column 'latency_ms': '-1' must be", id="sign"),
    pytest.param((1, "latency_ms", ""), "row 1 (line 2), column 'latency_ms': empty", id="empty"),
    pytest.param((3, "repeats", "2.5"), "row 3 (line 4), column 'repeats': '2.5' is not", id="repeats"),
    pytest.param((2, "flagged", "yes"), "row 2 (line 3), column 'flagged': 'yes' is not 0 or 1", id="flag"),
    pytest.param((2, "arch", "l13"), "row 2 (line 3), column 'arch': ufo-track2 arch must be", id="arch"),
    pytest.param((1, "p90", "inf"), "row 1 (line 2), column 'p90': 'inf' is not a finite", id="finite"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "message"), BAD_ROWS)
def test_a_bad_row_stores_nothing_of_the_file(
    db_url: str, tmp_path: Path, bad: tuple[int, str, str], message: str
) -> None:
    _register(db_url, "cpu-1", "torch-cpu", {})
    row, column, cell = bad
    lines = list(csv.DictReader(TORCH_CSV.splitlines()))
    lines[row - 1][column] = cell
    out = tmp_path / "bad.csv"
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)
    refused = _gpnas("measurements", "upload", str(out), "--device", "cpu-1", "--space", "ufo-track2",
                     database=db_url)  # fmt: skip
    assert message in _refusal(refused) and str(out) in _refusal(refused)
    assert _stored(db_url, "cpu-1") == []


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        pytest.param("arch,score\nx,1\n", [], "column 'score' holds scores of a task", id="scores"),
        pytest.param("latency_ms,arch\n1,x\n", [], "the first line must be the header", id="header"),
        pytest.param(TORCH_CSV.replace(",level_ms", ",level"), [], "unknown column 'level'", id="column"),
        pytest.param(TORCH_CSV.replace(",0,5", ",0"), [], "has 9 cells but the header has 10", id="cells"),
        pytest.param(TORCH_CSV.splitlines()[0], [], "no rows under its header", id="no-rows"),
        pytest.param(TORCH_CSV, ["--device", "nope"], "device 'nope' is not registered", id="device"),
        pytest.param(TORCH_CSV, ["--device", "cpu-1"], "say which space", id="no-campaign"),
    ],
)
def test_a_file_that_is_not_a_chips_latencies_is_refused(
    db_url: str, tmp_path: Path, text: str, args: list[str], message: str
) -> None:
    _register(db_url, "cpu-1", "torch-cpu", {})
    out = tmp_path / "file.csv"
    out.write_text(text)
    device_and_space = args or ["--device", "cpu-1", "--space", "ufo-track2"]
    refused = _gpnas("measurements", "upload", str(out), *device_and_space, database=db_url)
    assert message in _refusal(refused)
    assert _stored(db_url, "cpu-1") == []


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A live service with auth on that takes 2 measurements a request: URL, database, admin token."""
    url = f"sqlite:///{tmp_path / 'gpnas.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine, write=True)() as session:
        _, admin = repo.create_token(session, label="admin")
        session.commit()
    engine.dispose()
    with serving(create_app(Settings(database_url=url, refit_worker=False, max_batch=2))) as base:
        yield base, url, admin


def test_upload_to_a_live_server_with_the_chips_own_token(live: tuple[str, str, str], tmp_path: Path) -> None:
    base, database, admin = live
    add = _gpnas("device", "add", "cpu-1", "--profiler", "torch-cpu", "--campaign-size", "2",
                 "--server", base, "--token", admin)  # fmt: skip
    device_token = add.output.split()[-1]
    out = tmp_path / "cpu.csv"
    out.write_text(TORCH_CSV)
    upload = ["measurements", "upload", str(out), "--device", "cpu-1", "--server", base]
    done = _gpnas(*upload, "--token", device_token)
    assert "3 rows of device cpu-1 on ufo-track2: 3 stored, 0 stored before" in done.output, done.output
    assert "stored, 3 stored before" in _gpnas(*upload, "--token", admin).output
    assert len(_stored(database, "cpu-1")) == 3
    # The chip's token posts only its own device's latencies.
    _register(database, "cpu-2", "torch-cpu", {})
    other = _gpnas(*upload[:3], "--device", "cpu-2", "--space", "ufo-track2", "--server", base,
                   "--token", device_token)  # fmt: skip
    assert "HTTP 403" in _refusal(other)
    assert _stored(database, "cpu-2") == []
