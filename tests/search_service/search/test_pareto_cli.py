"""``gpnas pareto`` against the real service: a migrated SQLite database holding a stored front,
read in-process (--database-url) and over HTTP from a uvicorn server (--server)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from typer.testing import CliRunner

from search_service.cli import app
from search_service.core import Settings, make_engine, make_sessionmaker, upgrade
from search_service.main import create_app
from search_service.models import Device, Front, Measurement, PredictorVersion
from search_service.search import compute_front, encode_front
from supernet import get_space

runner = CliRunner()


@pytest.fixture(scope="module")
def stored(tmp_path_factory, track2_models):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'gpnas.db'}"
    upgrade(url)
    space = get_space("ufo-track2")
    result = compute_front(space, *track2_models, seed=0, max_evaluations=600, population_size=100)
    engine = make_engine(url)
    with make_sessionmaker(engine, write=True)() as session:
        session.add(Device(name="cpu-test", profiler="table", settings={}))
        versions = [
            PredictorVersion(
                space=space.name,
                metric=metric,
                target=target,
                version=1,
                kind="test",
                n_train=400,
                last_measurement_id=0,
                blob=b"",
            )
            for metric, target in (("score", "veri"), ("latency_ms", "cpu-test"))
        ]
        session.add_all(versions)
        session.flush()
        session.add(
            Front(
                space=space.name,
                task="veri",
                device="cpu-test",
                version=1,
                score_predictor_id=versions[0].id,
                latency_predictor_id=versions[1].id,
                n_points=len(result.points),
                data=encode_front(result),
            )
        )
        measured = result.points[0].arch
        common = {"space": space.name, "arch": measured}
        session.add_all(
            [
                Measurement(client_id="s1", task="veri", metric="score", value=1.0, **common),
                Measurement(client_id="l1", device="cpu-test", metric="latency_ms", value=20.0, **common),
            ]
        )
        session.commit()
    engine.dispose()
    return url, result


def _check_table(output: str, result) -> None:
    lines = output.strip().splitlines()
    assert f"{len(result.points)} subnets" in lines[0]
    rows = lines[3 : 3 + len(result.points)]
    assert [row.split()[1] for row in rows] == [p.arch for p in result.points]
    assert rows[0].split()[-1] == "yes" and all(row.split()[-1] == "no" for row in rows[1:])
    first = result.points[0]
    assert f"{first.latency_ms:.4g} ± {first.latency_std:.2g}" in rows[0]


def test_pareto_reads_the_database_and_plots(stored, tmp_path):
    url, result = stored
    png = tmp_path / "front.png"
    out = runner.invoke(
        app,
        [
            "pareto",
            "--space",
            "ufo-track2",
            "--task",
            "veri",
            "--device",
            "cpu-test",
            "--database-url",
            url,
            "--plot",
            str(png),
        ],
    )
    assert out.exit_code == 0, out.output
    _check_table(out.output, result)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_over_http(stored):
    url, result = stored
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(database_url=url, refit_worker=False)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        args = [
            "pareto",
            "--space",
            "ufo-track2",
            "--task",
            "veri",
            "--device",
            "cpu-test",
            "--server",
            f"http://127.0.0.1:{port}",
        ]
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output
        _check_table(out.output, result)
        # A device without data: the service's 4xx detail becomes the error.
        out = runner.invoke(app, args[:-3] + ["nowhere", "--server", f"http://127.0.0.1:{port}"])
        assert out.exit_code != 0
        assert "404" in str(out.exception) and "nowhere" in str(out.exception)
    finally:
        server.should_exit = True
        thread.join(10)


def test_pareto_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = runner.invoke(
        app,
        [
            "pareto",
            "--space",
            "ufo-track2",
            "--task",
            "veri",
            "--device",
            "x",
            "--server",
            f"http://127.0.0.1:{port}",
        ],
    )
    assert isinstance(out.exception, ValueError)
    assert "cannot reach the gpnas server" in str(out.exception)


def test_pareto_rejects_server_and_database_together():
    out = runner.invoke(
        app,
        [
            "pareto",
            "--space",
            "ufo-track2",
            "--task",
            "veri",
            "--device",
            "x",
            "--server",
            "http://x",
            "--database",
            "sqlite://",
        ],
    )
    assert isinstance(out.exception, ValueError) and "not both" in str(out.exception)
