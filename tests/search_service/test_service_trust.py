"""The trust boundary: the server never imports, calls or opens anything a client names, and
anonymous readers do not see the measuring machines' settings and environments."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings

from search_service import create_app
from search_service import repositories as repo
from search_service.core import make_engine, make_sessionmaker
from supernet import get_space

SPACE = "nasbench201"


def _device(client: TestClient, name: str, profiler: str, settings: dict, **kwargs: object):
    body = {"name": name, "profiler": profiler, "settings": settings}
    return client.post("/v1/devices", json=body, **kwargs)  # type: ignore[arg-type]


def _table(directory: Path, name: str = "chip.csv", n: int = 12) -> list[str]:
    """A latency table of ``n`` NB201 subnets in ``directory``; returns its archs."""
    space = get_space(SPACE)
    archs = [space.format(s) for s in space.sample(n, seed=1)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text("arch,chip\n" + "".join(f"{a},{i + 1}\n" for i, a in enumerate(archs)))
    return archs


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"data": "this:s", "supernet": "this:d"}, "import paths and file names are not accepted"),
        ({"data": "digits", "supernet": "os:system"}, "import paths and file names are not accepted"),
        ({"data": "digits", "checkpoint": "/etc/passwd"}, "absolute paths are refused"),
        ({"data": "digits", "checkpoint": "../../ckpt.pt"}, "'..' is refused"),
    ],
)
def test_devices_cannot_name_code_or_files_outside_a_data_directory(
    client: TestClient, settings: dict, reason: str
) -> None:
    response = _device(client, "eval", "supernet-eval", settings)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "settings"]
    assert reason in response.json()["detail"][0]["msg"]
    assert client.get("/v1/devices").json() == []


@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/self/environ", "../secret.csv", "C:\\secret.csv"])
def test_table_paths_outside_the_data_directory_are_refused(client: TestClient, path: str) -> None:
    response = _device(client, "replay", "table", {"path": path, "column": "chip"})
    assert response.status_code == 422, response.text
    assert (
        "data directory" in response.json()["detail"][0]["msg"]
        or "'..'" in response.json()["detail"][0]["msg"]
    )


def test_registering_and_planning_never_import_a_named_module(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module on the server's path that records being imported: naming it as a dataset or a
    supernet (names are well-formed) must not import it, neither at registration nor when a
    campaign is planned."""
    marker = tmp_path / "imported"
    module = f"gpnas_trap_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\ndef f(*a): return []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with TestClient(create_app(make_settings(db_url))) as client:
        assert (
            _device(client, "eval", "supernet-eval", {"data": module, "supernet": module}).status_code == 201
        )
        body = {"space": "ufo2-multipath", "device": "eval", "task": "imagenet", "n": 2, "seed": 0}
        response = client.post("/v1/campaigns", json=body)
        assert response.status_code in (201, 422), response.text
    assert not marker.exists()
    assert module not in sys.modules


def test_a_table_campaign_reads_only_the_servers_data_directory(db_url: str, tmp_path: Path) -> None:
    archs = _table(tmp_path / "data")
    outside = _table(tmp_path / "elsewhere", "secret.csv", n=30)
    (tmp_path / "data" / "escape.csv").symlink_to(tmp_path / "elsewhere" / "secret.csv")
    settings = make_settings(db_url, data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as client:
        assert _device(client, "replay", "table", {"path": "chip.csv", "column": "chip"}).status_code == 201
        response = client.post("/v1/campaigns", json={"space": SPACE, "device": "replay", "n": 5, "seed": 0})
        assert response.status_code == 201, response.text
        picked = {j["arch"] for j in client.get("/v1/jobs", params={"device": "replay"}).json()["jobs"]}
        assert len(picked) == 5 and picked <= set(archs)
        # A symlink inside the directory that leads out of it is refused when it is followed.
        assert _device(client, "esc", "table", {"path": "escape.csv", "column": "chip"}).status_code == 201
        response = client.post("/v1/campaigns", json={"space": SPACE, "device": "esc", "n": 2, "seed": 0})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "candidates"]
        assert "leads outside the data directory" in response.json()["detail"][0]["msg"]
        assert len(outside) == 30  # the row count of the file outside never shows
        assert "30" not in response.text


def test_a_table_only_the_agent_can_read_needs_candidates(db_url: str, tmp_path: Path) -> None:
    archs = _table(tmp_path / "agent-side")
    with TestClient(create_app(make_settings(db_url))) as client:  # no GPNAS_DATA_DIR
        assert _device(client, "replay", "table", {"path": "chip.csv", "column": "chip"}).status_code == 201
        body = {"space": SPACE, "device": "replay", "n": 3, "seed": 0}
        response = client.post("/v1/campaigns", json=body)
        assert response.status_code == 422, response.text
        assert "pass its archs as candidates" in response.json()["detail"][0]["msg"]
        response = client.post("/v1/campaigns", json={**body, "candidates": archs[:4]})
        assert response.status_code == 201, response.text
        picked = {j["arch"] for j in client.get("/v1/jobs", params={"device": "replay"}).json()["jobs"]}
        assert len(picked) == 3 and picked <= set(archs[:4])
        response = client.post("/v1/campaigns", json={**body, "candidates": ["not-an-arch"]})
        assert response.status_code == 422 and "not a subnet" in response.text


