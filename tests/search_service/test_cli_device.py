"""``gpnas device add``: a chip onboarded in one command, in process on a database and against a
live server; the two lines it prints are what the chip runs."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from service_helpers import make_settings
from typer.testing import CliRunner, Result

from search_service import Settings, create_app
from search_service import repositories as repo
from search_service.cli import app
from search_service.client import GpnasClient, Unauthorized
from search_service.core import make_engine, make_sessionmaker, upgrade
from search_service.errors import UserError
from search_service.schemas import LeaseRequest
from search_service.testing import serving
from tests._data import DATA_DIR

CHIP_URL = "http://gpnas.example:8000"  # where the chip reaches the service (never contacted)
CPU = ["--profiler", "torch-cpu", "--set", "threads=1", "--set", "image_size=32"]
PIXEL2 = ["--profiler", "table", "--set", "path=device_latency/nasbench201.csv", "--set", "column=pixel2"]


def _gpnas(*args: str, database: str | None = None, data_dir: Path | None = None) -> Result:
    env = {"GPNAS_SERVER": None, "GPNAS_DATABASE_URL": database, "GPNAS_TOKEN": None}
    env["GPNAS_DATA_DIR"] = None if data_dir is None else str(data_dir)
    return CliRunner().invoke(app, list(args), env=env)


def _refusal(result: Result) -> str:
    """The one-line error the command ended with (`gpnas` prints it as `error: ...`, status 2)."""
    assert isinstance(result.exception, UserError), result.output
    return str(result.exception)


def _agent_line(result: Result) -> list[str]:
    """The chip's two lines, checked to come last; the agent's command as its words."""
    assert result.exit_code == 0, result.output
    install, agent = result.output.strip().splitlines()[-2:]
    assert install == 'pip install "gpnas[agent]"'
    return shlex.split(agent)


def _state(database: str) -> tuple[list[tuple[str, str]], list[tuple[str, int, str, dict[str, int]]], int]:
    """(devices, campaigns, number of tokens) stored in ``database``."""
    with TestClient(create_app(make_settings(database))) as client:
        devices = [(d["name"], d["profiler"]) for d in client.get("/v1/devices").json()]
        campaigns = [
            (c["space"], c["n"], c["strategy"], c["jobs"]) for c in client.get("/v1/campaigns").json()
        ]
        tokens = len(client.get("/v1/tokens").json())
    return devices, campaigns, tokens


def _token_device(database: str, secret: str) -> str | None:
    """The device the token ``secret`` is restricted to (it must authenticate)."""
    engine = make_engine(database)
    try:
        with make_sessionmaker(engine)() as session:
            return repo.authenticate(session, secret).device
    finally:
        engine.dispose()


def test_device_add_onboards_a_chip_in_process_and_again_changes_nothing(db_url: str) -> None:
    add = ["device", "add", "cpu-1", *CPU, "--campaign-size", "4", "--agent-server", CHIP_URL]
    first = _gpnas(*add, database=db_url)
    words = _agent_line(first)
    assert words[:6] == ["gpnas-agent", "--server", CHIP_URL, "--device", "cpu-1", "--token"]
    secret = words[6]
    assert "registered device cpu-1" in first.output and "started campaign" in first.output
    # The space defaults to the first preset torch-cpu measures: ufo-track2.
    assert _state(db_url) == (
        [("cpu-1", "torch-cpu")],
        [("ufo-track2", 4, "cost-stratified", {"queued": 4})],
        1,
    )
    assert _token_device(db_url, secret) == "cpu-1"
    # `gpnas agent` (whose options `gpnas-agent` has) accepts the printed command as it is.
    agent = typer.main.get_command(app).get_command(typer.Context(typer.main.get_command(app)), "agent")
    assert agent is not None
    parsed = agent.make_context("gpnas agent", words[1:]).params
    assert (parsed["server"], parsed["device"], parsed["token"]) == (CHIP_URL, "cpu-1", secret)
    agent_help = _gpnas("agent", "--help").output
    assert all(option in agent_help for option in words if option.startswith("--"))

    # Again with the same settings (typed differently): the device and its campaign are kept.
    again = _gpnas("device", "add", "cpu-1", *CPU[:2], "--set", "image_size=32", "--set", "threads=1",
                   "--campaign-size", "9", "--agent-server", CHIP_URL, database=db_url)  # fmt: skip
    second_secret = _agent_line(again)[6]
    assert "exists with the same profiler and settings" in again.output
    assert "exists already" in again.output and "not started again" in again.output
    assert second_secret != secret and _token_device(db_url, second_secret) == "cpu-1"
    devices, campaigns, tokens = _state(db_url)
    assert (len(devices), len(campaigns), tokens) == (1, 1, 2)

    # Other settings: a clear error, and no token for the chip that was refused.
    other = _gpnas("device", "add", "cpu-1", *CPU[:4], "--agent-server", CHIP_URL, database=db_url)
    assert "exists with other settings" in _refusal(other) and "image_size" in _refusal(other)
    other_profiler = _gpnas("device", "add", "cpu-1", *PIXEL2, "--space", "nasbench201",
                            "--agent-server", CHIP_URL, database=db_url)  # fmt: skip
    assert "exists with profiler 'torch-cpu'" in _refusal(other_profiler)
    assert _state(db_url)[2] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([*CPU, "--set", "warp=9"], "unknown setting 'warp'", id="setting"),
        pytest.param(["--profiler", "nope"], "unknown profiler 'nope'", id="profiler"),
        pytest.param([*CPU, "--space", "nope"], "nope", id="space"),
        pytest.param([*CPU, "--campaign-size", "5000"], "--campaign-size 5000", id="size"),
        pytest.param(["--profiler", "table-score", "--space", "nasbench201"], "not latency", id="scores"),
        pytest.param(PIXEL2, "give the space its campaign measures with --space", id="table-space"),
    ],
)
def test_device_add_refused_before_anything_is_stored(db_url: str, args: list[str], message: str) -> None:
    refused = _gpnas("device", "add", "chip", *args, "--agent-server", CHIP_URL, database=db_url)
    assert message in _refusal(refused)
    assert _state(db_url) == ([], [], 0)


def test_device_add_in_process_needs_the_url_the_chip_reaches(db_url: str) -> None:
    refused = _gpnas("device", "add", "cpu-1", *CPU, database=db_url)
    assert "--agent-server URL" in _refusal(refused)
    assert _state(db_url) == ([], [], 0)


def test_a_refused_campaign_makes_no_token_and_the_next_try_goes_on(db_url: str) -> None:
    add = ["device", "add", "pixel2", *PIXEL2, "--space", "nasbench201", "--agent-server", CHIP_URL]
    # Without GPNAS_DATA_DIR the server cannot read the table its campaign picks from.
    refused = _gpnas(*add, "--campaign-size", "3", database=db_url)
    assert "GPNAS_DATA_DIR" in _refusal(refused)
    assert _state(db_url) == ([("pixel2", "table")], [], 0)  # the device stays; no token
    done = _gpnas(*add, "--campaign-size", "3", database=db_url, data_dir=DATA_DIR)
    secret = _agent_line(done)[6]
    assert "exists with the same profiler and settings" in done.output and "started campaign" in done.output
    assert _state(db_url) == (
        [("pixel2", "table")],
        [("nasbench201", 3, "cost-stratified", {"queued": 3})],
        1,
    )
    assert _token_device(db_url, secret) == "pixel2"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A live service with auth on: its URL, its database and an admin token."""
    url = f"sqlite:///{tmp_path / 'gpnas.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_sessionmaker(engine, write=True)() as session:
        _, admin = repo.create_token(session, label="admin")
        session.commit()
    engine.dispose()
    with serving(create_app(Settings(database_url=url, refit_worker=False, data_dir=DATA_DIR))) as base:
        yield base, url, admin


def test_device_add_against_a_live_server_prints_a_working_token(live: tuple[str, str, str]) -> None:
    base, database, admin = live
    add = ["device", "add", "pixel2", *PIXEL2, "--space", "nasbench201", "--campaign-size", "3"]
    words = _agent_line(_gpnas(*add, "--server", base, "--token", admin))
    assert words[:6] == ["gpnas-agent", "--server", base, "--device", "pixel2", "--token"]
    with GpnasClient(base, words[6]) as chip:
        leased = chip.lease_jobs(LeaseRequest(device="pixel2", count=8)).jobs
        assert len(leased) == 3 and {job.space for job in leased} == {"nasbench201"}
        with pytest.raises(Unauthorized):
            chip.lease_jobs(LeaseRequest(device="other"))
    # A device token may not onboard a chip: refused before anything is written.
    refused = _gpnas("device", "add", "cpu-2", *CPU, "--server", base, "--token", words[6])
    assert "HTTP 403" in _refusal(refused)
    without = _gpnas("device", "add", "cpu-2", *CPU, "--server", base)
    assert "HTTP 401" in _refusal(without)
    devices, campaigns, tokens = _state(database)
    assert (devices, len(campaigns), tokens) == ([("pixel2", "table")], 1, 2)
