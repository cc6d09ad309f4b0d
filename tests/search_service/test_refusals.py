"""What cannot work is refused when it is sent, naming the field (issue 25.6).

A space definition under which a task has no legal subnet, a space name that differs from a
preset's or a registered space's only in case, and a number sent as a string or a boolean: each
was accepted before, and failed later (a query's 409) or meant something the client did not
say. On SQLite and PostgreSQL, through the API and ``gpnas spaces add``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from service_helpers import make_settings
from typer.testing import CliRunner

import supernet
from search_service import create_app, schemas
from search_service.cli import app as cli_app
from supernet import SpaceDefinition, TaskDefinition

NAME = "tiny-vit"
# One task fixed to the shared FFN in its second layer, in a space whose layers offer only the
# task's own expert: the task has no legal subnet at all.
NO_SUBNET: dict[str, Any] = {
    "name": NAME,
    "tasks": [{"name": "face", "head": 8}, {"name": "person", "ffn_paths": ["task", "shared", "task"]}],
    "depths": [2, 3],
    "choices": {"ffn_path": ["task"], "mlp_ratio": [4.0, 2.0], "num_heads": [4, 2]},
    "per_task": ["ffn"],
    "geometry": {"embed_dim": 64, "patch_size": 16, "image_size": 32, "head_dim": 16},
}
runner = CliRunner()


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(db_url))) as test_client:
        yield test_client


def _usable() -> dict[str, Any]:
    """:data:`NO_SUBNET` with the shared FFN offered too: a valid definition."""
    return {**NO_SUBNET, "choices": {**NO_SUBNET["choices"], "ffn_path": ["task", "shared"]}}


# ---------------------------------------------------------------------- no legal subnet
def test_a_task_without_a_legal_subnet_is_refused_by_the_api_and_the_cli(
    client: TestClient, db_url: str, tmp_path: Path
) -> None:
    answer = client.post("/v1/spaces", json=NO_SUBNET)
    assert answer.status_code == 422, answer.text
    message = answer.json()["detail"][0]["msg"]
    assert "tasks[1].ffn_paths" in message and "'shared'" in message and "ffn_path" in message, message
    assert client.get(f"/v1/spaces/{NAME}").status_code == 404  # nothing was stored

    path = tmp_path / "space.yaml"
    path.write_text(json.dumps(NO_SUBNET))
    refused = runner.invoke(cli_app, ["spaces", "add", str(path), "--database-url", db_url])
    assert refused.exit_code != 0 and "tasks[1].ffn_paths" in str(refused.exception), refused.output

    # Offering the shared FFN too makes every task's paths legal.
    assert client.post("/v1/spaces", json=_usable()).status_code == 201
    # A task added later is held to the same rule.
    only_task = {**NO_SUBNET, "name": "only-task", "tasks": NO_SUBNET["tasks"][:1]}
    assert client.post("/v1/spaces", json=only_task).status_code == 201
    added = client.post(
        "/v1/spaces/only-task/tasks", json={"name": "person", "ffn_paths": ["shared", "task", "task"]}
    )
    assert added.status_code == 422 and "ffn_paths" in added.text, added.text


def test_every_task_of_an_accepted_definition_has_subnets() -> None:
    space = supernet.space_from_definition(_usable())
    assert isinstance(space, supernet.UFOSpace)
    for task in space.tasks:
        codes = space.restrict_to_task(space.choice_matrix(space.sample(5, seed=0)), task)
        assert len(space.from_choice_matrix(codes, (codes[:, :, 0] >= 0).sum(1))) == 5
    with pytest.raises(supernet.DefinitionError, match=r"tasks\[1\]\.ffn_paths"):
        SpaceDefinition.load(NO_SUBNET).with_task(TaskDefinition(name="x"))


# ---------------------------------------------------------------------- names ignoring case
def test_names_that_differ_only_in_case_are_refused(client: TestClient, db_url: str, tmp_path: Path) -> None:
    preset = supernet.get_space("ufo-track2").to_definition().model_dump(mode="json")
    shouted = client.post("/v1/spaces", json={**preset, "name": "UFO-TRACK2"})
    assert shouted.status_code == 409, shouted.text
    assert shouted.json()["detail"][0]["loc"] == ["body", "name"] and "'ufo-track2'" in shouted.text

    assert client.post("/v1/spaces", json=_usable()).status_code == 201
    again = client.post("/v1/spaces", json={**_usable(), "name": "Tiny-VIT"})
    assert again.status_code == 409, again.text
    assert again.json()["detail"][0]["loc"] == ["body", "name"] and f"{NAME!r}" in again.text
    assert client.get("/v1/spaces/Tiny-VIT").status_code == 404  # nothing was stored

    path = tmp_path / "space.json"
    path.write_text(json.dumps({**_usable(), "name": "TINY-vit"}))
    refused = runner.invoke(cli_app, ["spaces", "add", str(path), "--database-url", db_url])
    assert isinstance(refused.exception, ValueError) and f"{NAME!r}" in str(refused.exception), refused.output


# ---------------------------------------------------------------------- numbers are numbers
# A valid body of each model that a client sends, every numeric field given (checked below), so
# that a refusal can only be the field's.
ARCH = supernet.get_space("ufo2-multipath").format(supernet.get_space("ufo2-multipath").sample(1, seed=0)[0])
BODIES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        schemas.MeasurementCreate,
        {
            "id": "m1",
            "space": "ufo2-multipath",
            "arch": ARCH,
            "device": "dev1",
            "metric": "latency_ms",
            "value": 12.5,
            "std": 0.5,
            "repeats": 10,
            "drift": 0.1,
            "reference_arch": ARCH,
            "reference_ms": 11,
        },
    ),
    (
        schemas.MeasurementCreate,
        {"id": "m2", "space": "ufo2-multipath", "arch": ARCH, "task": "face", "metric": "score"}
        | {"value": 0.5, "supernet_version": 1},
    ),
    (
        schemas.ResultRequest,
        {
            "lease_token": "t",
            "value": 12.5,
            "std": 0.5,
            "repeats": 10,
            "drift": 0.1,
            "reference_arch": ARCH,
            "reference_ms": 11.0,
        },
    ),
    (
        schemas.QueryRequest,
        {
            "space": "ufo2-multipath",
            "task": "face",
            "device": "dev1",
            "latency_budget_ms": 12,
            "confidence": 0.9,
            "max_params": 10**8,
        },
    ),
    (schemas.CampaignCreate, {"space": "ufo2-multipath", "device": "dev1", "n": 5, "seed": 3}),
    (schemas.LeaseRequest, {"device": "dev1", "lease_seconds": 60, "count": 2}),
    (schemas.HeartbeatRequest, {"lease_token": "t", "lease_seconds": 60}),
    (schemas.TokenCreate, {"label": "x", "expires_in_s": 3600}),
    (
        schemas.DeploymentQueryRequest,
        {
            "space": "ufo2-multipath",
            "device": "dev1",
            "tasks": [{"task": "face", "weight": 2, "latency_budget_ms": 12.5}],
            "max_params": 10**8,
            "confidence": 0.9,
        },
    ),
    (
        schemas.DeploymentQueryRequest,
        {"space": "ufo2-multipath", "device": "dev1", "tasks": [{"task": "face"}], "max_weight_mb": 80.5},
    ),
    (
        SpaceDefinition,
        {
            **_usable(),
            "tasks": [{"name": "face", "head": 8}],
            "geometry": {**NO_SUBNET["geometry"], "in_chans": 3, "norm_eps": 1e-6},
        },
    ),
    (TaskDefinition, {"name": "face", "head": 8}),
]


def _numeric_paths(schema: dict[str, Any], defs: dict[str, Any], prefix: tuple = ()) -> Iterator[tuple]:
    """Paths of the fields that take only numbers (``0`` for a list's items)."""
    options = [
        defs[s["$ref"].rsplit("/", 1)[1]] if "$ref" in s else s
        for s in schema.get("anyOf", [schema])
        if s.get("type") != "null"
    ]
    if options and all(s.get("type") in ("number", "integer") for s in options):
        yield prefix
        return
    for option in options:
        for name, sub in option.get("properties", {}).items():
            yield from _numeric_paths(sub, defs, (*prefix, name))
        if option.get("type") == "array" and "items" in option:
            yield from _numeric_paths(option["items"], defs, (*prefix, 0))


def _get(body: Any, path: tuple) -> Any:
    for key in path:
        body = body[key]
    return body


def _replaced(body: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    out = list(body) if isinstance(body, list) else dict(body)
    out[path[0]] = _replaced(body[path[0]], path[1:], value)
    return out


def _cases() -> Iterator[Any]:
    for model, body in BODIES:
        schema = model.model_json_schema()
        for path in _numeric_paths(schema, schema.get("$defs", {})):
            try:
                value = _get(body, path)
            except KeyError:
                continue  # another body of the model gives it (max_params / max_weight_mb)
            ident = f"{model.__name__}.{'.'.join(map(str, path))}"
            yield pytest.param(model, body, path, json.dumps(str(value)), id=f"{ident}=string")
            yield pytest.param(model, body, path, "true", id=f"{ident}=true")


def test_the_bodies_give_every_numeric_field() -> None:
    """A numeric field added to a model must be added to its body here (so it is tested)."""
    for model in {model for model, _ in BODIES}:
        schema = model.model_json_schema()
        bodies = [body for m, body in BODIES if m is model]
        for path in _numeric_paths(schema, schema.get("$defs", {})):
            found = False
            for body in bodies:
                try:
                    _get(body, path)
                    found = True
                except KeyError:
                    pass
            assert found, f"{model.__name__}: no body gives {path}"


@pytest.mark.parametrize(("model", "body", "path", "literal"), list(_cases()))
def test_numbers_sent_as_strings_or_booleans_are_refused(
    model: type[BaseModel], body: dict[str, Any], path: tuple, literal: str
) -> None:
    model.model_validate_json(json.dumps(body))  # the body itself is valid
    marker = "__number__"
    text = json.dumps(_replaced(body, path, marker)).replace(json.dumps(marker), literal)
    with pytest.raises(ValidationError) as raised:
        model.model_validate_json(text)
    # The field is named (other fields' checks may add errors that follow from it).
    assert path in [tuple(error["loc"][: len(path)]) for error in raised.value.errors()]


def test_yaml_exponents_are_numbers_and_quoted_numbers_are_not() -> None:
    """PyYAML reads ``1e-6`` as a string (YAML 1.1); a definition reads it as the number it is."""
    text = SpaceDefinition.load(_usable()).to_yaml()
    assert "norm_eps" not in text  # the default is left out
    written = text.replace("in_chans: 3", "in_chans: 3, norm_eps: 1e-6")
    geometry = SpaceDefinition.from_text(written).geometry
    assert geometry is not None and geometry.norm_eps == 1e-6
    with pytest.raises(supernet.DefinitionError, match=r"geometry\.norm_eps"):
        SpaceDefinition.from_text(text.replace("in_chans: 3", "in_chans: 3, norm_eps: '1e-6'"))


def test_the_api_refuses_a_quoted_budget_and_the_json_client_sends_numbers(client: TestClient) -> None:
    body = {"space": "ufo2-multipath", "task": "face", "device": "dev1", "latency_budget_ms": 12}
    # With a real number the request is valid (nothing is measured yet: not a 422).
    assert client.post("/v1/query", json=body).status_code != 422
    for bad in ("12.5", True):
        answer = client.post("/v1/query", json={**body, "latency_budget_ms": bad})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body", "latency_budget_ms"]
    spaced = client.post(
        "/v1/spaces", json={**_usable(), "geometry": {**NO_SUBNET["geometry"], "norm_eps": "1e-6"}}
    )
    assert spaced.status_code == 422, spaced.text
    assert spaced.json()["detail"][0]["loc"][:3] == ["body", "geometry", "norm_eps"]
    # What the typed client sends: the model's JSON, numbers as numbers.
    sent = json.loads(schemas.QueryRequest.model_validate(body).model_dump_json())
    assert sent["latency_budget_ms"] == 12.0


# ---------------------------------------------------------------------- codes too wide to fit
def test_a_space_wider_than_max_encoding_width_is_refused_naming_the_limit(
    client: TestClient, db_url: str, tmp_path: Path
) -> None:
    """Issue 25.2: 99 layers of heads and MLP ratios with 35 values each (a 7,128-column code)
    were accepted and made one fit step take over 600 s."""
    wide = {
        "name": "wide-vit",
        "tasks": [{"name": "face"}],
        "depths": list(range(1, 100)),
        "choices": {"mlp_ratio": [1.0 + 0.1 * i for i in range(35)], "num_heads": list(range(1, 36))},
        "geometry": {"embed_dim": 140, "patch_size": 16, "image_size": 32, "head_dim": 4},
    }
    answer = client.post("/v1/spaces", json=wide)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"][0]
    assert detail["loc"] == ["body", "choices"] and "max_encoding_width" in detail["msg"], detail
    assert "7,128" in detail["msg"] and "2,048" in detail["msg"]
    assert client.get("/v1/spaces/wide-vit").status_code == 404
    path = tmp_path / "wide.json"
    path.write_text(json.dumps(wide))
    printed = runner.invoke(cli_app, ["spaces", "add", str(path), "--database-url", db_url])
    assert printed.exit_code != 0 and "max_encoding_width" in str(printed.exception), printed.output
