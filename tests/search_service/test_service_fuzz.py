"""Fuzz and property tests of the API's input handling, beyond schemathesis' defaults.

On both backends (SQLite and PostgreSQL), with an admin token, without a token (auth on) and with
auth off:

* no input ever gets a 5xx: lone surrogates and NUL characters in every string field, JSON key
  and value, path and query parameter (and in the validation errors that echo them), deeply
  nested JSON, extreme numbers, extreme datetimes and large bodies;
* every value the API accepts (2xx) reads back unchanged, i.e. as the same JSON after a JSON round
  trip (key order aside), through every GET route that shows it, and those GETs answer 200.

How inputs are built, sent and read back lives in fuzz_helpers.py.

Sweeps (plain tests over fixed lists of inputs) collect every failing input of a test and report
them together, grouped by the server's exception; the Hypothesis tests report their shrunk
falsifying example, as ``note()`` lines and ``Draw`` lines (Hypothesis 6.170 prints the arguments
of its "Failing test case" empty). One app per backend and auth mode serves the whole module; the
tables are emptied before each test.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fuzz_helpers import (
    ARCH,
    CHARACTER,
    DATETIME_VALUES,
    DEVICE,
    ENV_ANY,
    ENV_NUMBERS,
    ENV_SHAPES,
    ENV_TEXT,
    INT32,
    JSON_ANY,
    JSON_LEAVES,
    MODES,
    NASTY_STRINGS,
    PROFILER,
    SPACE,
    TASK,
    TASKS,
    TEXTS,
    Findings,
    Raw,
    Service,
    body_ops,
    canon,
    datetimes,
    encode,
    exception_summary,
    finite_floats,
    fuzz_settings,
    get_json,
    get_operations,
    json_paths,
    json_round_trip,
    measurement_differences,
    measurement_item,
    measurement_items,
    names,
    nested_text,
    nonneg_floats,
    numeric_paths,
    positive_floats,
    quote,
    read_back_measurements,
    replaced,
    request,
    safe_ints,
    same_instant,
    same_json,
    with_unique_ids,
)
from hypothesis import given, note
from hypothesis import strategies as st
from service_helpers import RIDGE, make_settings
from sqlalchemy import text

from profilers import get_profiler_class
from search_service import create_app
from search_service.models import Base
from supernet import get_space, list_spaces

MB = 2**20
SWEEP_STRINGS = {"admin": NASTY_STRINGS[:4], "anonymous": ["\ud800", "\x00"], "auth-off": ["\ud800", "\x00"]}

# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def _apps(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz") / "gpnas.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
    auth_app = create_app(make_settings(url, auth=True, **RIDGE))
    open_app = create_app(make_settings(url, auth=False, **RIDGE))
    with TestClient(auth_app) as auth_client, TestClient(open_app) as open_client:
        yield Service(url, request.param, auth_client, open_client)


def _empty_tables(service: Service) -> None:
    engine = service.auth_client.app.state.engine  # type: ignore[attr-defined]
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))


def _admin_token(service: Service) -> str:
    from search_service import repositories as repo

    with service.auth_client.app.state.write_sessions() as session:  # type: ignore[attr-defined]
        made = repo.create_token(session)
        session.commit()
    # create_token returned the secret, and now returns (row, secret): take the string either way.
    return made if isinstance(made, str) else next(item for item in made if isinstance(item, str))


@pytest.fixture
def service(_apps: Service) -> Service:
    """Empty tables, an admin token, and device ``dev1`` (torch-cpu) registered."""
    _empty_tables(_apps)
    _apps.admin = {"Authorization": f"Bearer {_admin_token(_apps)}"}
    _apps.job_id = _apps.campaign_id = 0
    response = request(
        _apps.auth_client,
        "POST",
        "/v1/devices",
        {"name": DEVICE, "profiler": PROFILER, "settings": {}},
        headers=_apps.admin,
    )
    assert response.status_code == 201, response.text
    return _apps


def _campaign(service: Service, n: int) -> tuple[int, list[dict[str, Any]]]:
    body = {"space": SPACE, "device": DEVICE, "n": n, "strategy": "random", "seed": 1}
    response = request(service.auth_client, "POST", "/v1/campaigns", body, headers=service.admin)
    assert response.status_code == 201, response.text
    campaign_id = response.json()["id"]
    page = get_json(service.auth_client, f"/v1/jobs?campaign={campaign_id}&limit=1000", service.admin)
    return campaign_id, page["jobs"]


@pytest.fixture
def with_job(service: Service) -> Service:
    """``service`` with a campaign of two queued jobs of ``dev1``."""
    service.campaign_id, jobs = _campaign(service, 2)
    service.job_id = jobs[0]["id"]
    return service


# ============================================================================ 1. no 5xx: sweeps


@pytest.mark.parametrize("mode", MODES)
def test_surrogates_and_nul_in_every_body_field(with_job: Service, mode: str) -> None:
    """Each string/number/null/bool value, and a new key in each object (settings, environment,
    the body itself: echoed by 'extra fields not permitted'), replaced by surrogates and NULs."""
    service, findings = with_job, Findings()
    client, headers = service.client(mode), service.headers(mode)
    for op in body_ops(service):
        for path, is_object in json_paths(op.body):
            if path in op.frozen:
                continue
            for nasty in SWEEP_STRINGS[mode]:
                label = f"[{mode}] {'.'.join(map(str, path)) or '<body>'}={nasty!r}"
                if path and not is_object:
                    findings.send(
                        client,
                        op.method,
                        op.path,
                        replaced(op.body, path, nasty),
                        headers=headers,
                        label=label,
                    )
                if is_object:
                    key_label = f"[{mode}] key {nasty!r} in {'.'.join(map(str, path)) or '<body>'}"
                    body = replaced(op.body, (*path, nasty), 1)
                    findings.send(client, op.method, op.path, body, headers=headers, label=key_label)
            if path == () and mode == "admin":
                for nasty in SWEEP_STRINGS[mode]:
                    findings.send(client, op.method, op.path, nasty, headers=headers, label=f"body={nasty!r}")
    findings.check()


@pytest.mark.parametrize("mode", MODES)
def test_lone_surrogates_in_validation_error_echoes(service: Service, mode: str) -> None:
    """Invalid inputs holding lone surrogates, which a 422 (or 401) echoes back in its detail."""
    findings = Findings()
    client, headers = service.client(mode), service.headers(mode)
    cases: list[tuple[str, Any]] = [
        ("/v1/query", {"space": "\ud800"}),
        ("/v1/query", {"space": "\udfff"}),
        ("/v1/query", {"space": SPACE, "task": "\ud800", "device": "\udfff", "latency_budget_ms": "\ud800"}),
        ("/v1/query", {"\ud800": "\udfff"}),
        ("/v1/query", ["\ud800"]),
        ("/v1/query", "\ud800"),
        ("/v1/devices", {"name": "\ud800"}),
        ("/v1/devices", {"name": "ok", "profiler": "\udfff", "settings": {"\ud800": "\udfff"}}),
        ("/v1/devices", {"name": "ok", "profiler": PROFILER, "settings": {"task": ["\ud800"], "\udfff": {}}}),
        ("/v1/devices", {"name": "ok", "profiler": PROFILER, "settings": {"batch_size": "\ud800"}}),
        ("/v1/measurements", {"measurements": [{"id": "\ud800"}]}),
        ("/v1/measurements", {"measurements": [{"\ud800": "\udfff"}]}),
        ("/v1/measurements", {"\udfff": []}),
        ("/v1/measurements", {"measurements": [measurement_item(arch="\ud800")]}),
        ("/v1/measurements", {"measurements": [measurement_item(device="\ud800x")]}),
        ("/v1/measurements", {"measurements": [measurement_item(measured_at="\ud800")]}),
        ("/v1/measurements", {"measurements": [measurement_item(environment="\ud800")]}),
        ("/v1/measurements", {"measurements": [measurement_item(environment={"\x00\ud800": "\ud800"})]}),
        ("/v1/campaigns", {"space": "\ud800", "device": "\udfff", "n": "\ud800"}),
        ("/v1/campaigns", {"space": SPACE, "device": DEVICE, "n": 1, "candidates": ["\ud800"]}),
        ("/v1/jobs/lease", {"device": "\ud800"}),
        ("/v1/jobs/1/result", {"lease_token": "\ud800", "value": "\udfff", "environment": {"\ud800": 1}}),
        ("/v1/jobs/1/fail", {"lease_token": "t", "error": "\ud800"}),
        ("/v1/jobs/1/heartbeat", {"lease_token": "\ud800"}),
        ("/v1/refit", {"space": "\ud800"}),
        ("/v1/tokens", {"label": "\ud800", "device": "\udfff"}),
    ]
    for path, body in cases:
        findings.send(client, "POST", path, body, headers=headers, label=f"[{mode}]")
    findings.check()


NUL_URLS = [
    "/v1/devices/a%00b",
    "/v1/devices/%00",
    "/v1/devices/%ED%A0%80",
    "/v1/devices/%ED%BF%BF",
    "/v1/devices/%FF",
    "/v1/devices/%C0%80",
    "/v1/measurements?device=%00",
    "/v1/measurements?device=%ED%A0%80",
    "/v1/measurements?space=%00",
    "/v1/measurements?task=%00",
    "/v1/measurements?arch=%00",
    "/v1/measurements?arch=a%00b&space=%ED%A0%80&task=%FF",
    "/v1/measurements?metric=%00",
    "/v1/measurements?limit=%00",
    "/v1/measurements?offset=99999999999999999999999",
    "/v1/jobs?device=%00",
    "/v1/jobs?device=%ED%A0%80",
    "/v1/jobs?status=%00",
    "/v1/jobs?campaign=%00",
    "/v1/jobs/%00",
    "/v1/jobs/99999999999999999999",
    "/v1/campaigns/%00",
    "/v1/campaigns/1e308",
    f"/v1/pareto?space={SPACE}&task=%00&device=x",
    f"/v1/pareto?space={SPACE}&task={TASK}&device=%00",
    f"/v1/pareto?space={SPACE}&task={TASK}&device=%ED%A0%80",
    "/v1/pareto?space=%00&task=%00&device=%00",
    "/v1/pareto?space=%ED%A0%80&task=a&device=b",
    "/v1/spaces/%00",
    "/v1/spaces/%ED%A0%80",
    "/web/%00",
    "/web/%ED%A0%80",
    "/v1/tokens?x=%00",
    "/%00",
    "/v1/%00",
    "/v1/devices?%00=%00",
]


@pytest.mark.parametrize("mode", MODES)
def test_nul_and_surrogates_in_path_and_query_parameters(with_job: Service, mode: str) -> None:
    findings = Findings()
    client, headers = with_job.client(mode), with_job.headers(mode)
    urls = [*NUL_URLS, f"/v1/jobs/{with_job.job_id}?x=%00"]
    for url in urls:
        findings.send(client, "GET", url, headers=headers, label=f"[{mode}]")
    for url in ("/v1/tokens/%00", "/v1/tokens/%ED%A0%80", "/v1/tokens/99999999999999999999"):
        findings.send(client, "DELETE", url, headers=headers, label=f"[{mode}]")
    findings.send(client, "POST", "/v1/jobs/%00/result", {"lease_token": "t", "value": 1}, headers=headers)
    findings.send(client, "POST", "/v1/jobs/%ED%A0%80/fail", {"lease_token": "t"}, headers=headers)
    findings.check()


NESTING_DEPTHS = [16, 17, 20, 100, 300, 1000, 5000]
NESTING_KINDS = ["list", "dict", "mixed"]


def test_deeply_nested_json(with_job: Service) -> None:
    """Nested environment, settings, result environment, field values and whole bodies (16 to
    5000 levels); an accepted measurement must read back the same."""
    service, findings = with_job, Findings()
    client, headers = service.auth_client, service.admin
    accepted: list[tuple[str, dict[str, Any], str]] = []
    for depth in NESTING_DEPTHS:
        for kind in NESTING_KINDS:
            deep = nested_text(depth, kind)
            label = f"depth={depth} kind={kind}"
            item = measurement_item(environment={"x": "@@"})
            body = encode({"measurements": [item]}).replace(b'"@@"', deep.encode())
            response = findings.send(
                client,
                "POST",
                "/v1/measurements",
                content=body,
                headers=headers,
                label=f"{label} environment",
            )
            if response is not None and response.status_code < 300:
                accepted.append((label, item, deep))
            bodies = {
                "device settings": encode(
                    {"name": f"deep{depth}{kind}", "profiler": PROFILER, "settings": {"x": "@@"}}
                ),
                "device settings value": encode(
                    {"name": f"deep{depth}{kind}v", "profiler": PROFILER, "settings": {"task": "@@"}}
                ),
            }
            for what, raw in bodies.items():
                findings.send(
                    client,
                    "POST",
                    "/v1/devices",
                    content=raw.replace(b'"@@"', deep.encode()),
                    headers=headers,
                    label=f"{label} {what}",
                )
            result = encode({"lease_token": "tok", "value": 1.0, "environment": {"x": "@@"}})
            findings.send(
                client,
                "POST",
                f"/v1/jobs/{service.job_id}/result",
                content=result.replace(b'"@@"', deep.encode()),
                headers=headers,
                label=f"{label} result environment",
            )
            query = encode({"space": "@@", "task": TASK, "device": DEVICE, "latency_budget_ms": 1.0})
            findings.send(
                client,
                "POST",
                "/v1/query",
                content=query.replace(b'"@@"', deep.encode()),
                label=f"{label} query space",
            )
            whole = nested_text(depth, kind, leaf=encode({"space": SPACE}).decode())
            for path in ("/v1/measurements", "/v1/devices", "/v1/query", "/v1/campaigns"):
                findings.send(
                    client, "POST", path, content=whole.encode(), headers=headers, label=f"{label} body"
                )
    rows = findings.get_json(client, "/v1/measurements?limit=1000", headers, "nesting read-back")
    devices = findings.get_json(client, "/v1/devices", headers, "nesting read-back")
    if rows is not None and devices is not None:
        stored = {row["client_id"]: row for row in rows["measurements"]}
        for label, item, deep in accepted:
            try:
                want = {"x": json.loads(deep)}
            except RecursionError:
                findings.add("accepted a body too deep for Python's json to read back", label)
                continue
            got = stored.get(item["id"], {}).get("environment")
            if got is None or not same_json(got, want):
                findings.add("nested environment read back changed or missing", f"{label}: {str(got)[:120]}")
    findings.check()


NUMBER_LITERALS = [
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "5e-324",
    "-5e-324",
    "2.2250738585072014e-308",
    str(2**53),
    str(2**53 + 1),
    str(2**63),
    str(2**64),
    str(-(2**63) - 1),
    "-0.0",
    "-0",
    "0",
    "1" + "0" * 5000,
    "-" + "9" * 5000,
    "0." + "0" * 5000 + "1",
    "1e400",
    "-1e400",
    "1E-400",
    "1e99999999999999999999",
    "123456789012345678901234567890.5",
    "1.0000000000000000000000001",
]


SWEEP_NUMBERS = [
    n for n in NUMBER_LITERALS if n not in ("-0", "0", str(2**53), "1.0000000000000000000000001")
]
SWEEP_NUMBERS = [
    n for n in SWEEP_NUMBERS if n not in ("-5e-324", "2.2250738585072014e-308", str(-(2**63) - 1))
]


def test_huge_and_tiny_numbers_in_every_numeric_field(with_job: Service) -> None:
    """Raw number literals in each numeric field, in settings and in environment values."""
    service, findings = with_job, Findings()
    client, headers = service.auth_client, service.admin
    for op in body_ops(service):
        # Numbers nested in the templates' environments: covered by ("environment", "n") below.
        paths = [p for p in numeric_paths(op.body) if "environment" not in p]
        if op.template == "/v1/devices":
            paths += [("settings", "batch_size"), ("settings", "target_rse"), ("settings", "seed")]
        if op.template == "/v1/measurements":
            paths += [("measurements", 0, "environment", "n")]
        if op.template == "/v1/jobs/{job_id}/result":
            paths += [("environment", "n")]
        for path in paths:
            if path in op.frozen:
                continue
            for literal in SWEEP_NUMBERS:
                body = replaced(op.body, path, Raw(literal))
                if op.template == "/v1/devices":
                    body["name"] = "num" + uuid.uuid4().hex[:10]
                if op.template == "/v1/measurements":
                    body["measurements"][0]["id"] = "num" + uuid.uuid4().hex[:10]
                label = f"{'.'.join(map(str, path))}={Raw(literal)!r}"
                findings.send(client, op.method, op.path, body, headers=headers, label=label)
    findings.check()


def test_number_literals_read_back_exactly(service: Service) -> None:
    """An accepted extreme number reads back as the very same JSON: in an environment the same
    text after a JSON round trip (a float stays a float: 1e308 is not a 309-digit integer); in
    value, std, drift and repeats the same number with the same sign. The one documented
    normalisation: -0.0 is accepted as 0.0 (SQLite and JSONB keep no negative zero). The
    Hypothesis round trips compare numbers by value only; 5000-digit integers compare as text."""
    findings = Findings()
    client, headers = service.auth_client, service.admin
    accepted: dict[str, tuple[str, str]] = {}
    for literal in NUMBER_LITERALS:
        for key in ("environment", "value", "std", "drift", "repeats"):
            item = measurement_item(metric="score", device=None, task=TASK)
            item[key] = {"n": Raw(literal)} if key == "environment" else Raw(literal)
            response = findings.send(
                client,
                "POST",
                "/v1/measurements",
                {"measurements": [item]},
                headers=headers,
                label=f"{key}={Raw(literal)!r}",
            )
            if response is not None and response.status_code < 300:
                accepted[item["id"]] = (key, literal)
    page = findings.get_json(client, "/v1/measurements?limit=1000", headers, "numbers read-back")
    if page is not None:
        rows = {row["client_id"]: row for row in page["measurements"]}
        for client_id, (key, literal) in accepted.items():
            got = rows.get(client_id, {}).get(key)
            got = got.get("n") if key == "environment" and isinstance(got, dict) else got
            try:
                want = json.loads(literal)
            except ValueError:  # beyond Python's int digit limit: compare the texts
                want = None
            if isinstance(want, float):
                want += 0.0  # -0.0 is stored as 0.0
            if want is None:
                same = str(got) == literal
            elif key == "environment":
                same = canon(got) == canon(want)
            else:
                numbers = isinstance(got, int | float) and not isinstance(got, bool)
                same = numbers and same_json(got, want) and math.copysign(1, got) == math.copysign(1, want)
            if not same:
                findings.add(
                    f"accepted number read back changed ({key})",
                    f"{key}={Raw(literal)!r}: read back {str(got)[:60]}",
                )
    findings.check()


def test_extreme_datetimes(service: Service) -> None:
    """measured_at at year 1 and 9999 with +14:00 / -12:00, year 0, leap seconds, huge years,
    numbers; an accepted one reads back as the same instant."""
    findings = Findings()
    client, headers = service.auth_client, service.admin
    accepted = {}
    for mode in MODES:
        for value in DATETIME_VALUES:
            item = measurement_item(measured_at=value)
            response = findings.send(
                service.client(mode),
                "POST",
                "/v1/measurements",
                {"measurements": [item]},
                headers=service.headers(mode),
                label=f"[{mode}] measured_at={value!r}",
            )
            if response is not None and response.status_code < 300:
                accepted[item["id"]] = value
    page = findings.get_json(client, "/v1/measurements?limit=1000", headers, "datetimes read-back")
    if page is not None:
        rows = {row["client_id"]: row for row in page["measurements"]}
        for client_id, value in accepted.items():
            got = rows.get(client_id, {}).get("measured_at")
            if not same_instant(value, got):
                findings.add(
                    "accepted measured_at read back as another instant", f"{value!r}: read back {got!r}"
                )
    findings.check()


RAW_STRINGS = {
    "raw NUL byte": b'"a\x00b"',
    "raw CESU-8 surrogate": b'"\xed\xa0\x80"',
    "invalid UTF-8": b'"\xff\xfe"',
    "overlong NUL": b'"\xc0\x80"',
    "raw control characters": b'"\x01\x1f\n"',
}


def _whole_bodies(valid: bytes) -> dict[str, bytes]:
    return {
        "UTF-16": valid.decode().encode("utf-16"),
        "UTF-32": valid.decode().encode("utf-32"),
        "UTF-8 BOM": b"\xef\xbb\xbf" + valid,
        "NUL before": b"\x00" + valid,
        "NUL after": valid + b"\x00",
        "NUL between tokens": valid.replace(b":", b"\x00:", 1),
        "only NULs": b"\x00" * 64,
        "invalid UTF-8": b"\xff" + valid,
        "empty": b"",
        "truncated": valid[: len(valid) // 2],
    }


@pytest.mark.parametrize("mode", ["admin", "anonymous"])
def test_raw_bytes_and_encodings_in_bodies(with_job: Service, mode: str) -> None:
    """Raw (unescaped) NUL bytes, invalid and non-UTF-8 byte sequences in each string field, and
    whole bodies in other encodings, with NULs around them, empty or cut short; also other
    content types."""
    service, findings = with_job, Findings()
    client, headers = service.client(mode), service.headers(mode)
    for op in body_ops(service):
        valid = encode(op.body)
        for path, _ in json_paths(op.body):
            value = op.body
            for step in path:
                value = value[step]
            if not isinstance(value, str) or path in op.frozen:
                continue
            template = encode(replaced(op.body, path, "\x02@@\x02"))
            for what, raw in RAW_STRINGS.items():
                content = template.replace(b'"\\u0002@@\\u0002"', raw)
                label = f"[{mode}] {'.'.join(map(str, path))}: {what}"
                findings.send(client, op.method, op.path, content=content, headers=headers, label=label)
        for what, content in _whole_bodies(valid).items():
            findings.send(
                client, op.method, op.path, content=content, headers=headers, label=f"[{mode}] {what}"
            )
        for content_type in ("text/plain", "application/json; charset=latin-1", "multipart/form-data", None):
            sent = {**headers, **({"content-type": content_type} if content_type else {})}
            try:
                response = client.request(op.method, op.path, content=valid, headers=sent)
            except Exception as error:
                findings.add(
                    exception_summary(error), f"[{mode}] {op.method} {op.path} content-type {content_type}"
                )
                continue
            if response.status_code >= 500:
                findings.add(
                    f"HTTP {response.status_code}", f"[{mode}] {op.path} content-type {content_type}"
                )
    findings.check()


AUTHORIZATIONS: list[bytes] = [
    b"Bearer \x00",
    b"Bearer a\x00b",
    b"Bearer \xff\xfe",
    b"Bearer \xed\xa0\x80",
    b"Bearer " + b"x" * 10_000,
    b"Bearer",
    b"Bearer ",
    b"bearer  two words",
    b"Basic dXNlcjpwYXNz",
    b"Token abc",
    b"\x00",
    b"",
]


def test_odd_authorization_headers(service: Service) -> None:
    """Authorization headers with NUL and non-UTF-8 bytes, huge or malformed, on writes and
    admin and plain reads: 401/403/422, never a 5xx."""
    findings = Findings()
    for header in AUTHORIZATIONS:
        label = f"Authorization: {header[:40]!r}"
        for method, path, body in (
            ("POST", "/v1/devices", {"name": "auth-dev", "profiler": PROFILER}),
            ("POST", "/v1/measurements", {"measurements": [measurement_item()]}),
            ("GET", "/v1/devices", None),
            ("GET", "/v1/measurements", None),
            ("GET", "/v1/tokens", None),
        ):
            content = None if body is None else encode(body)
            # Raw header bytes: httpx would refuse non-ASCII header strings.
            headers = [(b"authorization", header), (b"content-type", b"application/json")]
            try:
                response = service.auth_client.request(method, path, content=content, headers=headers)
            except Exception as error:
                findings.add(exception_summary(error), f"{label} {method} {path}")
                continue
            if response.status_code >= 500:
                findings.add(f"HTTP {response.status_code}", f"{label} {method} {path}")
    findings.check()


@pytest.mark.parametrize("size", [1 * MB, 5 * MB, 20 * MB], ids=["1MB", "5MB", "20MB"])
def test_large_bodies(service: Service, size: int) -> None:
    """Bodies of 1 to 20 MB: never a 5xx (413 once a body limit exists, 422, or accepted); what
    is accepted reads back (200, same content)."""
    findings = Findings()
    client, headers = service.auth_client, service.admin
    one_item = (
        encode(measurement_item(id="@ID@", environment=None))
        .replace(b"%", b"%%")
        .replace(b'"@ID@"', b'"big-%d"')
    )
    n_items = size // len(one_item)
    big_string = "x" * size
    many_keys = {f"k{i}": "v" * 50 for i in range(size // 60)}
    stored_env = measurement_item(environment={"blob": big_string})
    stored_keys = measurement_item(environment=many_keys)
    bodies: dict[str, tuple[str, bytes]] = {
        "environment string": ("/v1/measurements", encode({"measurements": [stored_env]})),
        "environment keys": ("/v1/measurements", encode({"measurements": [stored_keys]})),
        "many items": (
            "/v1/measurements",
            b'{"measurements": [' + b",".join(one_item % i for i in range(n_items)) + b"]}",
        ),
        "long arch": ("/v1/measurements", encode({"measurements": [measurement_item(arch=big_string)]})),
        "surrogate string": (
            "/v1/measurements",
            encode({"measurements": [measurement_item(id="\ud800" * (size // 6))]}),
        ),
        "query echo": ("/v1/query", encode({"space": big_string, "task": TASK, "device": DEVICE})),
        "device setting": (
            "/v1/devices",
            encode({"name": "big", "profiler": PROFILER, "settings": {"task": big_string}}),
        ),
        "not json": ("/v1/measurements", b"{" * size),
        "whitespace": ("/v1/query", b" " * size + b"{}"),
    }
    accepted = set()
    for what, (path, content) in bodies.items():
        response = findings.send(
            client, "POST", path, content=content, headers=headers, label=f"{what} ({len(content)} bytes)"
        )
        if response is not None and response.status_code < 300:
            accepted.add(what)
    page = findings.get_json(client, "/v1/measurements?limit=1000", headers, "large read-back")
    if page is not None:
        rows = {row["client_id"]: row for row in page["measurements"]}
        for what, item in (("environment string", stored_env), ("environment keys", stored_keys)):
            if what in accepted and not same_json(
                rows.get(item["id"], {}).get("environment"), item["environment"]
            ):
                findings.add("accepted large environment read back changed or missing", what)
        if "many items" in accepted and page["total"] < n_items:
            findings.add("accepted batch not all stored", f"{n_items} items, total {page['total']}")
    if "device setting" in accepted:
        device = findings.get_json(client, "/v1/devices/big", headers, "large read-back")
        if device is not None and device.get("settings", {}).get("task") != big_string:
            findings.add("accepted large setting read back changed", "device setting")
    findings.check()


# ====================================================================== 2. no 5xx: Hypothesis


@given(data=st.data())
@fuzz_settings(50)
def test_fuzzed_bodies_never_get_a_5xx(with_job: Service, data: st.DataObject) -> None:
    """Any route's valid body with one to three values (or keys) replaced by nasty JSON."""
    ops = body_ops(with_job)
    op = data.draw(st.sampled_from(ops), label="op")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    paths = [(p, is_obj) for p, is_obj in json_paths(op.body) if p not in op.frozen]
    body = op.body
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path, is_object = data.draw(st.sampled_from(paths), label="path")
        if is_object and data.draw(st.booleans(), label="add key"):
            path = (*path, data.draw(TEXTS, label="key"))
        try:
            body = replaced(body, path, data.draw(JSON_ANY, label="value"))
        except (KeyError, IndexError, TypeError):  # an earlier mutation replaced a parent
            continue
    note(f"[{mode}] {op.method} {op.path} {body!r}")
    request(with_job.client(mode), op.method, op.path, body, headers=with_job.headers(mode))


