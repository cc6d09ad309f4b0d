"""OpenAPI operation ids are the route functions' names, so generated clients read like the API."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from service_helpers import make_settings

from search_service import create_app
from search_service.api.routes import routers
from search_service.client import GpnasClient

# (method, path) -> operation id: renaming a route function renames a generated client's method.
EXPECTED = {
    ("POST", "/v1/query"): "query",
    ("GET", "/v1/pareto"): "pareto",
    ("POST", "/v1/measurements"): "post_measurements",
    ("GET", "/v1/measurements"): "list_measurements",
    ("DELETE", "/v1/measurements/{measurement_id}"): "retract_measurement",
    ("POST", "/v1/jobs/lease"): "lease_jobs",
    ("POST", "/v1/jobs/{job_id}/heartbeat"): "heartbeat_job",
    ("POST", "/v1/jobs/{job_id}/result"): "post_job_result",
    ("POST", "/v1/jobs/{job_id}/fail"): "fail_job",
    ("GET", "/v1/jobs"): "list_jobs",
    ("GET", "/v1/jobs/{job_id}"): "get_job",
    ("GET", "/healthz"): "health",
    ("GET", "/v1/spaces"): "list_spaces",
    ("GET", "/v1/spaces/{space}"): "get_space",
    ("GET", "/v1/spaces/{space}/definition"): "get_space_definition",
    ("POST", "/v1/spaces"): "create_space",
    ("POST", "/v1/spaces/{space}/tasks"): "add_space_task",
    ("GET", "/v1/devices"): "list_devices",
    ("POST", "/v1/devices"): "create_device",
    ("GET", "/v1/devices/{name}"): "get_device",
    ("GET", "/v1/devices/{name}/levels"): "get_device_levels",
    ("GET", "/v1/campaigns"): "list_campaigns",
    ("POST", "/v1/campaigns"): "create_campaign",
    ("POST", "/v1/deployments/query"): "query_deployment",
    ("GET", "/v1/campaigns/{campaign_id}"): "get_campaign",
    ("POST", "/v1/refit"): "refit",
    ("GET", "/v1/tokens"): "list_tokens",
    ("POST", "/v1/tokens"): "create_token",
    ("DELETE", "/v1/tokens/{token_id}"): "revoke_token",
    ("POST", "/v1/artifacts"): "create_artifact",
    ("GET", "/v1/artifacts"): "list_artifacts",
    ("GET", "/v1/artifacts/{digest}"): "download_artifact",
    ("POST", "/v1/supernets"): "create_supernet",
    ("GET", "/v1/supernets"): "list_supernets",
}
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
METHOD_SUFFIX = re.compile(r"_(get|post|put|patch|delete|head|options)$")


@pytest.fixture(scope="module")
def app_and_spec(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[Any, dict]]:
    path = tmp_path_factory.mktemp("openapi") / "gpnas.db"
    shutil.copy(sqlite_template, path)
    app = create_app(make_settings(f"sqlite:///{path}"))
    with TestClient(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    yield app, response.json()
    app.state.engine.dispose()


def _operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }


def test_operation_ids_are_unique_snake_case_route_names(app_and_spec: tuple[Any, dict]) -> None:
    _, spec = app_and_spec
    operations = _operations(spec)
    ids = [operation["operationId"] for operation in operations.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for operation_id in ids:
        assert SNAKE_CASE.match(operation_id), operation_id
        assert operation_id.isidentifier(), operation_id
        assert "_v1_" not in operation_id and not operation_id.startswith("v1_"), operation_id
        assert not METHOD_SUFFIX.search(operation_id), operation_id
        assert "{" not in operation_id and "_id_" not in operation_id, operation_id
    assert {key: operation["operationId"] for key, operation in operations.items()} == EXPECTED
    # Each is the name of the function that serves the route.
    names = {
        (method, route.path): route.endpoint.__name__
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema and router.include_in_schema
        for method in route.methods
    }
    assert names == EXPECTED


def test_the_python_client_has_a_method_per_operation(app_and_spec: tuple[Any, dict]) -> None:
    _, spec = app_and_spec
    ids = {operation["operationId"] for operation in _operations(spec).values()}
    missing = sorted(i for i in ids if not callable(getattr(GpnasClient, i, None)))
    assert missing == []


def test_a_generated_client_names_its_modules_after_the_routes(
    app_and_spec: tuple[Any, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """openapi-python-client (not a declared test dependency: it caps typer below the version the
    CLI uses) generates ``api/<tag>/<operation id>.py`` per route; the generated client then
    talks to the app."""
    generator = pytest.importorskip("openapi_python_client")
    from openapi_python_client.config import Config, ConfigFile, MetaType

    app, spec = app_and_spec
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(spec))
    package = tmp_path / "gpnas_generated"
    config = Config.from_sources(
        ConfigFile(post_hooks=[]),  # no ruff run over the generated code
        MetaType.NONE,
        source,
        "utf-8",
        overwrite=True,
        output_path=package,
    )
    errors = generator.generate(config=config)
    assert [e for e in errors if e.level.value == "error"] == [], [(e.header, e.detail) for e in errors]
    expected = {
        f"{operation['tags'][0]}/{operation['operationId']}" for operation in _operations(spec).values()
    }
    generated = {
        f"{p.parent.name}/{p.stem}" for p in (package / "api").glob("*/*.py") if p.stem != "__init__"
    }
    assert generated == expected
    assert {"search/query", "search/pareto", "jobs/lease_jobs", "jobs/post_job_result"} <= generated

    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        client_module = importlib.import_module("gpnas_generated.client")
        health = importlib.import_module("gpnas_generated.api.health.health")
        list_spaces = importlib.import_module("gpnas_generated.api.spaces.list_spaces")
        with TestClient(app) as http:
            client = client_module.Client(base_url="http://testserver").set_httpx_client(http)
            assert health.sync(client=client).status == "ok"
            assert "ufo-track2" in {space.name for space in list_spaces.sync(client=client)}
    finally:
        for name in [m for m in sys.modules if m == "gpnas_generated" or m.startswith("gpnas_generated.")]:
            del sys.modules[name]
