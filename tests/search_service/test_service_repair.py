"""Data you can repair: retracted measurements, impossible values, fronts that cannot be fitted and
job results re-posted with other content, on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from service_helpers import RIDGE, SPACE, make_settings, measurements, register

from search_service import create_app
from search_service import repositories as repo
from search_service.core import make_engine, make_sessionmaker
from search_service.models import ApiToken
from search_service.outliers import impossible


def _tokens(db_url: str, *devices: str | None) -> list[dict[str, str]]:
    """Bearer headers of new tokens: unrestricted for None, else restricted to that device."""
    headers = []
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        for device in devices:
            secret = "gpnas_" + secrets.token_urlsafe(16)
            session.add(ApiToken(token_hash=repo.hash_token(secret), device=device))
            headers.append({"Authorization": f"Bearer {secret}"})
        session.commit()
    engine.dispose()
    return headers


def _scores(items: list[dict], task: str) -> list[dict]:
    """A score on ``task`` for each latency item's subnet, growing with its latency."""
    return [
        {**m, "id": m["id"] + "-s", "device": None, "task": task, "metric": "score", "value": m["value"]}
        for m in items
    ]


def _query(client: TestClient, budget: float = 1e6, task: str = "market1501"):
    body = {"space": SPACE, "task": task, "device": "dev1", "latency_budget_ms": budget}
    return client.post("/v1/query", json=body)


def test_retraction_keeps_the_row_hides_it_and_refits_its_target(db_url: str) -> None:
    admin, dev1, dev2 = _tokens(db_url, None, "dev1", "dev2")
    with TestClient(create_app(make_settings(db_url, auth=True, **RIDGE))) as client:
        register(client, "dev1", headers=admin)
        register(client, "dev2", headers=admin)
        latencies = measurements(8)
        posted = client.post(
            "/v1/measurements", json={"measurements": latencies + _scores(latencies, "sop")}, headers=admin
        )
        assert posted.json() == {"inserted": 16, "duplicate": 0, "level_shifts": []}
        first = client.post("/v1/refit", json={}, headers=admin).json()
        assert sorted((p["target"], p["version"], p["n_train"]) for p in first["predictors"]) == [
            ("dev1", 1, 8),
            ("sop", 1, 8),
        ]
        listed = client.get("/v1/measurements", params={"limit": 100}, headers=admin).json()
        ids = {m["client_id"]: m["id"] for m in listed["measurements"]}
        bad, score = ids[latencies[3]["id"]], ids[latencies[3]["id"] + "-s"]
        assert listed["measurements"][0]["retracted_at"] is None

        # Only an admin, or the device itself for its own latencies.
        url = f"/v1/measurements/{bad}"
        assert client.delete(url).status_code == 401
        assert client.delete(url, headers=dev2).status_code == 403
        assert client.delete(f"/v1/measurements/{score}", headers=dev1).status_code == 403
        assert client.delete("/v1/measurements/999999", headers=admin).status_code == 404
        assert client.delete(url, params={"reason": "x" * 501}, headers=dev1).status_code == 422
        assert client.delete(url, params={"reason": "a\x00b"}, headers=dev1).status_code == 422

        retracted = client.delete(url, params={"reason": "loose cable"}, headers=dev1)
        assert retracted.status_code == 200, retracted.text
        row = retracted.json()
        assert row["id"] == bad and row["retracted_reason"] == "loose cable" and row["retracted_at"]
        again = client.delete(url, params={"reason": "other"}, headers=admin)
        assert again.status_code == 200 and again.json() == row  # idempotent: the first stays

        shown = client.get("/v1/measurements", params={"device": "dev1"}, headers=admin).json()
        assert shown["total"] == 7 and bad not in {m["id"] for m in shown["measurements"]}
        every = client.get(
            "/v1/measurements", params={"device": "dev1", "include_retracted": True}, headers=admin
        ).json()
        assert every["total"] == 8
        assert {m["id"]: m for m in every["measurements"]}[bad] == row

        # No newer id exists, yet the retraction makes dev1 stale; the task's scores are untouched.
        second = client.post("/v1/refit", json={}, headers=admin).json()
        assert second["errors"] == []
        assert [(p["target"], p["version"], p["n_train"]) for p in second["predictors"]] == [("dev1", 2, 7)]
        assert [(f["task"], f["device"], f["version"]) for f in second["fronts"]] == [("sop", "dev1", 2)]
        assert client.post("/v1/refit", json={}, headers=admin).json()["predictors"] == []

        # Re-posting the retracted id with its content is a duplicate: it stays retracted.
        repost = client.post("/v1/measurements", json={"measurements": [latencies[3]]}, headers=dev1)
        assert repost.json() == {"inserted": 0, "duplicate": 1, "level_shifts": []}
        assert client.get("/v1/measurements", params={"device": "dev1"}, headers=admin).json()["total"] == 7
        assert client.post("/v1/refit", json={}, headers=admin).json()["predictors"] == []

    arch = latencies[3]["arch"]
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as session:
        data = repo.training_data(session, SPACE, "latency_ms", "dev1")
        assert arch not in data.archs and len(data.archs) == 7 and data.version.n_measurements == 7
        matrix_archs, targets, _ = repo.training_matrix(session, SPACE, "latency_ms")
        assert targets == ["dev1"] and arch not in matrix_archs and len(matrix_archs) == 7
        assert arch not in repo.measured_archs(session, SPACE, "latency_ms", "dev1")
        assert repo.count_measured_subnets(session, SPACE, "latency_ms", "dev1") == 7
        assert repo.archs_measured_on_both(session, SPACE, "sop", "dev1", [arch]) == set()
        by_target = {t.target: t for t in repo.measured_targets(session, SPACE)}
        assert by_target["dev1"].n_subnets == 7 and by_target["sop"].n_subnets == 8
    engine.dispose()


