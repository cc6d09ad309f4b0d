"""Memory in single-task answers: ``max_params`` on POST /v1/query and GET /v1/pareto, ``params`` and
``macs`` on every answer, the (score, params) front, and fronts stored before they held counts;
on SQLite and PostgreSQL, through the routes and the typed client."""

from __future__ import annotations

import gzip
import json
import math
import uuid
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import RIDGE, make_settings, register
from sqlalchemy import select

from search_service import create_app
from search_service.client import GpnasClient, Invalid
from search_service.core import make_engine, make_sessionmaker
from search_service.models import Front
from search_service.schemas import QueryRequest
from supernet import get_space

SPACE, TASK, DEVICE = "ufo2-multipath", "face", "dev1"
HEAD = 768 * 512 + 512  # the face task's head: in every count the answers give


def _pairs(n: int, seed: int) -> list[dict[str, Any]]:
    """Latency (FLOPs-proportional) and a score growing with size, for ``n`` random subnets."""
    space = get_space(SPACE)
    rng = np.random.default_rng(seed)
    items = []
    for sub in space.sample(n, seed):
        arch, latency = space.format(sub), space.flops(sub, TASK) / 1e9
        common = {"space": SPACE, "arch": arch}
        items.append(
            {"id": str(uuid.uuid4()), "device": DEVICE, "metric": "latency_ms", "value": latency, **common}
        )
        score = 50.0 * math.log(latency) + float(rng.normal(0.0, 0.5))
        items.append({"id": str(uuid.uuid4()), "task": TASK, "metric": "score", "value": score, **common})
    return items


def _query(client: TestClient, budget: float, **extra: Any):
    body = {"space": SPACE, "task": TASK, "device": DEVICE, "latency_budget_ms": budget, **extra}
    return client.post("/v1/query", json=body)


def _pareto(client: TestClient, **params: Any) -> dict[str, Any]:
    answer = client.get(
        "/v1/pareto", params={"space": SPACE, "task": TASK, "device": DEVICE, "limit": 1000, **params}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _field_error(answer: Any, *loc: str) -> str:
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"] == list(loc), detail
    return str(detail[0]["msg"])


def _counts(arch: str) -> tuple[int, int]:
    space = get_space(SPACE)
    sub = space.parse(arch)
    return int(space.params([sub], TASK)[0]), round(float(space.macs([sub])[0]))


def test_bad_caps_and_objectives_are_422_naming_the_field(client: TestClient) -> None:
    for cap in (0, -5, 1.5, "many", 2**63):
        _field_error(_query(client, 10.0, max_params=cap), "body", "max_params")
    assert "greater than or equal to 1" in _field_error(
        _query(client, 10.0, max_params=0), "body", "max_params"
    )
    for cap in ("0", "-1", "x"):
        pareto = client.get(
            "/v1/pareto", params={"space": SPACE, "task": TASK, "device": DEVICE, "max_params": cap}
        )
        _field_error(pareto, "query", "max_params")
    bad = client.get(
        "/v1/pareto", params={"space": SPACE, "task": TASK, "device": DEVICE, "objective": "memory"}
    )
    assert "'latency' or 'params'" in _field_error(bad, "query", "objective")


def test_params_and_macs_in_queries_and_fronts(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url, **RIDGE))) as client:
        register(client, DEVICE)
        assert client.post("/v1/measurements", json={"measurements": _pairs(30, seed=0)}).status_code == 200
        report = client.post("/v1/refit", json={"space": SPACE}).json()
        assert report["errors"] == [] and len(report["fronts"]) == 1
        _check_answers(client)
        _check_old_fronts_still_answer(client, db_url)


