"""``POST /v1/deployments/query``: several tasks on one chip, through the API on both backends."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from scipy.special import ndtri
from service_helpers import SPACE, make_settings, post_scored_tasks, register
from sqlalchemy import func, select
from typer.testing import CliRunner

from search_service import create_app
from search_service.cli import app
from search_service.core import make_engine, make_sessionmaker
from search_service.models import DeploymentAnswerRow
from supernet import Deployment, deployment_params, get_space

TASKS = ("market1501", "veri", "sop")


def _body(**overrides) -> dict:
    body = {
        "space": SPACE,
        "device": "dev1",
        "tasks": [
            {"task": "market1501", "weight": 2.0, "latency_budget_ms": 28.0},
            {"task": "veri", "latency_budget_ms": 24.0},
            {"task": "sop", "latency_budget_ms": 30.0},
        ],
        "confidence": 0.9,
    }
    return body | overrides


def test_deployment_queries(db_url: str) -> None:
    settings = make_settings(db_url, front_time_limit_s=1.0, deployment_time_limit_s=2.0)
    with TestClient(create_app(settings)) as client:
        register(client)
        missing = client.post("/v1/deployments/query", json=_body())
        assert missing.status_code == 404 and "no score measurements of 'market1501'" in missing.text
        post_scored_tasks(client, TASKS)
        pending = client.post("/v1/deployments/query", json=_body())
        assert pending.status_code == 409 and "not fitted yet" in pending.text
        assert client.post("/v1/refit", json={}).json()["errors"] == []

        space = get_space(SPACE)
        answer = client.post("/v1/deployments/query", json=_body())
        assert answer.status_code == 200, answer.text
        best = answer.json()
        assert [t["task"] for t in best["tasks"]] == list(TASKS)
        # How to get the deployment as one file: a body ready to POST to /v1/artifacts.
        assert best["artifact"] == {
            "space": SPACE,
            "arch": None,
            "task": None,
            "tasks": {t["task"]: t["arch"] for t in best["tasks"]},
            "input": "separate",
            "weights": {"supernet_version": None, "random_seed": 0},
            "precision": "fp32",
        }
        dep = Deployment(SPACE, tuple((t["task"], space.parse(t["arch"])) for t in best["tasks"]))
        assert best["params"] == deployment_params(space, dep)
        assert best["independent_params"] == sum(space.param_count(s) for _, s in dep)
        assert best["weight_mb"] == best["params"] * 4 / 1e6
        for task, budget in zip(best["tasks"], (28.0, 24.0, 30.0), strict=True):
            p = task["predicted"]
            assert p["latency_ms"] + ndtri(0.9) * p["latency_std"] <= budget + 1e-9
            assert p["p_feasible"] >= 0.9 - 1e-9
            assert task["config"] == space.config(space.parse(task["arch"]))
        assert set(best["predictor_versions"]) == {
            "score/market1501",
            "score/veri",
            "score/sop",
            "latency/dev1",
        }

        # Asked again: the stored answer, not a new search.
        assert client.post("/v1/deployments/query", json=_body()).json() == best
        engine = make_engine(db_url)
        with make_sessionmaker(engine)() as session:
            assert session.scalar(select(func.count()).select_from(DeploymentAnswerRow)) == 1
        engine.dispose()

        # A memory cap below what the unconstrained answer holds: met, at a lower objective.
        cap = int(0.8 * best["params"])
        capped = client.post("/v1/deployments/query", json=_body(max_params=cap)).json()
        assert capped["params"] <= cap and capped["objective"] <= best["objective"] + 1e-9
        half = client.post(
            "/v1/deployments/query", json=_body(max_weight_mb=0.8 * best["weight_mb"], dtype="float16")
        )
        assert half.status_code == 200 and half.json()["weight_mb"] <= 0.8 * best["weight_mb"]
        assert half.json()["weight_mb"] == half.json()["params"] * 2 / 1e6

        # One shared image: one joint forward, which every task waits for.
        shared = client.post(
            "/v1/deployments/query",
            json=_body(input="shared", tasks=[{"task": t, "latency_budget_ms": 60.0} for t in TASKS]),
        )
        assert shared.status_code == 200, shared.text
        latencies = {t["predicted"]["latency_ms"] for t in shared.json()["tasks"]}
        assert len(latencies) == 1

        def error(body: dict, status: int = 422) -> str:
            response = client.post("/v1/deployments/query", json=body)
            assert response.status_code == status, response.text
            return response.text

        assert "budget of 1 ms" in error(_body(tasks=[{"task": "veri", "latency_budget_ms": 1.0}]))
        assert "max_params" in error(_body(max_params=1000))
        # The cap the user gave, in its unit: not a max_params the user never set.
        too_small = json.loads(error(_body(max_weight_mb=0.001)))["detail"][0]
        assert too_small["loc"] == ["body", "max_weight_mb"], too_small
        assert "over max_weight_mb 0.001" in too_small["msg"] and "max_params" not in too_small["msg"]
        assert "repeated: veri" in error(_body(tasks=[{"task": "veri"}, {"task": "veri"}]))
        assert "not a task of space" in error(_body(tasks=[{"task": "cat"}]))
        assert "not both" in error(_body(max_params=10**8, max_weight_mb=100.0))
        assert "space 'fbnet' has no deployments" in error(_body(space="fbnet", tasks=[{"task": "x"}]))
        assert "dev9" in error(_body(device="dev9"), 404)

    # The CLI prints the same answer (read in-process from the database: the stored one).
    args = ["deploy", "--space", SPACE, "--device", "dev1", "--database-url", db_url]
    args += [arg for t in TASKS for arg in ("--task", t)]
    args += [
        "--budget",
        "28",
        "--budget",
        "24",
        "--budget",
        "30",
        "--weight",
        "2",
        "--weight",
        "1",
        "--weight",
        "1",
    ]
    printed = CliRunner().invoke(app, [*args, "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == best
    table = CliRunner().invoke(app, args)
    assert all(t["arch"] in table.output for t in best["tasks"]) and "less than" in table.output
    wrong = CliRunner().invoke(app, [*args[:-12], "--budget", "1", "--budget", "2"])
    assert wrong.exit_code != 0 and "once per --task (3), not 2" in str(wrong.exception)