_GOOD_PARAMS = {
    "space": SPACE,
    "task": TASK,
    "device": DEVICE,
    "name": DEVICE,
    "arch": ARCH,
    "metric": "latency_ms",
    "status": "queued",
    "limit": "10",
    "offset": "0",
}
PARAM_VALUES = st.one_of(
    TEXTS,
    st.sampled_from(
        [
            b"\xff",
            b"\xc0\x80",
            b"\xed\xa0\x80",
            b"%00",
            "x" * 5000,
            "-1",
            "1e308",
            "NaN",
            "-0",
            "..",
            "/",
            "?#",
        ]
    ),
    st.integers().map(str),
)


@given(data=st.data())
@fuzz_settings(50)
def test_fuzzed_path_and_query_parameters_never_get_a_5xx(with_job: Service, data: st.DataObject) -> None:
    path, params = data.draw(st.sampled_from(get_operations(with_job)), label="route")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    good = {
        **_GOOD_PARAMS,
        "job_id": str(with_job.job_id),
        "campaign_id": str(with_job.campaign_id),
        "campaign": str(with_job.campaign_id),
    }
    values: dict[str, str | bytes] = {}
    for param in params:
        name = param["name"]
        if data.draw(st.booleans(), label=f"fuzz {name}"):
            values[name] = data.draw(PARAM_VALUES, label=name)
        elif param.get("required") or param.get("in") == "path" or data.draw(st.booleans(), label=f"{name}"):
            values[name] = good.get(name, "1")
    url = path
    query = []
    for param in params:
        name = param["name"]
        if name not in values:
            continue
        if param.get("in") == "path":
            url = url.replace("{" + name + "}", quote(values[name]) or "x")
        else:
            query.append(f"{name}={quote(values[name])}")
    if data.draw(st.booleans(), label="extra parameter"):
        query.append(
            f"{quote(data.draw(TEXTS, label='extra name'))}={quote(data.draw(TEXTS, label='extra'))}"
        )
    url = url + ("?" + "&".join(query) if query else "")
    note(f"GET {url}")
    request(with_job.client(mode), "GET", url, headers=with_job.headers(mode))


