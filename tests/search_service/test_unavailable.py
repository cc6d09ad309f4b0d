"""Answers that are the server's or the client's fault, never a 500: caps too large for a
parameter count (422 naming the field), and 503 with Retry-After when the database's pool is
exhausted, the broker does not answer or the database lacks the schema."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from service_helpers import RIDGE, SPACE, make_settings, post_scored_tasks, register

from search_service import create_app
from search_service.schemas import MAX_WEIGHT_MB


def test_caps_too_large_for_a_parameter_count_are_422_naming_the_field(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url, **RIDGE)), raise_server_exceptions=False) as client:
        register(client)
        post_scored_tasks(client, ["market1501"], n=12)
        assert client.post("/v1/refit", json={}).json()["errors"] == []
        body = {"space": SPACE, "device": "dev1", "tasks": [{"task": "market1501"}]}
        for dtype in ("float32", "int8"):
            # The largest cap admitted still answers (a count that fits 64 bits).
            largest = body | {"max_weight_mb": MAX_WEIGHT_MB, "dtype": dtype}
            fits = client.post("/v1/deployments/query", json=largest)
            assert fits.status_code == 200, fits.text
        for huge in (3.7e13, 1e300):
            answer = client.post("/v1/deployments/query", json=body | {"max_weight_mb": huge})
            assert answer.status_code == 422, answer.text
            assert answer.json()["detail"][0]["loc"] == ["body", "max_weight_mb"]
        top = client.post("/v1/deployments/query", json=body | {"max_params": 2**63 - 1})
        assert top.status_code == 200, top.text
        over = client.post("/v1/deployments/query", json=body | {"max_params": 2**63})
        assert over.status_code == 422 and over.json()["detail"][0]["loc"] == ["body", "max_params"]


def test_an_exhausted_connection_pool_is_503_with_retry_after_not_a_hang(db_url: str) -> None:
    settings = make_settings(db_url, db_pool_timeout_s=0.5)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        # Every connection the pool may open, held elsewhere (other requests, stuck).
        held = [engine.connect() for _ in range(engine.pool.size() + engine.pool._max_overflow)]
        try:
            started = time.monotonic()
            answer = client.get("/v1/devices")
            waited = time.monotonic() - started
        finally:
            for connection in held:
                connection.close()
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert "connection" in answer.json()["detail"]
        assert waited < 10.0  # the pool's 0.5 s, not SQLAlchemy's default 30 s
        assert client.get("/v1/devices").status_code == 200
