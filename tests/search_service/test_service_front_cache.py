"""The query cache: newest version re-checked after its TTL, one refresher at a time."""

from __future__ import annotations

from fastapi.testclient import TestClient
from service_helpers import RIDGE, SPACE, make_settings, measurements, register

from search_service import create_app
from search_service import repositories as repo
from search_service.search import FrontCache


def test_stale_lookup_is_refreshed_by_one_caller_while_others_use_the_cache(db_url: str) -> None:
    app = create_app(make_settings(db_url, **RIDGE))
    with TestClient(app) as client:
        register(client)
        items = measurements(8)
        items += [{**m, "id": m["id"] + "s", "device": None, "task": "sop", "metric": "score"} for m in items]
        client.post("/v1/measurements", json={"measurements": items})
        assert client.post("/v1/refit", json={}).json()["fronts"]
    now = [0.0]
    cache = FrontCache(ttl_s=0.05, clock=lambda: now[0])
    key = (SPACE, "sop", "dev1")
    assert cache.peek(*key) is None  # nothing cached yet
    with app.state.read_sessions() as session:
        loaded = cache.get(repo.StoredFronts(session), *key)
    assert loaded is not None and loaded.version == 1
    assert cache.peek(*key) is loaded  # fresh: no database read
    now[0] += 0.06
    assert cache.peek(*key) is None  # stale: this caller refreshes...
    assert cache.peek(*key) is loaded  # ...and the others keep the cached front meanwhile
    with app.state.read_sessions() as session:
        assert cache.get(repo.StoredFronts(session), *key) is loaded
    now[0] += 0.06
    assert cache.peek(*key) is None  # the refresh finished: the next stale lookup refreshes again
