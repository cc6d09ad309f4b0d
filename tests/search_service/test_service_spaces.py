"""Spaces defined as data through the API and the CLI, on SQLite and PostgreSQL: registered by an
admin, used by ingest, refits and fronts like a preset, extended with a task later, and found by
every app on the same database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import RIDGE, make_settings, register
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import supernet
from search_service import create_app
from search_service import repositories as repo
from search_service.cli import app as cli_app
from search_service.core import make_engine, make_sessionmaker
from search_service.services import spaces as space_service
from supernet import SpaceDefinition, TaskDefinition

NAME = "tiny-vit"
DEFINITION: dict[str, Any] = {
    "name": NAME,
    "tasks": [{"name": "face", "head": 8, "metric": "verification"}, {"name": "person"}],
    "depths": [2, 3],
    "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [4.0, 2.0], "num_heads": [4, 2]},
    "per_task": ["ffn"],
    "geometry": {"embed_dim": 64, "patch_size": 16, "image_size": 32, "head_dim": 16},
}
runner = CliRunner()


@contextmanager
def _session(db_url: str) -> Iterator[Session]:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine, write=True)() as session:
            yield session
    finally:
        engine.dispose()


def _admin(db_url: str, device: str | None = None) -> dict[str, str]:
    with _session(db_url) as session:
        _, secret = repo.create_token(session, device=device, label="test")
        session.commit()
    return {"Authorization": f"Bearer {secret}"}


def _items(space: supernet.SearchSpace, n: int, task: str, seed: int = 0) -> list[dict[str, Any]]:
    """Latency on dev1 (proportional to MACs) and a score on ``task`` of ``n`` random subnets."""
    subs = space.sample(n, seed=seed)
    macs = space.macs(subs)
    rng = np.random.default_rng(seed)
    out = []
    for sub, mac in zip(subs, macs, strict=True):
        arch = space.format(sub)
        common = {"space": space.name, "arch": arch}
        out.append(
            {"id": str(uuid.uuid4()), **common, "device": "dev1", "metric": "latency_ms", "value": mac / 1e6}
        )
        score = float(np.log(mac) + rng.normal(0, 0.01))
        out.append({"id": str(uuid.uuid4()), **common, "task": task, "metric": "score", "value": score})
    return out


def test_a_registered_space_is_used_like_a_preset(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url, auth=True, **RIDGE))) as client:
        admin = _admin(db_url)
        assert client.post("/v1/spaces", json=DEFINITION).status_code == 401
        register(client, headers=admin)
        device = _admin(db_url, device="dev1")
        assert client.post("/v1/spaces", json=DEFINITION, headers=device).status_code == 403
        created = client.post("/v1/spaces", json=DEFINITION, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json() == {
            "name": NAME,
            "tasks": ["face", "person"],
            "cardinality": str(8**2 + 8**3),
            "score_label": "score (higher is better)",
            "preset": False,
            "depths": [2, 3],
            "choices": DEFINITION["choices"],
        }
        listed = {s["name"]: s["preset"] for s in client.get("/v1/spaces").json()}
        assert listed == {
            "ufo-track2": True,
            "ufo2-multipath": True,
            "fbnet": True,
            "nasbench201": True,
            NAME: False,
        }
        stored = client.get(f"/v1/spaces/{NAME}/definition").json()
        assert stored == SpaceDefinition.load(DEFINITION).model_dump(mode="json")
        assert list(stored["choices"]) == [
            "ffn_path",
            "mlp_ratio",
            "num_heads",
        ]  # order kept (JSONB would not)

        # Ingest, refit and the front: exactly as on a preset.
        space = supernet.get_space(NAME)
        posted = client.post(
            "/v1/measurements", json={"measurements": _items(space, 30, "face")}, headers=admin
        )
        assert posted.json() == {"inserted": 60, "duplicate": 0, "level_shifts": []}, posted.text
        report = client.post("/v1/refit", json={"space": NAME}, headers=admin).json()
        assert report["status"] == "done" and report["errors"] == [], report
        assert [(f["task"], f["device"]) for f in report["fronts"]] == [("face", "dev1")]
        front = client.get("/v1/pareto", params={"space": NAME, "task": "face", "device": "dev1"})
        assert front.status_code == 200 and front.json()["total"] >= 2
        assert all(space.parse(p["arch"]) for p in front.json()["points"])
        bad = client.post(
            "/v1/measurements", json={"measurements": _items(space, 1, "vehicle")}, headers=admin
        )
        assert bad.status_code == 422 and "vehicle" in bad.text

        # A task added later: nothing stored changes, and its scores are accepted.
        added = client.post(f"/v1/spaces/{NAME}/tasks", json={"name": "vehicle", "head": 4}, headers=admin)
        assert added.status_code == 201 and added.json()["tasks"] == ["face", "person", "vehicle"]
        posted = client.post(
            "/v1/measurements", json={"measurements": _items(space, 3, "vehicle")}, headers=admin
        )
        assert posted.status_code == 200, posted.text
        assert client.get("/v1/pareto", params={"space": NAME, "task": "face", "device": "dev1"}).json() == (
            front.json()
        )


def test_conflicts_and_invalid_definitions_name_the_field(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url))) as client:
        assert client.post("/v1/spaces", json=DEFINITION).status_code == 201
        again = client.post("/v1/spaces", json=DEFINITION)
        assert again.status_code == 409 and again.json()["detail"][0]["loc"] == ["body", "name"]
        preset = supernet.get_space("ufo-track2").to_definition().model_dump(mode="json")
        copy = client.post("/v1/spaces", json=preset)
        assert copy.status_code == 409 and "is a preset" in copy.text
        # A copy of a preset under its own name, with a task more, is a space of its own.
        mine = {
            **preset,
            "name": "my-track2",
            "tasks": [*preset["tasks"], {"name": "coco", "metric": "top1"}],
        }
        assert client.post("/v1/spaces", json=mine).status_code == 201
        assert supernet.get_space("my-track2").parse("l" + "111" * 12).space == "my-track2"
        for body, loc, words in [
            (
                {**DEFINITION, "name": "x", "choices": {"num_heads": [0], "mlp_ratio": [4.0]}},
                "choices",
                "num_heads",
            ),
            ({**DEFINITION, "name": "x", "depths": [1, 1]}, "depths", "distinct"),
            ({**DEFINITION, "name": "x", "tasks": [{"name": "a b"}]}, "tasks", "pattern"),
            ({**DEFINITION, "name": "x", "geometry": {"embed_dim": -1}}, "geometry", "greater than"),
            ({**DEFINITION, "name": "x", "colour": "red"}, "colour", "Extra inputs"),
        ]:
            answer = client.post("/v1/spaces", json=body)
            assert answer.status_code == 422, answer.text
            detail = answer.json()["detail"][0]
            assert detail["loc"][:2] == ["body", loc] and words in detail["msg"], detail
        assert client.get("/v1/spaces/x").status_code == 404  # nothing was stored
        for space, body, status, words in [
            ("ufo-track2", {"name": "coco"}, 409, "is a preset"),
            ("nope", {"name": "coco"}, 404, "unknown space"),
            (NAME, {"name": "face"}, 409, "has a task 'face' already"),
            (NAME, {"name": "x", "head": 0}, 422, "greater than or equal to 1"),
        ]:
            answer = client.post(f"/v1/spaces/{space}/tasks", json=body)
            assert answer.status_code == status and words in answer.text, answer.text


def test_another_app_on_the_database_finds_the_space_and_its_new_tasks(db_url: str) -> None:
    with TestClient(create_app(make_settings(db_url))) as first:
        assert first.post("/v1/spaces", json=DEFINITION).status_code == 201
    # A second app (another API process): nothing of the first is cached, the table is read.
    with TestClient(create_app(make_settings(db_url))) as second:
        assert supernet.space_source() is not None
        detail = second.get(f"/v1/spaces/{NAME}")
        assert detail.status_code == 200 and detail.json()["tasks"] == ["face", "person"]
        register(second)
        space = supernet.get_space(NAME)
        # A task added by yet another process (straight to the database): met in a request, the
        # space is read again.
        with _session(db_url) as session:
            space_service.add_task(session, NAME, TaskDefinition(name="vehicle"))
            session.commit()
        posted = second.post("/v1/measurements", json={"measurements": _items(space, 2, "vehicle")})
        assert posted.status_code == 200, posted.text
        assert supernet.get_space(NAME).tasks == ["face", "person", "vehicle"]
    assert supernet.space_source() is None  # the app's source goes with it


def test_cli_show_add_show_round_trips_between_databases(db_url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert runner.invoke(cli_app, ["db", "upgrade", "--database-url", other]).exit_code == 0
    path = tmp_path / "tiny.yaml"
    path.write_text(SpaceDefinition.load(DEFINITION).to_yaml())
    added = runner.invoke(cli_app, ["spaces", "add", str(path), "--database-url", db_url])
    assert added.exit_code == 0, added.output
    assert added.output.strip() == f"registered space {NAME}: 576 subnets, tasks: face, person"
    task = runner.invoke(
        cli_app, ["spaces", "add-task", NAME, "vehicle", "--head", "4", "--database-url", db_url]
    )
    assert task.exit_code == 0 and "tasks: face, person, vehicle" in task.output, task.output
    for fmt in ("json", "yaml"):
        shown = runner.invoke(cli_app, ["spaces", "show", NAME, "--format", fmt, "--database-url", db_url])
        assert shown.exit_code == 0, shown.output
        copy = tmp_path / f"copy.{fmt}"
        copy.write_text(shown.output)
        target = other if fmt == "json" else f"sqlite:///{tmp_path / 'third.db'}"
        if fmt == "yaml":
            assert runner.invoke(cli_app, ["db", "upgrade", "--database-url", target]).exit_code == 0
        again = runner.invoke(cli_app, ["spaces", "add", str(copy), "--database-url", target])
        assert again.exit_code == 0, again.output
        reshown = runner.invoke(cli_app, ["spaces", "show", NAME, "--format", fmt, "--database-url", target])
        assert reshown.output == shown.output
    listed = runner.invoke(cli_app, ["spaces", "list", "--database-url", other])
    assert listed.exit_code == 0 and [line.split()[0] for line in listed.output.splitlines()][-1] == NAME
    refused = runner.invoke(cli_app, ["spaces", "add", str(path), "--database-url", other])
    assert isinstance(refused.exception, ValueError) and "registered already" in str(refused.exception)
    preset = runner.invoke(cli_app, ["spaces", "show", "fbnet"])
    assert SpaceDefinition.from_text(preset.output) == supernet.get_space("fbnet").to_definition()
    # Offline commands take a registered space by name (GPNAS_DATABASE_URL) or its definition file.
    assert supernet.space_source() is None
    from search_service.cli._spaces import resolve_space

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPNAS_DATABASE_URL", other)
        assert resolve_space(NAME).tasks == ["face", "person", "vehicle"]
    assert resolve_space(str(path)).tasks == ["face", "person"]