# ================================================================ 3. round trips: Hypothesis


def _post_and_read_back(service: Service, mode: str, items: list[dict[str, Any]]) -> None:
    client, headers = service.client(mode), service.headers(mode)
    items = with_unique_ids(items)
    response = request(client, "POST", "/v1/measurements", {"measurements": items}, headers=headers)
    note(f"POST /v1/measurements -> {response.status_code} {response.text[:300]}")
    if response.status_code >= 300:
        return
    assert response.json()["inserted"] == len(items), response.text
    problems = read_back_measurements(client, headers, items)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", ["admin", "auth-off"])
@given(items=st.lists(measurement_items(ENV_ANY), min_size=1, max_size=3))
@fuzz_settings(20)
def test_accepted_measurements_read_back_unchanged(
    service: Service, mode: str, items: list[dict[str, Any]]
) -> None:
    """Every field of an accepted measurement (environment of any accepted shape included) reads
    back unchanged through GET /v1/measurements with and without filters."""
    note(f"items = {items!r}")
    _post_and_read_back(service, mode, items)


@given(items=st.lists(measurement_items(ENV_TEXT), min_size=1, max_size=2))
@fuzz_settings(15)
def test_accepted_environment_text_reads_back_unchanged(
    service: Service, items: list[dict[str, Any]]
) -> None:
    """Environment keys and string values of any characters (surrogates, NUL, non-BMP)."""
    note(f"items = {items!r}")
    _post_and_read_back(service, "admin", items)


