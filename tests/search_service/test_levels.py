"""Long-run reference levels: batches stored raw, fits see them rescaled, shifted batches reported
(on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import SPACE, measurements, register

from search_service import repositories as repo
from search_service.core import make_engine, make_sessionmaker
from search_service.levels import check_shift, long_run_level, rescale_factor, shift

REFERENCE = "k221221221221221221221221221221221000"


def test_level_arithmetic() -> None:
    assert long_run_level([]) is None
    assert long_run_level([100.0, 130.0, 104.0]) == 104.0  # one slow batch moves a median one rank
    assert shift(115.0, 100.0) == pytest.approx(0.15)
    assert rescale_factor(130.0, 104.0) == pytest.approx(0.8)
    # Without a level (imported tables, older rows) values are used as measured.
    assert rescale_factor(None, 104.0) == rescale_factor(130.0, None) == 1.0
    assert check_shift(REFERENCE, 112.0, 100.0, 0.10) is not None
    assert check_shift(REFERENCE, 109.0, 100.0, 0.10) is None
    assert check_shift(REFERENCE, 89.0, 100.0, 0.10) is not None  # a fast phase too
    assert check_shift(REFERENCE, 500.0, None, 0.10) is None  # the first batch defines the level


def _batch(base: list[dict[str, Any]], tag: str, level: float, slowdown: float) -> list[dict[str, Any]]:
    """``base``'s subnets timed again in a phase ``slowdown`` times slower, on reference ``level``."""
    return [
        {
            **m,
            "id": f"{m['id']}-{tag}",
            "value": m["value"] * slowdown,
            "std": 0.5 * slowdown,
            "repeats": 9,
            "reference_arch": REFERENCE,
            "reference_ms": level,
        }
        for m in base
    ]


def _training(db_url: str, target: str = "dev1") -> tuple[repo.TrainingData, tuple[Any, ...]]:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            return repo.training_data(session, SPACE, "latency_ms", target), repo.training_matrix(
                session, SPACE, "latency_ms"
            )
    finally:
        engine.dispose()


def test_batches_are_stored_raw_fitted_rescaled_and_a_shifted_one_is_reported(
    client: TestClient, db_url: str
) -> None:
    register(client)
    register(client, "dev2")
    base = measurements(4, seed=3)
    quiet, steady, slow = (
        _batch(base, "a", 100.0, 1.0),
        _batch(base, "b", 104.0, 1.04),
        _batch(base, "c", 130.0, 1.3),
    )
    answers = [client.post("/v1/measurements", json={"measurements": b}) for b in (quiet, steady)]
    assert [a.status_code for a in answers] == [200, 200], answers[-1].text
    # The first batch defines the level; the second moved 4%, within the 10% threshold.
    assert [a.json()["level_shifts"] for a in answers] == [[], []]
    posted = client.post("/v1/measurements", json={"measurements": slow})
    assert posted.status_code == 200, posted.text
    (reported,) = posted.json()["level_shifts"]
    assert reported["device"] == "dev1" and reported["reference_arch"] == REFERENCE
    assert reported["batch_ms"] == 130.0 and reported["long_run_ms"] == 102.0  # median of the others
    assert reported["shift"] == pytest.approx(130 / 102 - 1) and reported["measurements"] == 4
    # Re-posting the batch is a duplicate, judged as it was the first time.
    again = client.post("/v1/measurements", json={"measurements": slow}).json()
    assert again["duplicate"] == 4 and again["level_shifts"] == [reported]

    # Stored as sent: values and levels unchanged.
    shown = {
        m["client_id"]: m
        for m in client.get("/v1/measurements", params={"limit": 100}).json()["measurements"]
    }
    for m in slow:
        assert shown[m["id"]]["value"] == m["value"] and shown[m["id"]]["reference_ms"] == 130.0
        assert shown[m["id"]]["reference_arch"] == REFERENCE

    # An imported value (no level) of another subnet, on dev1; dev2 has levels of its own.
    imported = {**measurements(1, seed=9)[0], "id": "imported"}
    other = [{**m, "device": "dev2", "id": m["id"] + "-dev2", "reference_ms": 50.0} for m in quiet]
    assert client.post("/v1/measurements", json={"measurements": [imported, *other]}).status_code == 200

    data, (archs, targets, rows) = _training(db_url)
    by_arch = dict(zip(data.archs, zip(data.values, data.stds, strict=True), strict=True))
    # Long-run level median(100, 104, 130) = 104: every batch of a subnet lands on value * 1.04.
    for m in base:
        value, std = by_arch[m["arch"]]
        assert value == pytest.approx(m["value"] * 1.04)
        se = 1.2533 * 0.5 * 1.04 / 3  # each batch's std, rescaled, as the median's standard error
        assert std == pytest.approx((3 * se**2) ** 0.5 / 3)
    assert by_arch[imported["arch"]][0] == imported["value"]  # used as measured
    matrix = {a: dict(zip(targets, row, strict=True)) for a, row in zip(archs, rows, strict=True)}
    for m in base:
        assert matrix[m["arch"]]["dev1"] == pytest.approx(m["value"] * 1.04)
        assert matrix[m["arch"]]["dev2"] == pytest.approx(m["value"])  # its only batch is its level

    levels = client.get("/v1/devices/dev1/levels")
    assert levels.status_code == 200, levels.text
    (level,) = levels.json()
    assert (level["space"], level["reference_arch"], level["long_run_ms"], level["batches"]) == (
        SPACE,
        REFERENCE,
        104.0,
        3,
    )
    # Against the level of all batches only the slow one lies beyond 10%.
    assert [(s["batch_ms"], s["long_run_ms"]) for s in level["shifted"]] == [(130.0, 104.0)]
    assert client.get("/v1/devices/nope/levels").status_code == 404


