"""Devices, measurements and auth through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient
from service_helpers import SPACE, measurements, register
from typer.testing import CliRunner

from search_service.cli import app as cli_app


def test_health_and_spaces(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["schema_revision"] != "none"
    spaces = {s["name"]: s for s in client.get("/v1/spaces").json()}
    assert spaces[SPACE]["cardinality"] == str(9**10 + 9**11 + 9**12)
    detail = client.get(f"/v1/spaces/{SPACE}").json()
    assert detail["depths"] == [10, 11, 12] and "market1501" in detail["tasks"]
    missing = client.get("/v1/spaces/nope")
    assert missing.status_code == 404 and "known spaces" in missing.json()["detail"]


def test_devices(client: TestClient) -> None:
    body = {"name": "cpu-a", "profiler": "torch-cpu", "settings": {"threads": 2}}
    created = client.post("/v1/devices", json=body)
    assert created.status_code == 201 and created.json() == body
    assert client.post("/v1/devices", json=body).status_code == 409
    assert client.get("/v1/devices/cpu-a").json() == body
    assert [d["name"] for d in client.get("/v1/devices").json()] == ["cpu-a"]
    assert client.get("/v1/devices/none").status_code == 404
    unknown = client.post("/v1/devices", json={**body, "name": "b", "profiler": "no-such"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "profiler"]
    bad = client.post("/v1/devices", json={**body, "name": "b", "settings": {"threads": "many"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "settings"]
    assert "threads" in bad.json()["detail"][0]["msg"]
    nul = client.post("/v1/devices", json={**body, "name": "b", "settings": {"note": "a\x00b"}})
    assert nul.status_code == 422
    assert [d["name"] for d in client.get("/v1/devices").json()] == ["cpu-a"]


def test_measurements_idempotent(client: TestClient) -> None:
    register(client)
    items = measurements(5) + measurements(3, device=None, task="market1501", seed=1)
    first = client.post("/v1/measurements", json={"measurements": items})
    assert first.status_code == 200, first.text
    assert first.json() == {"inserted": 8, "duplicate": 0, "level_shifts": []}
    again = client.post("/v1/measurements", json={"measurements": items[:6] + measurements(2, seed=7)})
    assert again.json() == {"inserted": 2, "duplicate": 6, "level_shifts": []}
    page = client.get("/v1/measurements", params={"space": SPACE, "metric": "latency_ms", "limit": 4}).json()
    assert page["total"] == 7 and len(page["measurements"]) == 4
    stored = {
        m["client_id"]: m
        for m in client.get("/v1/measurements", params={"limit": 100}).json()["measurements"]
    }
    assert len(stored) == 10
    assert stored[items[0]["id"]]["value"] == items[0]["value"]
    # The same id with other content is refused: measurements are never overwritten.
    changed = {**items[0], "value": items[0]["value"] + 1}
    conflict = client.post("/v1/measurements", json={"measurements": [changed]})
    assert conflict.status_code == 409 and "never overwritten" in conflict.text
    # Re-measuring adds a row under a new id.
    assert (
        client.post("/v1/measurements", json={"measurements": [{**changed, "id": "re-1"}]}).json()["inserted"]
        == 1
    )
    assert client.get("/v1/measurements", params={"arch": items[0]["arch"]}).json()["total"] == 2


def test_invalid_item_rejects_the_whole_batch(client: TestClient) -> None:
    register(client)
    good = measurements(4)
    cases = [
        ({**good[2], "device": "unregistered"}, "device", "register it first"),
        ({**good[2], "arch": "zzz"}, None, "not a subnet"),
        ({**good[2], "task": "market1501"}, None, "exactly one of device"),
        ({**good[2], "device": None, "task": "imagenet", "metric": "score"}, None, "not a task of space"),
        ({**good[2], "value": -1.0}, None, "latency must be positive"),
        ({**good[2], "metric": "score"}, None, "metric 'latency_ms'"),
        ({**good[2], "std": -0.1}, "std", "greater than or equal"),
        ({**good[2], "space": "nope"}, "space", "unknown space"),
    ]
    for bad, field, reason in cases:
        batch = good[:2] + [bad] + good[3:]
        response = client.post("/v1/measurements", json={"measurements": batch})
        assert response.status_code == 422, (bad, response.text)
        error = response.json()["detail"][0]
        assert error["loc"][:3] == ["body", "measurements", 2], error
        if field is not None:
            assert error["loc"][3] == field, error
        assert reason in error["msg"], error
    assert client.get("/v1/measurements").json()["total"] == 0
    nan = client.post(
        "/v1/measurements",
        content=b'{"measurements": [{"id": "x", "space": "fbnet", "arch": "0000000000000000000000",'
        b' "device": "dev1", "metric": "latency_ms", "value": NaN}]}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422
    assert client.get("/v1/measurements").json()["total"] == 0


def test_auth(auth_client: TestClient, db_url: str) -> None:
    runner = CliRunner()

    def token(*args: str) -> dict[str, str]:
        result = runner.invoke(cli_app, ["token", "create", *args], env={"GPNAS_DATABASE_URL": db_url})
        assert result.exit_code == 0, result.output
        return {"Authorization": f"Bearer {result.output.split()[-1]}"}

    admin, dev1 = token(), token("--device", "dev1")
    body = {"name": "dev1", "profiler": "torch-cpu", "settings": {}}
    missing = auth_client.post("/v1/devices", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert (
        auth_client.post("/v1/devices", json=body, headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    assert auth_client.post("/v1/devices", json=body, headers=dev1).status_code == 403
    register(auth_client, "dev1", headers=admin)
    register(auth_client, "dev2", headers=admin)
    assert auth_client.get("/v1/devices").status_code == 200  # reads are open
    mine, other = measurements(2, device="dev1"), measurements(2, device="dev2", seed=3)
    assert auth_client.post("/v1/measurements", json={"measurements": mine}, headers=dev1).status_code == 200
    assert auth_client.post("/v1/measurements", json={"measurements": other}, headers=dev1).status_code == 403
    assert auth_client.post("/v1/measurements", json={"measurements": other}).status_code == 401
    assert auth_client.post("/v1/jobs/lease", json={"device": "dev2"}, headers=dev1).status_code == 403
    assert auth_client.post("/v1/jobs/lease", json={"device": "dev1"}, headers=dev1).json() == {
        "jobs": [],
        "job": None,
    }
    assert auth_client.get("/v1/measurements").json()["total"] == 2


def test_drift_flags_are_stored_shown_and_weigh_into_the_training_errors(
    client: TestClient, db_url: str
) -> None:
    from search_service import repositories as repo
    from search_service.core import make_engine, make_sessionmaker

    register(client)
    steady, drifting, bare = measurements(3)
    steady.update(std=2.0, repeats=16, drift=0.03)
    drifting.update(std=2.0, repeats=16, drift=0.25, flagged=True)
    bare.pop("std")
    again = {**steady, "id": "steady-again", "value": steady["value"] * 1.02}
    posted = client.post("/v1/measurements", json={"measurements": [steady, drifting, bare, again]})
    assert posted.status_code == 200, posted.text
    shown = {m["client_id"]: m for m in client.get("/v1/measurements").json()["measurements"]}
    assert (shown[steady["id"]]["drift"], shown[steady["id"]]["flagged"]) == (0.03, False)
    assert (shown[drifting["id"]]["drift"], shown[drifting["id"]]["flagged"]) == (0.25, True)
    assert (shown[bare["id"]]["drift"], shown[bare["id"]]["flagged"]) == (None, False)
    negative = client.post("/v1/measurements", json={"measurements": [{**bare, "id": "x", "drift": -0.1}]})
    assert negative.status_code == 422 and negative.json()["detail"][0]["loc"][-1] == "drift"

    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        archs, values, stds, _, _ = repo.training_data(session, SPACE, "latency_ms", "dev1")
    engine.dispose()
    by_arch = dict(zip(archs, zip(values, stds, strict=True), strict=True))
    se = 1.2533 * 2.0 / 4  # the median's standard error: 1.2533 * std / sqrt(repeats)
    # Two measurements of one arch: their mean, with the standard error of that mean.
    assert by_arch[steady["arch"]][0] == (steady["value"] + again["value"]) / 2
    assert abs(by_arch[steady["arch"]][1] - np.sqrt(2 * se**2) / 2) < 1e-12
    # A flagged batch's drift is added: (p90 - p10) / 2.5631 standard deviations, relative.
    expected = np.sqrt(se**2 + (0.25 * drifting["value"] / 2.5631) ** 2)
    assert abs(by_arch[drifting["arch"]][1] - expected) < 1e-9
    assert by_arch[bare["arch"]][1] == 0.0  # no std: the learned noise covers it