@given(items=st.lists(measurement_items(ENV_NUMBERS), min_size=1, max_size=2))
@fuzz_settings(15)
def test_accepted_environment_numbers_read_back_unchanged(
    service: Service, items: list[dict[str, Any]]
) -> None:
    """Environment numbers (floats of any magnitude, -0.0, integers up to 2**53)."""
    note(f"items = {items!r}")
    _post_and_read_back(service, "admin", items)


@given(items=st.lists(measurement_items(ENV_SHAPES), min_size=1, max_size=2))
@fuzz_settings(15)
def test_accepted_environment_shapes_read_back_unchanged(
    service: Service, items: list[dict[str, Any]]
) -> None:
    """Environments of any nesting (lists and objects up to ~40 levels) with plain leaves."""
    note(f"items = {items!r}")
    _post_and_read_back(service, "admin", items)


@given(value=st.one_of(st.builds(dt.datetime.isoformat, datetimes), st.sampled_from(DATETIME_VALUES)))
@fuzz_settings(30)
def test_accepted_measured_at_reads_back_as_thesame_instant(service: Service, value: Any) -> None:
    note(f"measured_at = {value!r}")
    client, headers = service.auth_client, service.admin
    item = measurement_item(measured_at=value)
    response = request(client, "POST", "/v1/measurements", {"measurements": [item]}, headers=headers)
    if response.status_code >= 300:
        return
    url = f"/v1/measurements?arch={quote(ARCH)}&device={DEVICE}&limit=1000"
    rows = {row["client_id"]: row for row in get_json(client, url, headers)["measurements"]}
    got = rows[item["id"]]["measured_at"]
    assert same_instant(value, got), f"measured_at {value!r} read back as {got!r}"