def _check_answers(client: TestClient) -> None:
    front = _pareto(client)
    assert front["objective"] == "latency" and front["max_params"] is None
    points = front["points"]
    space = get_space(SPACE)
    for p in points:
        assert (p["params"], p["macs"]) == _counts(p["arch"])
        assert p["params"] == space.param_count(space.parse(p["arch"])) + HEAD

    # The (score, params) front: ordered by params, non-dominated on (score up, params down).
    by_params = _pareto(client, objective="params")
    assert by_params["objective"] == "params" and by_params["total"] == len(by_params["points"]) >= 3
    params = [p["params"] for p in by_params["points"]]
    scores = [p["score"] for p in by_params["points"]]
    assert params == sorted(params) and all(b > a for a, b in zip(scores, scores[1:], strict=False))
    assert all((p["params"], p["macs"]) == _counts(p["arch"]) for p in by_params["points"])
    # Its cheapest point is at most as large as the latency front's smallest subnet.
    assert params[0] <= min(p["params"] for p in points)

    # The best subnet within a generous budget, then within a cap below its size.
    budget = 10 * max(p["latency_ms"] for p in points)
    free = _query(client, budget)
    assert free.status_code == 200, free.text
    best = free.json()
    assert (best["params"], best["macs"]) == _counts(best["arch"])
    cap = best["params"] - 1
    capped = _query(client, budget, max_params=cap)
    assert capped.status_code == 200, capped.text
    small = capped.json()
    assert small["params"] <= cap and small["predicted"]["score"] <= best["predicted"]["score"]
    assert small["arch"] != best["arch"]
    # The capped answer is the best of the capped (score, params) front within the budget.
    within = _pareto(client, objective="params", max_params=cap)
    assert within["max_params"] == cap and all(p["params"] <= cap for p in within["points"])
    assert small["predicted"]["score"] == max(p["score"] for p in within["points"])
    # The capped latency front: the front of the subnets within the cap, each within it.
    capped_front = _pareto(client, max_params=cap)["points"]
    assert capped_front and all(p["params"] <= cap for p in capped_front)
    latencies = [p["latency_ms"] for p in capped_front]
    assert latencies == sorted(latencies)

    # A cap below every subnet: a 422 on max_params naming the smallest candidate's count.
    message = _field_error(_query(client, budget, max_params=1000), "body", "max_params")
    assert "no candidate has at most 1,000 parameters" in message
    assert f"has {params[0]:,}" in message
    # A budget below every subnet is still a latency answer.
    assert "fastest candidate" in _field_error(
        _query(client, 1e-6, max_params=cap), "body", "latency_budget_ms"
    )
    # Only the fastest subnet meets its own mean latency at confidence 0.5; a cap just below its
    # size leaves only smaller, slower ones: the cap is named as what rules the fast one out.
    fastest = points[0]
    assert params[0] < fastest["params"]  # the smallest subnet is not the fastest one here
    both = _query(client, fastest["latency_ms"], confidence=0.5, max_params=fastest["params"] - 1)
    message = _field_error(both, "body", "max_params")
    assert f"the smallest of them has {fastest['params']:,} parameters" in message

    # The typed client speaks the same fields.
    api = GpnasClient("http://testserver", http=client)  # type: ignore[arg-type]
    page = api.pareto(SPACE, TASK, DEVICE, limit=1000, objective="params", max_params=cap)
    assert [p.arch for p in page.points] == [p["arch"] for p in within["points"]]
    ask = QueryRequest(space=SPACE, task=TASK, device=DEVICE, latency_budget_ms=budget, max_params=cap)
    assert api.query(ask).arch == small["arch"]
    with pytest.raises(Invalid) as refused:
        api.query(ask.model_copy(update={"max_params": 1000}))
    assert "max_params" in refused.value.message


def _check_old_fronts_still_answer(client: TestClient, db_url: str) -> None:
    """A front stored before points held counts (and the task) answers with them computed."""
    newest = _pareto(client)
    engine = make_engine(db_url)
    with make_sessionmaker(engine, write=True)() as session:
        row = session.scalars(select(Front).order_by(Front.version.desc())).first()
        assert row is not None
        data = json.loads(gzip.decompress(row.data))
        del data["task"], data["candidates"]["params"], data["candidates"]["macs"]
        for point in data["points"]:
            del point["params"], point["macs"]
        session.add(
            Front(
                space=row.space,
                task=row.task,
                device=row.device,
                version=row.version + 1,
                score_predictor_id=row.score_predictor_id,
                latency_predictor_id=row.latency_predictor_id,
                n_points=row.n_points,
                data=gzip.compress(json.dumps(data).encode()),
            )
        )
        session.commit()
    engine.dispose()
    old = _pareto(client)
    assert old["version"] == newest["version"] + 1
    assert [(p["arch"], p["params"], p["macs"]) for p in old["points"]] == [
        (p["arch"], p["params"], p["macs"]) for p in newest["points"]
    ]
    assert _pareto(client, objective="params")["total"] >= 3
    answer = _query(client, 1e6, max_params=newest["points"][-1]["params"])
    assert answer.status_code == 200 and answer.json()["front_version"] == old["version"]