def test_a_retracted_batch_leaves_the_level(client: TestClient, db_url: str) -> None:
    register(client)
    base = measurements(2, seed=4)
    batches = [_batch(base, "a", 100.0, 1.0), _batch(base, "b", 200.0, 2.0)]
    for b in batches:
        assert client.post("/v1/measurements", json={"measurements": b}).status_code == 200
    (level,) = client.get("/v1/devices/dev1/levels").json()
    assert level["long_run_ms"] == 150.0 and level["batches"] == 2
    ids = [
        m["id"] for m in client.get("/v1/measurements").json()["measurements"] if m["reference_ms"] == 200.0
    ]
    for measurement_id in ids:
        assert client.delete(f"/v1/measurements/{measurement_id}").status_code == 200
    (level,) = client.get("/v1/devices/dev1/levels").json()
    assert level["long_run_ms"] == 100.0 and level["batches"] == 1
    data, _ = _training(db_url)
    assert sorted(data.values) == pytest.approx(sorted(m["value"] for m in base))


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"reference_arch": REFERENCE}, None, "give both reference_arch and reference_ms"),
        ({"reference_ms": 100.0}, None, "give both reference_arch and reference_ms"),
        ({"reference_arch": REFERENCE, "reference_ms": 0.0}, "reference_ms", "greater than 0"),
        ({"reference_arch": "zz", "reference_ms": 100.0}, None, "arch 'zz' is not a subnet"),
    ],
)
def test_a_bad_level_is_a_422(
    client: TestClient, change: dict[str, Any], field: str | None, message: str
) -> None:
    register(client)
    item = {**measurements(1)[0], **change}
    answer = client.post("/v1/measurements", json={"measurements": [item]})
    assert answer.status_code == 422 and message in answer.text
    if field is not None:
        assert answer.json()["detail"][0]["loc"][-1] == field
    assert client.get("/v1/measurements").json()["total"] == 0


def test_a_score_has_no_level(client: TestClient) -> None:
    score = {
        **measurements(1, device=None, task="market1501")[0],
        "reference_arch": REFERENCE,
        "reference_ms": 1.0,
    }
    answer = client.post("/v1/measurements", json={"measurements": [score]})
    assert answer.status_code == 422 and "only a latency has a reference level" in answer.text


def test_a_job_result_keeps_its_batch_level(client: TestClient) -> None:
    register(client)
    assert (
        client.post("/v1/campaigns", json={"space": SPACE, "device": "dev1", "n": 2, "seed": 1}).status_code
        == 201
    )
    first, second = client.post("/v1/jobs/lease", json={"device": "dev1", "count": 2}).json()["jobs"]
    result = {
        "lease_token": first["lease_token"],
        "value": 12.0,
        "reference_arch": REFERENCE,
        "reference_ms": 80.0,
    }
    done = client.post(f"/v1/jobs/{first['id']}/result", json=result)
    assert done.status_code == 200, done.text
    assert client.post(f"/v1/jobs/{first['id']}/result", json=result).status_code == 200  # idempotent
    stored = client.get("/v1/measurements").json()["measurements"][0]
    assert (stored["value"], stored["reference_arch"], stored["reference_ms"]) == (12.0, REFERENCE, 80.0)
    bad = {"lease_token": second["lease_token"], "value": 12.0, "reference_arch": "zz", "reference_ms": 80.0}
    refused = client.post(f"/v1/jobs/{second['id']}/result", json=bad)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "reference_arch"]
    half = {"lease_token": second["lease_token"], "value": 12.0, "reference_ms": 80.0}
    assert client.post(f"/v1/jobs/{second['id']}/result", json=half).status_code == 422