SETTING_KEYS = list(get_profiler_class(PROFILER).settings_spec)


@st.composite
def device_bodies(draw: st.DrawFn) -> dict[str, Any]:
    values = st.one_of(
        JSON_LEAVES, safe_ints, st.integers(1, 64), finite_floats, TEXTS, st.sampled_from(TASKS)
    )
    keys = draw(st.lists(st.sampled_from(SETTING_KEYS), max_size=4, unique=True))
    return {
        "name": draw(names),
        "profiler": draw(st.sampled_from([PROFILER, PROFILER, "onnxruntime-cpu", "table"])),
        "settings": {key: draw(values) for key in keys},
    }


@pytest.mark.parametrize("mode", ["admin", "auth-off"])
@given(body=device_bodies())
@fuzz_settings(25)
def test_accepted_devices_read_back_unchanged(service: Service, mode: str, body: dict[str, Any]) -> None:
    """Name, profiler and settings of an accepted device, through GET /v1/devices and
    GET /v1/devices/{name}."""
    note(f"body = {body!r}")
    client, headers = service.client(mode), service.headers(mode)
    # A name unique to this example (Hypothesis replays examples; a second POST would get 409).
    body = {**body, "name": f"{body['name'][:119]}-{uuid.uuid4().hex[:8]}"}
    response = request(client, "POST", "/v1/devices", body, headers=headers)
    note(f"POST /v1/devices -> {response.status_code} {response.text[:300]}")
    if response.status_code >= 300:
        return
    want = json_round_trip(body)

    def same(device: dict[str, Any]) -> bool:
        return same_json({key: device.get(key) for key in ("name", "profiler", "settings")}, want)

    assert same(response.json()), f"POST /v1/devices answered {response.json()!r}"
    listed = {d["name"]: d for d in get_json(client, "/v1/devices", headers)}
    assert body["name"] in listed
    assert same(listed[body["name"]]), f"GET /v1/devices shows {listed[body['name']]!r}"
    one = get_json(client, f"/v1/devices/{quote(body['name'])}", headers)
    assert same(one), f"GET /v1/devices/{{name}} shows {one!r}"


