"""Models you can download: ``POST /v1/artifacts`` builds the ONNX file of a subnet or a deployment
once (dynamic batch, fp32 or fp16, checked against torch), stores it by sha256 under the data
directory, and ``GET /v1/artifacts/{digest}`` streams it; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save_file
from service_helpers import make_settings
from sqlalchemy import func, select

import supernet
from search_service import create_app
from search_service import repositories as repo
from search_service.client import DigestMismatch, GpnasClient, Invalid, NotFound, Unauthorized
from search_service.core import make_engine, make_sessionmaker
from search_service.domain import WorkStatus
from search_service.models import ArtifactRow, WorkItem
from search_service.schemas import ArtifactCreate
from search_service.services import artifacts as service

SPACE = "tiny-artifacts"
# A registered UFO space whose supernet is small (a build takes well under a second) but whose
# widest subnet's fp32 weights exceed 1 MiB, the smallest max_artifact_mb.
DEFINITION: dict[str, Any] = {
    "name": SPACE,
    "tasks": [{"name": "face", "head": 8, "metric": "verification"}, {"name": "person"}],
    "depths": [1, 2],
    "choices": {"ffn_path": ["shared", "task"], "mlp_ratio": [4.0, 2.0], "num_heads": [8, 4]},
    "per_task": ["ffn"],
    "geometry": {"embed_dim": 128, "patch_size": 16, "image_size": 32, "head_dim": 16},
}
# Depth, then per layer the 1-based choice of ffn_path, mlp_ratio, num_heads (0: no layer).
WIDE = "02211211"  # two layers with task experts, 4x FFN, 8 heads: ~1.9 MiB of fp32 weights
NARROW = "01122000"  # one shared layer, 2x FFN, 4 heads: ~0.8 MiB


@pytest.fixture
def settings_for(db_url: str, tmp_path: Path):  # noqa: ANN201
    def make(**overrides: object):  # noqa: ANN202
        return make_settings(db_url, data_dir=tmp_path / "data", **overrides)

    return make


@pytest.fixture
def api(settings_for) -> Iterator[TestClient]:  # noqa: ANN001
    with TestClient(create_app(settings_for())) as client:
        assert client.post("/v1/spaces", json=DEFINITION).status_code == 201
        yield client


def _body(**fields: Any) -> dict[str, Any]:
    return {"space": SPACE, "weights": {"random_seed": 0}, **fields}


def _count(db_url: str) -> int:
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(ArtifactRow)) or 0)
    finally:
        engine.dispose()


def test_a_subnet_is_built_stored_by_digest_and_streamed(
    api: TestClient, db_url: str, tmp_path: Path
) -> None:
    created = api.post("/v1/artifacts", json=_body(arch=WIDE, task="face"))
    assert created.status_code == 200, created.text
    artifact = created.json()
    digest = artifact["digest"]
    stored = tmp_path / "data" / "artifacts" / f"{digest}.onnx"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    assert artifact["size_bytes"] == stored.stat().st_size
    assert artifact["format"] == "onnx" and artifact["precision"] == "fp32"
    assert artifact["url"] == f"/v1/artifacts/{digest}"
    assert artifact["weights"] == {"supernet_version": None, "random_seed": 0}
    assert 0 <= artifact["max_abs_diff"] < 1e-3

    downloaded = api.get(artifact["url"])
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert downloaded.headers["x-content-sha256"] == digest
    assert downloaded.headers["etag"] == f'"{digest}"'
    assert hashlib.sha256(downloaded.content).hexdigest() == digest

    # The batch axis is dynamic: one file serves any batch; the face head has 8 outputs.
    session = onnxruntime.InferenceSession(downloaded.content, providers=["CPUExecutionProvider"])
    images = np.zeros((3, 3, 32, 32), np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: images})
    assert out.shape == (3, 8)

    # Asked again: the stored artifact, not a second build; listed once.
    again = api.post("/v1/artifacts", json=_body(arch=WIDE, task="face"))
    assert again.json() == artifact
    assert _count(db_url) == 1
    page = api.get("/v1/artifacts", params={"space": SPACE}).json()
    assert page["total"] == 1 and page["artifacts"] == [artifact]
    assert api.get("/v1/artifacts", params={"space": "ufo-track2"}).json()["total"] == 0


def test_weights_and_precision_make_other_files(api: TestClient) -> None:
    fp32 = api.post("/v1/artifacts", json=_body(arch=NARROW, task="person")).json()
    fp16 = api.post("/v1/artifacts", json=_body(arch=NARROW, task="person", precision="fp16"))
    assert fp16.status_code == 200, fp16.text
    half = fp16.json()
    other_seed = api.post("/v1/artifacts", json=_body(arch=NARROW, task="person", weights={"random_seed": 1}))
    assert len({fp32["digest"], half["digest"], other_seed.json()["digest"]}) == 3
    assert half["precision"] == "fp16"
    # Half the weight bytes; checked against torch with the fp16 rounding it brings.
    assert half["size_bytes"] < 0.7 * fp32["size_bytes"]
    assert fp32["max_abs_diff"] < half["max_abs_diff"] < 0.05
    session = onnxruntime.InferenceSession(api.get(half["url"]).content, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": np.ones((2, 3, 32, 32), np.float32)})
    assert out.dtype == np.float32 and out.shape[0] == 2


@pytest.mark.parametrize("input_mode", ["separate", "shared"])
def test_a_deployment_is_one_file_with_an_output_per_task(api: TestClient, input_mode: str) -> None:
    body = _body(tasks={"face": WIDE, "person": NARROW}, input=input_mode)
    created = api.post("/v1/artifacts", json=body)
    assert created.status_code == 200, created.text
    artifact = created.json()
    assert artifact["tasks"] == {"face": WIDE, "person": NARROW}
    assert artifact["input"] == input_mode and artifact["arch"] is None
    assert artifact["max_abs_diff"] < 1e-3
    session = onnxruntime.InferenceSession(
        api.get(artifact["url"]).content, providers=["CPUExecutionProvider"]
    )
    inputs = [i.name for i in session.get_inputs()]
    assert inputs == (["images"] if input_mode == "shared" else ["images_face", "images_person"])
    outputs = session.run(None, {name: np.ones((4, 3, 32, 32), np.float32) for name in inputs})
    assert [o.shape for o in outputs] == [(4, 8), (4, 128)]


def test_a_deployment_defaults_to_separate_inputs(api: TestClient) -> None:
    artifact = api.post("/v1/artifacts", json=_body(tasks={"person": NARROW})).json()
    assert artifact["input"] == "separate"


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        (_body(space="nope", arch=NARROW), ["body", "space"], "nope"),
        (_body(space="fbnet", arch="0" * 22), ["body", "space"], "no supernet"),
        (_body(arch="d9|bad"), ["body", "arch"], "d9|bad"),
        (_body(arch=NARROW, task="car"), ["body", "task"], "car"),
        (_body(arch=NARROW), ["body", "task"], "task is required"),
        (_body(tasks={"car": NARROW}), ["body", "tasks", "car"], "car"),
        (_body(tasks={"face": "d9"}), ["body", "tasks", "face"], "d9"),
        (
            _body(arch=NARROW, task="face", weights={"supernet_version": 3}),
            ["body", "weights", "supernet_version"],
            "unknown supernet version 3",
        ),
        (_body(arch=NARROW, tasks={"face": NARROW}), ["body"], "exactly one of arch"),
        (_body(arch=NARROW, task="face", input="shared"), ["body"], "deployments"),
        (_body(arch=NARROW, task="face", weights={}), ["body", "weights"], "exactly one of"),
        ({"space": SPACE, "arch": NARROW, "task": "face"}, ["body", "weights"], "Field required"),
        (_body(arch=NARROW, task="face", precision="int8"), ["body", "precision"], "fp16"),
    ],
)
def test_bad_requests_are_422_naming_the_field(
    api: TestClient, db_url: str, tmp_path: Path, body: dict[str, Any], loc: list[str], words: str
) -> None:
    answer = api.post("/v1/artifacts", json=body)
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    assert error["loc"][: len(loc)] == loc and words in error["msg"], error
    assert _count(db_url) == 0
    folder = tmp_path / "data" / "artifacts"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_over_max_artifact_mb_is_413_and_nothing_is_kept(
    settings_for,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    folder = tmp_path / "data" / "artifacts"
    with TestClient(create_app(settings_for(max_artifact_mb=1))) as api:
        assert api.post("/v1/spaces", json=DEFINITION).status_code == 201
        # Its weights alone (~2.4 MB in fp32) are over the limit: refused before any build.
        started = time.monotonic()
        refused = api.post("/v1/artifacts", json=_body(arch=WIDE, task="face"))
        assert refused.status_code == 413 and "max_artifact_mb" in refused.text
        assert time.monotonic() - started < 1.0
        # fp16 halves them but the built file is still larger: built, then deleted.
        monkeypatch.setattr(service, "BYTES_PER_WEIGHT", {"fp32": 1, "fp16": 1})
        built_then_refused = api.post("/v1/artifacts", json=_body(arch=WIDE, task="face"))
        assert built_then_refused.status_code == 413, built_then_refused.text
        assert "the built file takes" in built_then_refused.json()["detail"]
        assert list(folder.iterdir()) == []
        assert _count(db_url) == 0
        # Small ones still pass.
        assert api.post("/v1/artifacts", json=_body(arch=NARROW, task="face")).status_code == 200


def test_a_failed_build_is_a_clear_422_recorded_once(
    api: TestClient, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def broken_export(body: ArtifactCreate, path: Path, weights: Path | None) -> Any:
        calls.append(body.arch or "")
        path.write_bytes(b"half a file")
        raise RuntimeError("the exporter does not support this operator")

    monkeypatch.setattr(service, "_export", broken_export)
    for _ in range(2):
        answer = api.post("/v1/artifacts", json=_body(arch=NARROW, task="face"))
        assert answer.status_code == 422
        assert "could not be built: the exporter does not support this operator" in answer.text
    # The failure is recorded on its work item: asking again answers it without building again.
    assert len(calls) == 1
    assert list((tmp_path / "data" / "artifacts").iterdir()) == []
    assert _count(db_url) == 0
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            item = session.scalar(select(WorkItem).where(WorkItem.kind == "artifact"))
            assert item is not None and item.status == WorkStatus.FAILED
    finally:
        engine.dispose()


def test_equal_requests_at_the_same_time_share_one_build(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []
    real = service.build_file

    def slow_build(*args: Any) -> Any:
        builds.append("build")
        time.sleep(0.5)  # long enough for every request to be waiting on it
        return real(*args)

    monkeypatch.setattr(service, "build_file", slow_build)
    answers: list[dict[str, Any]] = []

    def ask() -> None:
        answers.append(api.post("/v1/artifacts", json=_body(arch=NARROW, task="person")).json())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == ["build"]
    assert len({a["digest"] for a in answers}) == 1 and len(answers) == 4


def test_downloads_unknown_and_malformed_digests(api: TestClient) -> None:
    assert api.get("/v1/artifacts/" + "0" * 64).status_code == 404
    assert api.get("/v1/artifacts/not-a-digest").status_code == 422


def test_tokens_create_and_download_but_device_tokens_cannot(settings_for, db_url: str) -> None:  # noqa: ANN001
    engine = make_engine(db_url)
    with make_sessionmaker(engine, write=True)() as session:
        _, admin = repo.create_token(session, label="admin")
        session.commit()
    with TestClient(create_app(settings_for(auth=True))) as api:
        admin_headers = {"Authorization": f"Bearer {admin}"}
        assert api.post("/v1/spaces", json=DEFINITION, headers=admin_headers).status_code == 201
        assert (
            api.post(
                "/v1/devices",
                json={"name": "dev1", "profiler": "torch-cpu", "settings": {}},
                headers=admin_headers,
            ).status_code
            == 201
        )
        with make_sessionmaker(engine, write=True)() as session:
            _, device = repo.create_token(session, device="dev1", label="agent")
            session.commit()
        device_headers = {"Authorization": f"Bearer {device}"}
        body = _body(arch=NARROW, task="face")
        assert api.post("/v1/artifacts", json=body).status_code == 401
        assert api.post("/v1/artifacts", json=body, headers=device_headers).status_code == 403
        artifact = api.post("/v1/artifacts", json=body, headers=admin_headers).json()
        assert api.get(artifact["url"], headers=admin_headers).status_code == 200
        assert api.get(artifact["url"]).status_code == 200  # reads are open
        refused = api.get(artifact["url"], headers=device_headers)
        assert refused.status_code == 403 and "leased jobs" in refused.text
    engine.dispose()


def test_the_client_creates_and_downloads_verifying_the_digest(api: TestClient, tmp_path: Path) -> None:
    gpnas = GpnasClient("http://testserver", http=api)
    artifact = gpnas.create_artifact(ArtifactCreate.model_validate(_body(arch=NARROW, task="face")))
    path = gpnas.download_artifact(artifact.digest, tmp_path / "model.onnx")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.digest
    assert gpnas.list_artifacts(space=SPACE).artifacts == [artifact]
    with pytest.raises(NotFound):
        gpnas.download_artifact("1" * 64, tmp_path / "missing.onnx")
    with pytest.raises(Invalid, match="car"):
        gpnas.create_artifact(ArtifactCreate.model_validate(_body(arch=NARROW, task="car")))
    assert not (tmp_path / "missing.onnx").exists()


def test_the_client_refuses_a_download_whose_bytes_are_not_the_digest(tmp_path: Path) -> None:
    def tampered(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"not the model")

    gpnas = GpnasClient("http://server", http=httpx.Client(transport=httpx.MockTransport(tampered)))
    with pytest.raises(DigestMismatch, match="not kept"):
        gpnas.download_artifact("2" * 64, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_device_token_gets_403_from_the_client(settings_for, db_url: str, tmp_path: Path) -> None:  # noqa: ANN001
    engine = make_engine(db_url)
    with make_sessionmaker(engine, write=True)() as session:
        _, admin = repo.create_token(session, label="admin")
        session.commit()
    with TestClient(create_app(settings_for(auth=True))) as api:
        headers = {"Authorization": f"Bearer {admin}"}
        api.post(
            "/v1/devices", json={"name": "dev1", "profiler": "torch-cpu", "settings": {}}, headers=headers
        )
        with make_sessionmaker(engine, write=True)() as session:
            _, device = repo.create_token(session, device="dev1", label="agent")
            session.commit()
        with pytest.raises(Unauthorized):
            GpnasClient("http://testserver", device, http=api).download_artifact(
                "3" * 64, tmp_path / "x.onnx"
            )
    engine.dispose()


def test_a_registered_supernet_version_is_built_with_its_weights(api: TestClient, tmp_path: Path) -> None:
    space = supernet.get_space(SPACE)
    trained = supernet.build_supernet(space, seed=7).eval()
    checkpoint = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(checkpoint))
    registered = api.post("/v1/supernets", params={"space": SPACE}, content=checkpoint.read_bytes())
    assert registered.status_code == 201, registered.text
    version = registered.json()["version"]

    body = _body(arch=NARROW, task="face", weights={"supernet_version": version})
    created = api.post("/v1/artifacts", json=body)
    assert created.status_code == 200, created.text
    artifact = created.json()
    assert artifact["weights"] == {"supernet_version": version, "random_seed": None}
    # The file holds the registered weights: it reproduces that supernet's subnet.
    model = trained.extract(NARROW, task="face").eval()
    x = supernet.example_input(model.geometry, 2, seed=9)
    session = onnxruntime.InferenceSession(
        api.get(artifact["url"]).content, providers=["CPUExecutionProvider"]
    )
    (out,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), atol=1e-4)
    unknown = api.post("/v1/artifacts", json=_body(arch=NARROW, task="face", weights={"supernet_version": 9}))
    assert unknown.status_code == 422 and f"its versions: {version}" in unknown.text


def test_the_artifact_bodies_of_answers_are_posted_as_they_are(api: TestClient) -> None:
    subnet = service.subnet_artifact(SPACE, NARROW, "face")
    deployment = service.deployment_artifact(SPACE, {"face": WIDE, "person": NARROW}, "shared")
    assert subnet is not None
    for body in (subnet, deployment):
        sent = body.model_dump(mode="json")
        answer = api.post("/v1/artifacts", json=sent)
        assert answer.status_code == 200, answer.text
        assert {k: answer.json()[k] for k in sent} == sent
    assert service.subnet_artifact("fbnet", "0" * 22, None) is None  # no supernet, no artifact


@pytest.mark.postgres
@pytest.mark.slow
def test_with_a_broker_a_worker_builds_it_and_the_api_builds_nothing(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_workers import BROKERS, _env, worker

    def refuse(*_: object) -> None:
        raise AssertionError("the API process built an artifact")

    monkeypatch.setattr(service, "build_file", refuse)
    data_dir = tmp_path / "data"
    queue = f"artifacts-{time.time_ns()}"
    env = _env(pg_url, BROKERS["redis"], queue, GPNAS_DATA_DIR=str(data_dir))
    settings = make_settings(pg_url, data_dir=data_dir, broker_url=BROKERS["redis"], task_queue=queue)
    with worker(env, tmp_path / "worker.log"), TestClient(create_app(settings)) as api:
        assert api.post("/v1/spaces", json=DEFINITION).status_code == 201
        created = api.post("/v1/artifacts", json=_body(arch=NARROW, task="face"))
        assert created.status_code == 200, created.text
        digest = created.json()["digest"]
        assert hashlib.sha256(api.get(f"/v1/artifacts/{digest}").content).hexdigest() == digest
