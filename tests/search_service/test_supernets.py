"""Supernet weights are a registered, versioned resource: safetensors only, checked against the
space's supernet, stored by sha256 under the data directory, one version per distinct file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from service_helpers import RIDGE, make_settings
from typer.testing import CliRunner

import supernet
from search_service import create_app
from search_service import repositories as repo
from search_service.cli import app as cli_app
from search_service.client import GpnasClient, Invalid
from search_service.core import make_engine, make_sessionmaker

SPACE = "tiny-weights"
# A registered UFO space whose supernet is a few hundred kB.
DEFINITION: dict[str, Any] = {
    "name": SPACE,
    "tasks": [{"name": "face", "head": 4, "metric": "verification"}, {"name": "person"}],
    "depths": [1, 2],
    "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [2.0, 1.0], "num_heads": [2, 1]},
    "per_task": ["ffn"],
    "geometry": {"embed_dim": 16, "patch_size": 16, "image_size": 32, "head_dim": 8},
}


def state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The tiny space's supernet weights (``seed`` makes another version)."""
    space = supernet.space_from_definition(supernet.SpaceDefinition.model_validate(DEFINITION))
    return {k: v.contiguous() for k, v in supernet.build_supernet(space, seed=seed).state_dict().items()}


def checkpoint(path: Path, seed: int = 0, **changes: torch.Tensor | None) -> Path:
    """A safetensors file of the tiny supernet, ``changes`` replacing (or, None, dropping) tensors."""
    weights = state_dict(seed)
    for name, tensor in changes.items():
        if tensor is None:
            del weights[name]
        else:
            weights[name] = tensor
    save_file(weights, str(path))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def weights_client(db_url: str, data_dir: Path) -> Iterator[TestClient]:
    """An app (auth off) with a data directory and the tiny space registered."""
    with TestClient(
        create_app(make_settings(db_url, data_dir=data_dir, max_supernet_mb=1, **RIDGE))
    ) as client:
        assert client.post("/v1/spaces", json=DEFINITION).status_code == 201
        yield client


def upload(client: TestClient, path: Path | bytes, space: str = SPACE, **kwargs: Any) -> Any:
    content = path if isinstance(path, bytes) else path.read_bytes()
    return client.post("/v1/supernets", params={"space": space}, content=content, **kwargs)


def stored_files(data_dir: Path) -> list[str]:
    folder = data_dir / "supernets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_versions_count_up_per_space_and_the_same_bytes_are_the_same_version(
    weights_client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    first = checkpoint(tmp_path / "a.safetensors", seed=0)
    sha = hashlib.sha256(first.read_bytes()).hexdigest()
    created = upload(weights_client, first)
    assert created.status_code == 201, created.text
    assert created.json() | {"created_at": None} == {
        "space": SPACE,
        "version": 1,
        "sha256": sha,
        "size": first.stat().st_size,
        "created_at": None,
    }
    assert (data_dir / "supernets" / f"{sha}.safetensors").read_bytes() == first.read_bytes()
    again = upload(weights_client, first)
    assert again.status_code == 200 and again.json() == created.json()
    second = upload(weights_client, checkpoint(tmp_path / "b.safetensors", seed=1))
    assert second.status_code == 201 and second.json()["version"] == 2
    assert [(r["version"], r["sha256"]) for r in weights_client.get("/v1/supernets").json()] == [
        (1, sha),
        (2, second.json()["sha256"]),
    ]
    assert weights_client.get("/v1/supernets", params={"space": "ufo-track2"}).json() == []
    # Only the two files are kept: no temporary file is left behind.
    assert stored_files(data_dir) == sorted([f"{sha}.safetensors", f"{second.json()['sha256']}.safetensors"])