@st.composite
def campaign_bodies(draw: st.DrawFn) -> dict[str, Any]:
    space = draw(st.sampled_from(list_spaces()))
    tasks = list(get_space(space).tasks)
    body: dict[str, Any] = {
        "space": space,
        "device": DEVICE,
        "n": draw(st.integers(1, 3)),
        "strategy": "random",
    }
    if tasks and draw(st.booleans()):
        body["task"] = draw(st.sampled_from(tasks))
    if draw(st.booleans()):
        body["seed"] = draw(st.sampled_from([0, 1, INT32]) | st.integers(0, INT32))
    return body


@given(body=campaign_bodies())
@fuzz_settings(8)
def test_accepted_campaigns_read_back_unchanged(service: Service, body: dict[str, Any]) -> None:
    """An accepted campaign through GET /v1/campaigns, /v1/campaigns/{id} and its jobs through
    GET /v1/jobs (by campaign, by device, one by one)."""
    note(f"body = {body!r}")
    client, headers = service.auth_client, service.admin
    response = request(client, "POST", "/v1/campaigns", body, headers=headers)
    note(f"POST /v1/campaigns -> {response.status_code} {response.text[:300]}")
    if response.status_code >= 300:
        return
    created = response.json()
    expected = {
        "space": body["space"],
        "device": DEVICE,
        "task": body.get("task"),
        "metric": "score" if body.get("task") else "latency_ms",
        "strategy": "random",
        "n": body["n"],
        "seed": body.get("seed"),
        "jobs": {"queued": body["n"]},
    }
    shown = {c["id"]: c for c in get_json(client, "/v1/campaigns", headers)}
    for where, got in (
        ("POST", created),
        ("GET /v1/campaigns", shown[created["id"]]),
        ("GET /v1/campaigns/{id}", get_json(client, f"/v1/campaigns/{created['id']}", headers)),
    ):
        assert {k: got.get(k) for k in expected} == expected, f"{where} shows {got!r}"
    jobs = get_json(client, f"/v1/jobs?campaign={created['id']}&limit=1000", headers)["jobs"]
    by_device = {j["id"] for j in get_json(client, f"/v1/jobs?device={DEVICE}&limit=1000", headers)["jobs"]}
    assert len(jobs) == body["n"]
    for job in jobs:
        want = {
            "campaign_id": created["id"],
            "space": body["space"],
            "device": DEVICE,
            "task": body.get("task"),
            "metric": expected["metric"],
            "status": "queued",
        }
        assert {k: job.get(k) for k in want} == want, f"GET /v1/jobs shows {job!r}"
        assert job["id"] in by_device
        assert get_json(client, f"/v1/jobs/{job['id']}", headers) == job


