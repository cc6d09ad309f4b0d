"""``gpnas query``: the main job from the command line prints exactly what POST /v1/query answers,
from a database read in process or a server."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from service_helpers import RIDGE, SPACE, make_settings, measurements, register
from typer.testing import CliRunner

from search_service import create_app
from search_service.cli import app


def test_gpnas_query_prints_what_the_api_answers(db_url: str) -> None:
    settings = make_settings(db_url, **RIDGE)
    with TestClient(create_app(settings)) as client:
        register(client)
        data = measurements(20) + measurements(20, device=None, task="market1501", seed=1)
        assert client.post("/v1/measurements", json={"measurements": data}).status_code == 200
        assert client.post("/v1/refit", json={"wait": True}).status_code == 200
        front = client.get(
            "/v1/pareto", params={"space": SPACE, "task": "market1501", "device": "dev1"}
        ).json()
        budget = front["points"][len(front["points"]) // 2]["latency_ms"] * 1.5
        body = {"space": SPACE, "task": "market1501", "device": "dev1", "latency_budget_ms": budget}
        expected = client.post("/v1/query", json=body).json()
    args = ["query", "--space", SPACE, "--task", "market1501", "--device", "dev1", "--budget", str(budget)]
    env = {"GPNAS_SERVER": None, "GPNAS_DATABASE_URL": db_url}
    printed = CliRunner().invoke(app, [*args, "--json"], env=env)
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == expected
    table = CliRunner().invoke(app, args, env=env)
    assert expected["arch"] in table.output and f"P(<= {budget:g} ms)" in table.output
    too_tight = CliRunner().invoke(app, [*args[:-1], "0.001"], env=env)
    assert too_tight.exit_code != 0 and "0.001" in str(too_tight.exception)
    unknown = CliRunner().invoke(app, [*args[:-4], "--device", "nope", "--budget", "5"], env=env)
    assert unknown.exit_code != 0 and "nope" in str(unknown.exception)
