"""Campaigns and the agents' job queue: leases, expiry, heartbeats, idempotent results, failures."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import torch
from fastapi.testclient import TestClient
from service_helpers import SPACE, make_settings, register

from predictors import TransferPredictor, create_strategy
from search_service import create_app
from supernet import get_space


def _campaign(client: TestClient, n: int, **extra: object) -> dict:
    response = client.post(
        "/v1/campaigns", json={"space": SPACE, "device": "dev1", "n": n, "seed": 1, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_campaign_queues_distinct_unmeasured_subnets(client: TestClient) -> None:
    register(client)
    first = _campaign(client, 5)
    assert first["jobs"] == {"queued": 5} and first["metric"] == "latency_ms"
    # The same seed again: the 5 already queued are not queued twice.
    second = _campaign(client, 5)
    archs = [j["arch"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]
    assert len(archs) == 10 and len(set(archs)) == 10
    scored = _campaign(client, 2, task="market1501")
    assert scored["metric"] == "score"
    assert client.get(f"/v1/campaigns/{second['id']}").json()["jobs"] == {"queued": 5}
    assert client.post("/v1/campaigns", json={"space": SPACE, "device": "nope", "n": 1}).status_code == 404
    bad = client.post("/v1/campaigns", json={"space": SPACE, "device": "dev1", "n": 1, "strategy": "magic"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "strategy"]


def test_campaign_on_a_table_device_picks_only_rows_of_its_table(db_url: str, tmp_path) -> None:
    # fbnet holds 9**22 subnets; a replay device can only answer the archs of its table, which
    # the server reads from its own data directory.
    space = get_space("fbnet")
    table = [space.format(s) for s in space.sample(12, seed=3)]
    path = tmp_path / "latency.csv"
    path.write_text("arch,chip\n" + "".join(f"{arch},{i + 1.5}\n" for i, arch in enumerate(table)))
    device = {"name": "replay", "profiler": "table", "settings": {"path": path.name, "column": "chip"}}
    with TestClient(create_app(make_settings(db_url, data_dir=tmp_path))) as client:
        _table_campaigns(client, device, table)


def _table_campaigns(client: TestClient, device: dict, table: list[str]) -> None:
    assert client.post("/v1/devices", json=device).status_code == 201
    body = {"space": "fbnet", "device": "replay", "seed": 0}
    created = client.post("/v1/campaigns", json={**body, "n": 8})
    assert created.status_code == 201, created.text
    jobs = client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    assert len(jobs) == 8 and {j["arch"] for j in jobs} <= set(table)
    too_many = client.post("/v1/campaigns", json={**body, "n": 5})
    assert too_many.status_code == 422 and "only 4 subnets" in too_many.text


def test_lease_result_idempotent_and_conflicts(client: TestClient) -> None:
    register(client)
    _campaign(client, 2, task="market1501")
    job = client.post("/v1/jobs/lease", json={"device": "dev1", "lease_seconds": 60}).json()["job"]
    assert job["metric"] == "score" and job["task"] == "market1501" and job["device"] == "dev1"
    other = client.post("/v1/jobs/lease", json={"device": "dev1", "lease_seconds": 60}).json()["job"]
    assert other["id"] != job["id"]
    assert client.post("/v1/jobs/lease", json={"device": "dev1"}).json() == {"jobs": [], "job": None}
    beat = client.post(
        f"/v1/jobs/{job['id']}/heartbeat", json={"lease_token": job["lease_token"], "lease_seconds": 120}
    )
    assert beat.status_code == 200 and beat.json()["lease_expires_at"] > job["lease_expires_at"]
    wrong = client.post(f"/v1/jobs/{job['id']}/heartbeat", json={"lease_token": other["lease_token"]})
    assert wrong.status_code == 409
    result = {
        "lease_token": job["lease_token"],
        "value": 0.71,
        "std": 0.0,
        "repeats": 1,
        "profiler": "table-score",
        "profiler_version": "1",
        "environment": {"host": "x"},
    }
    done = client.post(f"/v1/jobs/{job['id']}/result", json=result)
    assert done.status_code == 200 and done.json()["status"] == "done"
    again = client.post(f"/v1/jobs/{job['id']}/result", json=result)
    assert again.json() == done.json()
    assert (
        client.post(f"/v1/jobs/{job['id']}/result", json={**result, "lease_token": "other"}).status_code
        == 409
    )
    stored = client.get("/v1/measurements", params={"task": "market1501"}).json()
    assert stored["total"] == 1
    m = stored["measurements"][0]
    assert (m["value"], m["profiler"], m["environment"], m["job_id"]) == (
        0.71,
        "table-score",
        {"host": "x"},
        job["id"],
    )
    assert (
        client.post(f"/v1/jobs/{job['id']}/heartbeat", json={"lease_token": job["lease_token"]}).status_code
        == 409
    )
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "done"


def test_expired_lease_goes_to_the_next_agent(client: TestClient) -> None:
    register(client)
    _campaign(client, 1)
    first = client.post("/v1/jobs/lease", json={"device": "dev1", "lease_seconds": 1}).json()["job"]
    assert client.post("/v1/jobs/lease", json={"device": "dev1"}).json()["job"] is None
    time.sleep(1.2)
    # Expired but not re-leased: the late result is still accepted.
    late = client.post(
        f"/v1/jobs/{first['id']}/result", json={"lease_token": first["lease_token"], "value": 3.0}
    )
    assert late.status_code == 200
    _campaign(client, 1, seed=5)
    a = client.post("/v1/jobs/lease", json={"device": "dev1", "lease_seconds": 1}).json()["job"]
    time.sleep(1.2)
    b = client.post("/v1/jobs/lease", json={"device": "dev1", "lease_seconds": 60}).json()["job"]
    assert b["id"] == a["id"] and b["lease_token"] != a["lease_token"]
    # The first agent lost it: its heartbeat and result are refused; the new holder's counts once.
    assert (
        client.post(f"/v1/jobs/{a['id']}/heartbeat", json={"lease_token": a["lease_token"]}).status_code
        == 409
    )
    assert (
        client.post(
            f"/v1/jobs/{a['id']}/result", json={"lease_token": a["lease_token"], "value": 1}
        ).status_code
        == 409
    )
    assert (
        client.post(
            f"/v1/jobs/{b['id']}/result", json={"lease_token": b["lease_token"], "value": 2}
        ).status_code
        == 200
    )
    assert client.get("/v1/measurements", params={"metric": "latency_ms"}).json()["total"] == 2
    negative = client.post(f"/v1/jobs/{b['id']}/result", json={"lease_token": b["lease_token"], "value": -2})
    # Already done with value 2: another value under the same lease is refused, nothing new stored.
    assert negative.status_code == 409 and "value 2.0 (stored) vs -2.0 (posted)" in negative.text


def test_fail_requeues_then_fails_for_good(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url, max_job_attempts=2))) as client:
        register(client)
        _campaign(client, 1)
        statuses = []
        for _ in range(2):
            job = client.post("/v1/jobs/lease", json={"device": "dev1"}).json()["job"]
            body = {"lease_token": job["lease_token"], "error": "out of memory"}
            answer = client.post(f"/v1/jobs/{job['id']}/fail", json=body)
            assert client.post(f"/v1/jobs/{job['id']}/fail", json=body).json() == answer.json()  # idempotent
            statuses.append(answer.json()["status"])
        assert statuses == ["queued", "failed"]
        assert client.post("/v1/jobs/lease", json={"device": "dev1"}).json()["job"] is None
        failed = client.get("/v1/jobs", params={"status": "failed"}).json()["jobs"][0]
        assert failed["attempts"] == 2 and failed["last_error"] == "out of memory"


def test_concurrent_leasers_never_share_a_job(client: TestClient) -> None:
    register(client)
    _campaign(client, 40)
    leased: list[int] = []
    lock = threading.Lock()

    def agent() -> None:
        while True:
            job = client.post("/v1/jobs/lease", json={"device": "dev1", "lease_seconds": 300}).json()["job"]
            if job is None:
                return
            with lock:
                leased.append(job["id"])

    threads = [threading.Thread(target=agent) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(leased) == 40 and len(set(leased)) == 40


def test_a_batch_lease_holds_each_job_on_its_own_lease(client: TestClient) -> None:
    register(client)
    _campaign(client, 5)
    batch = client.post("/v1/jobs/lease", json={"device": "dev1", "count": 3, "lease_seconds": 60}).json()
    jobs = batch["jobs"]
    assert len(jobs) == 3 and batch["job"] == jobs[0]
    assert len({j["id"] for j in jobs}) == 3 and len({j["lease_token"] for j in jobs}) == 3
    assert [j["id"] for j in jobs] == sorted(j["id"] for j in jobs)  # oldest first
    rest = client.post("/v1/jobs/lease", json={"device": "dev1", "count": 10}).json()["jobs"]
    assert len(rest) == 2 and not {j["id"] for j in rest} & {j["id"] for j in jobs}
    # One job of the batch is done, another fails: the third still holds its own lease.
    first, second, third = jobs
    ok = client.post(
        f"/v1/jobs/{first['id']}/result", json={"lease_token": first["lease_token"], "value": 4.0}
    )
    assert ok.status_code == 200
    fail = client.post(
        f"/v1/jobs/{second['id']}/fail", json={"lease_token": second["lease_token"], "error": "x"}
    )
    assert fail.json()["status"] == "queued"
    beat = client.post(f"/v1/jobs/{third['id']}/heartbeat", json={"lease_token": third["lease_token"]})
    assert beat.status_code == 200
    for count in (0, 65):
        bad = client.post("/v1/jobs/lease", json={"device": "dev1", "count": count})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "count"]


def test_concurrent_batch_leasers_never_share_a_job(client: TestClient) -> None:
    register(client)
    _campaign(client, 40)
    leased: list[int] = []
    lock = threading.Lock()

    def agent() -> None:
        while True:
            body = {"device": "dev1", "lease_seconds": 300, "count": 7}
            jobs = client.post("/v1/jobs/lease", json=body).json()["jobs"]
            if not jobs:
                return
            with lock:
                leased.extend(j["id"] for j in jobs)

    threads = [threading.Thread(target=agent) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(leased) == 40 and len(set(leased)) == 40


def test_lease_expiring_on_the_last_attempt_fails_the_job(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url, max_job_attempts=1))) as client:
        register(client)
        _campaign(client, 1)
        job = client.post("/v1/jobs/lease", json={"device": "dev1", "lease_seconds": 1}).json()["job"]
        time.sleep(1.2)
        assert client.post("/v1/jobs/lease", json={"device": "dev1"}).json() == {"jobs": [], "job": None}
        failed = client.get(f"/v1/jobs/{job['id']}").json()
        assert failed["status"] == "failed" and "lease expired" in failed["last_error"]


def test_first_campaign_of_a_new_chip_designs_from_the_chips_measured_before(
    client: TestClient, data_dir: Path
) -> None:
    """No latency predictor for the new chip yet: a variance-strategy campaign picks among the
    subnets other chips measured, by the transfer prior those chips define."""
    space = get_space("nasbench201")
    table = pd.read_csv(data_dir / "device_latency" / "nasbench201.csv").sample(60, random_state=0)
    chips = ["gold_6226", "pixel2", "titan_rtx_1"]
    for chip in [*chips, "raspi4"]:
        register(client, chip)
    items = [
        {
            "id": str(uuid.uuid4()),
            "space": "nasbench201",
            "arch": arch,
            "device": chip,
            "metric": "latency_ms",
            "value": float(value),
        }
        for chip in chips
        for arch, value in zip(table.arch, table[chip], strict=True)
    ]
    assert client.post("/v1/measurements", json={"measurements": items}).status_code == 200
    body = {"space": "nasbench201", "device": "raspi4", "n": 6, "strategy": "integrated-variance", "seed": 0}
    assert client.post("/v1/campaigns", json=body).status_code == 201
    queued = [j["arch"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["jobs"]]

    archs = sorted(table.arch)
    Y = torch.tensor(table.set_index("arch").loc[archs, chips].to_numpy(), dtype=torch.float64)
    prior = TransferPredictor(space, metric="latency_ms").fit_sources(space.parse_many(archs), Y)
    expected = create_strategy("integrated-variance").select(
        space, prior, [], 6, candidates=space.parse_many(archs), seed=0
    )
    assert queued == [space.format(s) for s in expected]