@st.composite
def result_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"value": draw(positive_floats)}
    optional = {
        "std": nonneg_floats,
        "repeats": st.integers(1, INT32),
        "profiler": names,
        "profiler_version": st.text(CHARACTER, max_size=64),
        "environment": ENV_ANY,
        "drift": nonneg_floats,
        "flagged": st.booleans(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body


def test_accepted_job_results_read_back_unchanged(service: Service) -> None:
    """A leased job's accepted result through GET /v1/measurements (with filters), the job through
    GET /v1/jobs/{id} and /v1/jobs, its campaign's counts through GET /v1/campaigns."""
    client, headers = service.auth_client, service.admin
    campaign_id, _ = _campaign(service, 60)

    @given(body=result_bodies())
    @fuzz_settings(20)
    def check(body: dict[str, Any]) -> None:
        note(f"result body = {body!r}")
        leased = request(client, "POST", "/v1/jobs/lease", {"device": DEVICE}, headers=headers).json()["jobs"]
        if not leased:  # all 60 used (shrinking): nothing left to check
            return
        job = leased[0]
        response = request(
            client,
            "POST",
            f"/v1/jobs/{job['id']}/result",
            {**body, "lease_token": job["lease_token"]},
            headers=headers,
        )
        note(f"POST result -> {response.status_code} {response.text[:300]}")
        if response.status_code >= 300:
            return
        measurement_id = response.json()["measurement_id"]
        shown = get_json(client, f"/v1/jobs/{job['id']}", headers)
        assert shown["status"] == "done" and shown["measurement_id"] == measurement_id, shown
        done = get_json(client, f"/v1/jobs?device={DEVICE}&status=done&limit=1000", headers)["jobs"]
        assert job["id"] in {j["id"] for j in done}
        listed = get_json(client, f"/v1/jobs?campaign={campaign_id}&limit=1000", headers)["jobs"]
        assert {j["id"]: j for j in listed}[job["id"]] == shown
        sent = {**body, "space": job["space"], "arch": job["arch"], "device": DEVICE, "metric": "latency_ms"}
        for url in (
            "/v1/measurements?limit=1000",
            f"/v1/measurements?device={DEVICE}&arch={quote(job['arch'])}&metric=latency_ms&space={SPACE}",
        ):
            rows = {row["id"]: row for row in get_json(client, url, headers)["measurements"]}
            assert measurement_id in rows, f"GET {url} misses measurement {measurement_id}"
            got = rows[measurement_id]
            assert got["job_id"] == job["id"], got
            problems = measurement_differences(sent, got, check_time=False)
            assert not problems, f"GET {url}: " + "; ".join(problems)
        counts = get_json(client, f"/v1/campaigns/{campaign_id}", headers)["jobs"]
        assert counts.get("done", 0) >= 1, counts
        get_json(client, "/v1/campaigns", headers)

    check()