def test_impossible_values_are_skipped_and_the_device_answers_queries(db_url: str, data_dir: Path) -> None:
    with TestClient(create_app(make_settings(db_url))) as client:
        register(client)
        plausible = measurements(30)
        overflowed = {**measurements(1, seed=5)[0], "id": "overflow", "value": 1e308}
        far = {**measurements(1, seed=6)[0], "id": "far", "value": 1e60}  # caught by the MAD rule
        scores = _scores(plausible, "market1501") + [
            {**_scores(measurements(1, seed=7), "market1501")[0], "id": "huge-score", "value": 1e300}
        ]
        items = [*plausible, overflowed, far, *scores]
        posted = client.post("/v1/measurements", json={"measurements": items})
        assert posted.status_code == 200, posted.text
        report = client.post("/v1/refit", json={}).json()
        # Before: "latency model returned NaN, infinite or negative predictions", and no front.
        assert report["errors"] == []
        assert [(f["task"], f["device"]) for f in report["fronts"]] == [("market1501", "dev1")]
        notes = {note.split(":")[0]: note for note in report["notes"]}
        latency_note = notes[f"{SPACE}/latency_ms/dev1"]
        assert "skipped 2 of 32 measurements as impossible" in latency_note
        assert "1e+308: outside 1e-150..1e+150" in latency_note
        assert "robust standard deviations" in latency_note
        assert "skipped 1 of 31" in notes[f"{SPACE}/score/market1501"]
        answer = _query(client)
        assert answer.status_code == 200, answer.text
        assert np.isfinite(answer.json()["predicted"]["latency_ms"])
        assert answer.json()["predicted"]["latency_ms"] < 1e3
        pareto = client.get("/v1/pareto", params={"space": SPACE, "task": "market1501", "device": "dev1"})
        assert pareto.status_code == 200 and pareto.json()["total"] > 0
        # Refitting again changes nothing: the skipped values are part of the fitted data version.
        assert client.post("/v1/refit", json={}).json()["predictors"] == []
    # The limit leaves real tables alone: the widest one, its convolution-free subnets included.
    raspi4 = pd.read_csv(data_dir / "device_latency" / "nasbench201.csv")["raspi4"].tolist()
    assert not any(impossible(raspi4, log_scale=True))


def test_fronts_that_cannot_be_fitted_say_why_instead_of_retry(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url, **RIDGE))) as client:
        register(client)
        latencies = measurements(5)
        posted = client.post(
            "/v1/measurements",
            json={"measurements": latencies[:2] + _scores(measurements(30, seed=1), "market1501")},
        )
        assert posted.status_code == 200, posted.text
        client.post("/v1/refit", json={})
        for answer in (
            _query(client),
            client.get("/v1/pareto", params={"space": SPACE, "task": "market1501", "device": "dev1"}),
        ):
            # Before: 409 "retry shortly", although no refit would ever fit dev1.
            assert answer.status_code == 404, answer.text
            assert "device 'dev1' has 2 measured subnets; fits need at least 3 (min_train)" in answer.text

        # A third subnet, but impossible: the refit fails, and the answer names its reason.
        overflowed = {**latencies[2], "value": 1e308}
        assert client.post("/v1/measurements", json={"measurements": [overflowed]}).status_code == 200
        report = client.post("/v1/refit", json={}).json()
        assert any("2 measured subnets remain once 1 impossible values" in e for e in report["errors"])
        failed = _query(client)
        assert failed.status_code == 409 and "retry shortly" not in failed.text
        detail = failed.json()["detail"]
        assert "the last fit of the latencies of device 'dev1' failed" in detail
        assert "fits need at least 3 (min_train)" in detail

        # New data: the failure no longer describes it, so the front is "being computed" again.
        assert client.post("/v1/measurements", json={"measurements": latencies[3:4]}).status_code == 200
        pending = _query(client)
        assert pending.status_code == 409 and "retry shortly" in pending.text
        assert client.post("/v1/refit", json={}).json()["errors"] == []
        assert _query(client).status_code == 200


def test_a_job_result_reposted_with_other_content_is_a_conflict(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url))) as client:
        register(client)
        created = client.post(
            "/v1/campaigns", json={"space": SPACE, "device": "dev1", "task": "market1501", "n": 1, "seed": 1}
        )
        assert created.status_code == 201, created.text
        job = client.post("/v1/jobs/lease", json={"device": "dev1"}).json()["job"]
        result = {"lease_token": job["lease_token"], "value": 0.71, "std": 0.01, "repeats": 3}
        url = f"/v1/jobs/{job['id']}/result"
        done = client.post(url, json=result)
        assert done.status_code == 200, done.text
        # The same content again: the same answer (an agent retrying after a lost response).
        assert client.post(url, json={**result, "environment": {"retry": 1}}).json() == done.json()
        changed = client.post(url, json={**result, "value": 0.9})
        # Before: 200 with the old value, silently dropping the new one.
        assert changed.status_code == 409
        assert "value 0.71 (stored) vs 0.9 (posted)" in changed.json()["detail"]
        other_std = client.post(url, json={**result, "std": 0.5, "flagged": True})
        assert other_std.status_code == 409
        assert "std 0.01 (stored) vs 0.5 (posted)" in other_std.text and "flagged" in other_std.text
        stored = client.get("/v1/measurements", params={"task": "market1501"}).json()["measurements"]
        assert [m["value"] for m in stored] == [0.71]