def test_campaign_sizes_are_bounded(client: TestClient) -> None:
    assert _device(client, "cpu", "torch-cpu", {}).status_code == 201
    response = client.post("/v1/campaigns", json={"space": "ufo-track2", "device": "cpu", "n": 10_000})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "n"]


def test_anonymous_readers_do_not_see_settings_or_environments(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    with make_sessionmaker(engine, write=True)() as session:
        _, token = repo.create_token(session, label="trust test")
        session.commit()
    engine.dispose()
    auth = {"Authorization": f"Bearer {token}"}
    arch = get_space(SPACE).format(get_space(SPACE).sample(1, seed=0)[0])
    measurement = {
        "id": "m1",
        "space": SPACE,
        "arch": arch,
        "device": "replay",
        "metric": "latency_ms",
        "value": 1.5,
        "environment": {"host": "lab-7.internal", "source": "tables/chip.csv"},
    }
    with TestClient(create_app(make_settings(db_url, auth=True))) as client:
        settings = {"path": "tables/chip.csv", "column": "chip"}
        assert _device(client, "replay", "table", settings, headers=auth).status_code == 201
        assert (
            client.post("/v1/measurements", json={"measurements": [measurement]}, headers=auth).status_code
            == 200
        )
        anonymous = client.get("/v1/devices").json()
        assert anonymous == [{"name": "replay", "profiler": "table", "settings": None}]
        assert client.get("/v1/devices/replay").json()["settings"] is None
        assert client.get("/v1/measurements").json()["measurements"][0]["environment"] is None
        assert client.get("/v1/devices/replay", headers=auth).json()["settings"] == settings
        shown = client.get("/v1/measurements", headers=auth).json()["measurements"][0]
        assert shown["environment"] == measurement["environment"]
        assert client.get("/v1/devices", headers={"Authorization": "Bearer gpnas_wrong"}).status_code == 401


def test_campaign_selection_does_not_hold_the_write_lock(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a campaign's strategy computes, an ingest must go through (on SQLite it waited for
    the single writer: a 1,800-subnet max-variance campaign held it for 38 s)."""
    import threading

    from service_helpers import measurements, register

    from predictors._sampling import RandomStrategy

    ingested, selecting = threading.Event(), threading.Event()
    seen: list[bool] = []
    original = RandomStrategy._select

    def slow_select(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        selecting.set()
        seen.append(ingested.wait(timeout=20))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RandomStrategy, "_select", slow_select)
    with TestClient(create_app(make_settings(db_url))) as client:
        register(client)
        body = {"space": "ufo-track2", "device": "dev1", "n": 3, "strategy": "random", "seed": 0}
        results: list[int] = []
        campaign = threading.Thread(
            target=lambda: results.append(client.post("/v1/campaigns", json=body).status_code)
        )
        campaign.start()
        assert selecting.wait(timeout=20)
        response = client.post("/v1/measurements", json={"measurements": measurements(2)})
        ingested.set()
        campaign.join(timeout=60)
        assert response.status_code == 200 and results == [201]
        assert seen == [True]  # the ingest finished while the selection was still running


@pytest.mark.parametrize(
    ("name", "content"),
    [("null.json", "null"), ("wide.csv", "arch,chip\n" + "x" * 200_000 + ",1\n"), ("bad.json", '{"a": ')],
)
def test_a_table_the_server_cannot_parse_is_a_422(
    db_url: str, tmp_path: Path, name: str, content: str
) -> None:
    (tmp_path / name).write_text(content)
    with TestClient(create_app(make_settings(db_url, data_dir=tmp_path))) as client:
        settings = {"path": name} if name.endswith(".json") else {"path": name, "column": "chip"}
        profiler = "table-score" if name.endswith(".json") else "table"
        assert _device(client, "replay", profiler, settings).status_code == 201
        body = {"space": SPACE, "device": "replay", "n": 1, "seed": 0}
        if profiler == "table-score":
            body = {"space": "ufo-track2", "device": "replay", "task": "sop", "n": 1, "seed": 0}
        response = client.post("/v1/campaigns", json=body)
        assert response.status_code == 422, response.text
        assert name in response.json()["detail"][0]["msg"]
        assert str(tmp_path) not in response.text  # the server's own paths stay its own