def test_refused_checkpoints_name_the_problem_and_store_nothing(
    weights_client: TestClient, db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    weights = state_dict()
    pickled = tmp_path / "pickled.pt"
    torch.save(weights, pickled)
    key = "blocks.0.attn.qkv.weight" if "blocks.0.attn.qkv.weight" in weights else next(iter(weights))
    wrong_shape = torch.zeros(*weights[key].shape[:-1], weights[key].shape[-1] + 1)
    cases = [
        (pickled.read_bytes(), SPACE, "not a safetensors file"),
        (b"", SPACE, "not a safetensors file"),
        (checkpoint(tmp_path / "missing.safetensors", **{key: None}).read_bytes(), SPACE, f"{key!r}"),
        (checkpoint(tmp_path / "shape.safetensors", **{key: wrong_shape}).read_bytes(), SPACE, "has shape"),
        (
            checkpoint(tmp_path / "extra.safetensors", extra=torch.zeros(1)).read_bytes(),
            SPACE,
            "key 'extra' is not a tensor",
        ),
        (checkpoint(tmp_path / "ok.safetensors").read_bytes(), "no-such-space", "no-such-space"),
        (checkpoint(tmp_path / "ok.safetensors").read_bytes(), "fbnet", "has no supernet"),
    ]
    for content, space, words in cases:
        refused = upload(weights_client, content, space)
        assert refused.status_code == 422, (words, refused.text)
        assert words in refused.text, refused.text
    missing = upload(weights_client, checkpoint(tmp_path / "m.safetensors", **{key: None}))
    assert "missing" in missing.text
    assert stored_files(data_dir) == []
    assert weights_client.get("/v1/supernets").json() == []


def test_uploads_over_their_limit_are_413_and_leave_nothing(
    weights_client: TestClient, data_dir: Path
) -> None:
    big = b"\0" * (2 * 2**20)  # max_supernet_mb is 1
    declared = upload(weights_client, big)
    assert declared.status_code == 413 and "GPNAS_MAX_SUPERNET_MB" in declared.text
    # Without a Content-Length the body is counted as it arrives.
    streamed = weights_client.post("/v1/supernets", params={"space": SPACE}, content=iter([big[: 2**19]] * 4))
    assert streamed.status_code == 413
    assert stored_files(data_dir) == []
    # Larger than max_body_bytes is fine for this route only.
    assert weights_client.post("/v1/devices", content=b"{" + b" " * 2**20 * 17).status_code == 413


def test_only_admin_tokens_upload_weights(db_url: str, data_dir: Path, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    with make_sessionmaker(engine, write=True)() as session:
        _, admin = repo.create_token(session, label="admin")
        _, device = repo.create_token(session, label="chip", device="chip")
        session.commit()
    engine.dispose()
    path = checkpoint(tmp_path / "a.safetensors")
    settings = make_settings(db_url, data_dir=data_dir, auth=True)
    with TestClient(create_app(settings)) as client:
        headers = {"Authorization": f"Bearer {admin}"}
        assert client.post("/v1/spaces", json=DEFINITION, headers=headers).status_code == 201
        assert upload(client, path).status_code == 401
        as_device = upload(client, path, headers={"Authorization": f"Bearer {device}"})
        assert as_device.status_code == 403 and "device token" in as_device.text
        assert stored_files(data_dir) == []
        assert upload(client, path, headers=headers).status_code == 201
        assert len(client.get("/v1/supernets").json()) == 1  # reads are open


def test_a_server_without_a_data_directory_stores_no_weights(db_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(db_url))) as client:
        refused = upload(client, checkpoint(tmp_path / "a.safetensors"), "ufo-track2")
        assert refused.status_code == 409 and "GPNAS_DATA_DIR" in refused.text


def test_cli_registers_in_the_database_and_lists(db_url: str, data_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"GPNAS_DATA_DIR": str(data_dir)}
    definition = tmp_path / "space.json"
    definition.write_text(supernet.SpaceDefinition.model_validate(DEFINITION).to_json())
    added = runner.invoke(cli_app, ["spaces", "add", str(definition), "--database-url", db_url], env=env)
    assert added.exit_code == 0, added.output
    path = checkpoint(tmp_path / "a.safetensors")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    command = ["supernets", "add", str(path), "--space", SPACE, "--database-url", db_url]
    first = runner.invoke(cli_app, command, env=env)
    assert first.exit_code == 0, first.output
    assert f"registered supernet {SPACE} v1 sha256 {sha}" in first.output
    again = runner.invoke(cli_app, command, env=env)
    assert again.exit_code == 0 and "already registered" in again.output
    assert stored_files(data_dir) == [f"{sha}.safetensors"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    refused = runner.invoke(cli_app, [*command[:2], str(bad), *command[3:]], env=env)
    assert refused.exit_code != 0 and "not a safetensors file" in str(refused.exception)
    listed = runner.invoke(
        cli_app, ["supernets", "list", "--space", SPACE, "--database-url", db_url], env=env
    )
    assert listed.exit_code == 0 and listed.output.startswith(f"{SPACE} v1 sha256 {sha}"), listed.output


def test_the_client_streams_a_checkpoint_from_disk(weights_client: TestClient, tmp_path: Path) -> None:
    path = checkpoint(tmp_path / "a.safetensors")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04 a pickle's first bytes")
    with GpnasClient("http://testserver", http=weights_client, max_retries=0) as api:
        row = api.create_supernet(SPACE, path)
        assert (row.space, row.version, row.sha256) == (
            SPACE,
            1,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        assert api.list_supernets(SPACE) == [row]
        with pytest.raises(Invalid, match="not a safetensors file"):
            api.create_supernet(SPACE, junk)


def _score(arch: str, id_: str, version: int | None, **extra: Any) -> dict[str, Any]:
    return (
        {"id": id_, "space": SPACE, "arch": arch, "task": "face", "metric": "score", "value": 0.5}
        | ({"supernet_version": version} if version is not None else {})
        | extra
    )


def test_scores_name_a_registered_version_and_latencies_none(
    weights_client: TestClient, tmp_path: Path
) -> None:
    assert upload(weights_client, checkpoint(tmp_path / "a.safetensors")).status_code == 201
    space = supernet.get_space(SPACE)
    a, b = (space.format(s) for s in space.sample(2, seed=0))
    stored = weights_client.post(
        "/v1/measurements", json={"measurements": [_score(a, "s1", 1), _score(b, "legacy", None)]}
    )
    assert stored.status_code == 200, stored.text
    listed = weights_client.get("/v1/measurements", params={"space": SPACE}).json()["measurements"]
    assert {m["client_id"]: m["supernet_version"] for m in listed} == {"s1": 1, "legacy": None}
    # An unregistered version refuses the whole batch, naming the item and the versions there are.
    unknown = weights_client.post(
        "/v1/measurements", json={"measurements": [_score(a, "s2", 1), _score(b, "s3", 2)]}
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "measurements", 1, "supernet_version"]
    assert "supernet version 2 of space 'tiny-weights' is not registered; its versions: 1" in unknown.text
    other_space = weights_client.post(
        "/v1/measurements",
        json={"measurements": [_score(a, "s4", 1) | {"space": "ufo2-multipath", "arch": "x"}]},
    )
    assert other_space.status_code == 422
    # Latency does not depend on the weights.
    assert (
        weights_client.post("/v1/devices", json={"name": "chip", "profiler": "torch-cpu"}).status_code == 201
    )
    latency = {"id": "l1", "space": SPACE, "arch": a, "device": "chip", "metric": "latency_ms", "value": 3.0}
    refused = weights_client.post(
        "/v1/measurements", json={"measurements": [latency | {"supernet_version": 1}]}
    )
    assert refused.status_code == 422 and "does not depend on the weights" in refused.text
    # The version is part of a measurement's content: the same id with another one is a conflict.
    assert upload(weights_client, checkpoint(tmp_path / "b.safetensors", seed=1)).status_code == 201
    conflict = weights_client.post("/v1/measurements", json={"measurements": [_score(a, "s1", 2)]})
    assert conflict.status_code == 409
    assert len(weights_client.get("/v1/measurements", params={"space": SPACE}).json()["measurements"]) == 2


def _scores(archs: list[str], version: int | None, value: float, task: str = "face") -> list[dict[str, Any]]:
    return [
        _score(arch, f"{task}-{version}-{i}", version, value=value + i, task=task)
        for i, arch in enumerate(archs)
    ]


def test_a_tasks_fits_use_the_scores_of_one_version(
    weights_client: TestClient, db_url: str, tmp_path: Path
) -> None:
    space = supernet.get_space(SPACE)
    archs = [space.format(s) for s in space.sample(6, seed=1)]

    def post(items: list[dict[str, Any]]) -> None:
        response = weights_client.post("/v1/measurements", json={"measurements": items})
        assert response.status_code == 200, response.text

    def fitted() -> tuple[dict[str, float], dict[str, float]]:
        """face's training values, and the (arch -> value) of face and person in the matrix."""
        engine = make_engine(db_url)
        with make_sessionmaker(engine)() as session:
            data = repo.training_data(session, SPACE, "score", "face")
            assert repo.data_version(session, SPACE, "score", "face") == data.version
            # The scheduler sees the same data version, so a fit of it is not stale again.
            (face,) = [t for t in repo.measured_targets(session, SPACE) if t.target == "face"]
            assert face.version == data.version and face.n_subnets == len(data.archs)
            matrix_archs, targets, rows = repo.training_matrix(session, SPACE, "score")
        engine.dispose()
        matrix = {
            t: {a: r[j] for a, r in zip(matrix_archs, rows, strict=True) if r[j] == r[j]}
            for j, t in enumerate(targets)
        }
        assert matrix["face"] == dict(zip(data.archs, data.values, strict=True))
        return dict(zip(data.archs, data.values, strict=True)), matrix["person"]

    # Unversioned (legacy) scores fit as they always did.
    post(_scores(archs[:4], None, 10.0) + _scores(archs[:4], None, 50.0, task="person"))
    legacy, person = fitted()
    assert legacy == {a: 10.0 + i for i, a in enumerate(archs[:4])}
    # Scores of version 1 replace them for face only; person keeps its legacy scores.
    assert upload(weights_client, checkpoint(tmp_path / "a.safetensors")).status_code == 201
    post(_scores(archs[2:5], 1, 20.0))
    v1, person_now = fitted()
    assert v1 == {a: 20.0 + i for i, a in enumerate(archs[2:5])} and person_now == person
    # Registering version 2 changes nothing until face has a score of it; then only it counts.
    assert upload(weights_client, checkpoint(tmp_path / "b.safetensors", seed=1)).status_code == 201
    assert fitted()[0] == v1
    post(_scores(archs[5:], 2, 30.0))
    assert fitted()[0] == {archs[5]: 30.0}
    # Retracting it brings version 1 back; latencies are shared by every version.
    (v2_row,) = [
        m
        for m in weights_client.get("/v1/measurements", params={"space": SPACE}).json()["measurements"]
        if m["supernet_version"] == 2
    ]
    assert weights_client.delete(f"/v1/measurements/{v2_row['id']}").status_code == 200
    assert fitted()[0] == v1


def test_refits_and_fronts_use_one_versions_scores(weights_client: TestClient, tmp_path: Path) -> None:
    space = supernet.get_space(SPACE)
    archs = [space.format(s) for s in space.sample(8, seed=2)]
    assert (
        weights_client.post("/v1/devices", json={"name": "chip", "profiler": "torch-cpu"}).status_code == 201
    )
    latencies = [
        {"id": f"l{i}", "space": SPACE, "arch": a, "device": "chip", "metric": "latency_ms", "value": 1.0 + i}
        for i, a in enumerate(archs)
    ]
    assert upload(weights_client, checkpoint(tmp_path / "a.safetensors")).status_code == 201
    items = latencies + _scores(archs, None, 10.0) + _scores(archs[:3], 1, 20.0)
    assert weights_client.post("/v1/measurements", json={"measurements": items}).status_code == 200
    report = weights_client.post("/v1/refit", json={"space": SPACE, "wait": True}).json()
    (face,) = [p for p in report["predictors"] if p["target"] == "face"]
    assert face["n_train"] == 3, report  # version 1's three subnets, not the eight legacy ones
    front = weights_client.get("/v1/pareto", params={"space": SPACE, "task": "face", "device": "chip"}).json()
    assert {p["arch"] for p in front["points"] if p["measured"]} <= set(archs[:3])


def test_a_supernet_eval_device_names_its_weights_when_registered(client: TestClient) -> None:
    device = {"name": "scorer", "profiler": "supernet-eval", "settings": {"data": "digits"}}
    refused = client.post("/v1/devices", json=device)
    assert refused.status_code == 422, refused.text
    assert "'checkpoint'" in refused.text and "'random_weights': true" in refused.text
    device["settings"] |= {"random_weights": True}
    assert client.post("/v1/devices", json=device).status_code == 201


def test_a_new_versions_fit_borrows_the_previous_versions_scores(
    db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    settings = make_settings(db_url, data_dir=data_dir)  # the default gpnas-multitask score predictor
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/spaces", json=DEFINITION).status_code == 201
        space = supernet.get_space(SPACE)
        archs = [space.format(s) for s in space.sample(8, seed=3)]
        for seed in (0, 1):
            assert upload(client, checkpoint(tmp_path / f"{seed}.safetensors", seed=seed)).status_code == 201
        items = _scores(archs, None, 5.0) + _scores(archs, 1, 10.0) + _scores(archs[:3], 2, 20.0)
        assert client.post("/v1/measurements", json={"measurements": items}).status_code == 200
        engine = make_engine(db_url)
        with make_sessionmaker(engine)() as session:
            matrix_archs, targets, rows = repo.training_matrix(session, SPACE, "score", borrowing="face")
            plain = repo.training_matrix(session, SPACE, "score")[1]
        engine.dispose()
        # Version 2's own three scores, and version 1's eight (not the unversioned ones) beside them.
        assert targets == ["face", "face@v1"] and plain == ["face"]
        column = {a: r[1] for a, r in zip(matrix_archs, rows, strict=True)}
        assert column == {a: 10.0 + i for i, a in enumerate(archs)}
        report = client.post("/v1/refit", json={"space": SPACE, "wait": True}).json()
        assert report["errors"] == [], report
        (face,) = [p for p in report["predictors"] if p["target"] == "face"]
        assert (face["kind"], face["n_train"]) == ("gpnas-multitask", 3)


def test_a_score_jobs_result_names_the_version_of_the_weights_it_recorded(
    weights_client: TestClient, tmp_path: Path
) -> None:
    path = checkpoint(tmp_path / "a.safetensors")
    assert upload(weights_client, path).status_code == 201
    device = {
        "name": "scorer",
        "profiler": "supernet-eval",
        "settings": {"data": "digits", "checkpoint": "w"},
    }
    assert weights_client.post("/v1/devices", json=device).status_code == 201
    campaign = {"space": SPACE, "device": "scorer", "task": "face", "n": 2}
    assert weights_client.post("/v1/campaigns", json=campaign).status_code == 201
    jobs = weights_client.post("/v1/jobs/lease", json={"device": "scorer", "count": 2}).json()["jobs"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    for job, weights in zip(jobs, [sha, "random"], strict=True):
        result = {"lease_token": job["lease_token"], "value": 0.5, "environment": {"weights": weights}}
        assert weights_client.post(f"/v1/jobs/{job['id']}/result", json=result).status_code == 200
    listed = weights_client.get("/v1/measurements", params={"space": SPACE}).json()["measurements"]
    assert sorted(m["supernet_version"] or 0 for m in listed) == [0, 1]
