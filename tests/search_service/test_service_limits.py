"""Request hardening: body-size limit, deep JSON nesting, security headers and the Host check.

The body limit is checked against a real ``gpnas serve`` process too: only there do the bytes
arrive over a socket, so only there can a test see that the server stops reading a body early.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings, measurements
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from search_service import Settings, create_app
from search_service.api.middleware import CONTENT_SECURITY_POLICY, SecurityHeadersMiddleware
from search_service.testing import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
GPNAS = Path(sys.executable).with_name("gpnas")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
ATTACK_BYTES = 40 * 2**20
DEVICE = {"name": "cpu-a", "profiler": "torch-cpu", "settings": {}}


def too_large(limit: int) -> dict[str, str]:
    """The body limit's 413 answer."""
    return {"detail": f"request body over {limit} bytes (GPNAS_MAX_BODY_BYTES)"}


def expensive_body(size: int) -> bytes:
    """A valid device registration of ``size`` bytes whose parse would build millions of objects
    (the attack: a big body of tiny containers costs the parser far more memory than its size)."""
    head = b'{"name": "x", "profiler": "torch-cpu", "settings": {"k": ['
    tail = b"{}]}}"
    body = head + b"{}," * ((size - len(head) - len(tail)) // 3) + tail
    return body + b" " * (size - len(body))


def device_body(size: int) -> bytes:
    """A valid device registration of exactly ``size`` bytes (padded with JSON whitespace)."""
    return json.dumps(DEVICE).encode().ljust(size)


def nested(depth: int, shape: str) -> str:
    """JSON nested ``depth`` levels deep in lists (``[[...]]``) or objects (``{"a": {...}}``)."""
    return "[" * depth + "]" * depth if shape == "list" else '{"a":' * depth + "1" + "}" * depth


def nesting_attacks() -> Iterator[tuple[str, str]]:
    """(path, body) pairs nesting up to and past the depth Python's JSON parser accepts (~1000),
    in the places a request may carry free-form JSON; the window where parsing succeeds but a
    deeper step overflows depends on the stack depth, so every depth around it is tried."""
    device = json.dumps({**DEVICE, "settings": {"k": "@"}})
    batch = json.dumps({"measurements": [{**measurements(1)[0], "environment": {"k": "@"}}]})
    for depth in [*range(900, 1001, 2), 100_000]:
        for shape in ("list", "dict"):
            inner = nested(depth, shape)
            yield "/v1/devices", inner
            yield "/v1/devices", device.replace('"@"', inner)
            yield "/v1/measurements", batch.replace('"@"', inner)
            yield "/v1/query", f'{{"space": {inner}}}'


def assert_security_headers(response: httpx.Response) -> None:
    """Each of the four headers is present once, with the value the middleware sets."""
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get_list(name) == [value], (response.request.url, name)


def _status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (VmRSS, VmHWM = peak RSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextmanager
def gpnas_serve(db_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``gpnas serve`` (default bind 127.0.0.1, auth on) in a child process: its URL and process."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("GPNAS_")}
    env.update(GPNAS_DATABASE_URL=db_url, GPNAS_REFIT_WORKER="off")
    # A file, not a pipe: nobody reads the log while the server runs, and a full pipe blocks it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(GPNAS), "serve", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"

        def log_tail() -> str:
            log.seek(0)
            return log.read().decode()[-2000:]

        try:
            wait_until_healthy(url, process=process, timeout_s=120, explain=log_tail)
            yield url, process
        finally:
            process.terminate()
            process.wait(30)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """One ``gpnas serve`` per backend for the module (starting one takes seconds). Auth is on and
    no token exists, so nothing the tests send is stored: each test sees an empty database."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("live") / "gpnas.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        db_url = f"sqlite:///{path}"
    else:
        db_url = request.getfixturevalue("postgres_url")
    with gpnas_serve(db_url) as server:
        yield server


# ---- Body limit ----------------------------------------------------------------------------------


@dataclass
class Upload:
    """A request body sent in chunks from a generator; it counts how much the client got to send,
    and once ``probe_at`` bytes are out (the request in flight) it calls ``probe`` and keeps what
    it returns."""

    body: bytes
    probe_at: int
    probe: Callable[[], int]
    chunk: int = 64 * 1024
    sent: int = 0
    probed: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), self.chunk):
            if self.probed is None and self.sent >= self.probe_at:
                self.probed = self.probe()
            self.sent += self.chunk
            yield self.body[start : start + self.chunk]


@pytest.mark.slow
def test_real_server_refuses_a_40_mb_body_while_it_arrives(
    live_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """One anonymous 40 MB POST, declared and chunked: 413 before the upload is through, no memory
    spent on it, and /healthz answering while it is in flight. Without the limit the server reads
    and parses all of it (peak RSS +1 GB, /healthz stalled ~1.5 s) before it answers 401."""
    url, process = live_server
    body = expensive_body(ATTACK_BYTES)
    with httpx.Client(base_url=url, timeout=120) as health:
        for declared in (True, False):
            # Half the limit: the server holds an unfinished request when /healthz is asked.
            upload = Upload(body, probe_at=8 * 2**20, probe=lambda: health.get("/healthz").status_code)
            headers = {"content-type": "application/json"}
            if declared:  # otherwise httpx sends the generator chunked
                headers["content-length"] = str(len(body))
            peak_before = _status_kib(process.pid, "VmHWM")
            response = httpx.post(f"{url}/v1/devices", content=iter(upload), headers=headers, timeout=120)
            peak_growth_mib = (_status_kib(process.pid, "VmHWM") - peak_before) / 1024
            share = upload.sent / len(body)
            print(
                f"{'content-length' if declared else 'chunked'}: {response.status_code} after "
                f"{response.elapsed.total_seconds():.3f} s, {share:.1%} of the body uploaded, "
                f"peak RSS +{peak_growth_mib:.1f} MiB, /healthz in flight: {upload.probed}"
            )
            assert response.status_code == 413 and response.json() == too_large(16 * 2**20)
            assert_security_headers(response)
            # The server stopped reading: a declared length is refused from the headers alone, a
            # chunked body after the limit (16 of 40 MiB) plus what the sockets buffer.
            assert share < (0.5 if declared else 0.9)
            assert peak_growth_mib < 100
            if not declared:  # a declared length is refused before 8 MiB are out
                assert upload.probed == 200
    # The server is unharmed: an ordinary request afterwards gets its ordinary answer.
    assert httpx.post(f"{url}/v1/devices", json=DEVICE).status_code == 401


def test_body_limit_boundary(db_url: str) -> None:
    """A body of exactly the limit is read; one byte more is refused, declared or not."""
    limit = 1024
    settings = make_settings(db_url, max_body_bytes=limit)
    with TestClient(create_app(settings)) as client:
        json_type = {"content-type": "application/json"}
        assert client.post("/v1/devices", content=device_body(limit), headers=json_type).status_code == 201
        over = device_body(limit + 1)
        declared = client.post("/v1/devices", content=over, headers=json_type)
        assert declared.status_code == 413 and declared.json() == too_large(limit)
        assert declared.headers["connection"] == "close"
        undeclared = client.post("/v1/devices", content=iter([over[:600], over[600:]]), headers=json_type)
        assert "content-length" not in undeclared.request.headers
        assert undeclared.status_code == 413 and undeclared.json() == too_large(limit)
        assert [d["name"] for d in client.get("/v1/devices").json()] == [DEVICE["name"]]


def test_body_limit_stops_receiving_past_the_limit(db_url: str) -> None:
    """At the ASGI level: chunks are pulled only until the count passes the limit, the 413 goes out
    at once, and the app's own answer to its cut-off body is dropped (the route needs a token,
    so without the limit it would read everything and answer 401)."""
    app = create_app(make_settings(db_url, auth=True, max_body_bytes=2048))
    chunks = [b"x" * 1000] * 10
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/devices",
        "raw_path": b"/v1/devices",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    try:
        asyncio.run(app(scope, receive, send))
    finally:
        app.state.engine.dispose()
    assert pulled == 3  # 3000 bytes > 2048: the other 7 chunks are never read
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == too_large(2048)


def test_default_limit_admits_a_full_measurement_batch() -> None:
    """The largest legitimate request: ``max_batch`` measurements with ~1 KB each of environment."""
    defaults = Settings.model_fields
    item = {**measurements(1)[0], "environment": {"cpu_model": "x" * 700, "samples_ms": [12.3456] * 30}}
    batch = json.dumps({"measurements": [item] * defaults["max_batch"].default}).encode()
    assert len(batch) > 10**7  # the sizing assumption holds: ~1 KB per item, ~10 MB in all
    assert len(batch) < defaults["max_body_bytes"].default


# ---- Deep nesting --------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_client_error(db_url: str) -> None:
    """Nesting near and past Python's recursion limit is a 4xx, never a 500, and costs no time."""
    settings = make_settings(db_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        json_type = {"content-type": "application/json"}
        statuses = [
            client.post(path, content=body, headers=json_type).status_code for path, body in nesting_attacks()
        ]
        assert all(400 <= status < 500 for status in statuses), sorted(set(statuses))
        deepest = client.post("/v1/devices", content=nested(100_000, "list"), headers=json_type)
        assert deepest.status_code == 400
        assert client.get("/healthz").status_code == 200


def test_deeply_nested_json_on_the_real_server(live_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    """The same against uvicorn, whose stack depth differs from the test client's."""
    with httpx.Client(base_url=live_server[0], timeout=30) as client:
        json_type = {"content-type": "application/json"}
        statuses = [
            client.post(path, content=body, headers=json_type).status_code for path, body in nesting_attacks()
        ]
        assert all(400 <= status < 500 for status in statuses), sorted(set(statuses))
        assert client.get("/healthz").status_code == 200


# ---- Security headers ----------------------------------------------------------------------------


def test_security_headers_on_every_response(db_url: str) -> None:
    settings = make_settings(db_url, max_body_bytes=1024, allowed_hosts=["testserver"])
    with TestClient(create_app(settings)) as client:
        responses = [
            client.get("/healthz"),  # a JSON route
            client.get("/"),  # the web page
            client.get("/web/app.js"),
            client.get("/no/such/route"),
            client.post("/v1/devices", content=b"x" * 2000),  # the body limit's own 413
            client.get("/healthz", headers={"host": "evil.example"}),  # the host check's own 400
        ]
        assert [r.status_code for r in responses] == [200, 200, 200, 404, 413, 400]
        for response in responses:
            assert_security_headers(response)


def test_a_response_with_its_own_policy_keeps_it() -> None:
    """Like the API docs page, which allows its one inline script by hash."""
    own = "default-src 'self'; script-src 'sha256-abc='"

    def docs(_: Any) -> PlainTextResponse:
        return PlainTextResponse("docs", headers={"Content-Security-Policy": own})

    app = SecurityHeadersMiddleware(Starlette(routes=[Route("/docs", docs)]))
    with TestClient(app) as client:
        response = client.get("/docs")
    assert response.headers.get_list("content-security-policy") == [own]
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/ensure_services.sh)")
def test_web_page_runs_under_the_policy(live_server: tuple[str, subprocess.Popen[bytes]]) -> None:
    """The page's script runs (it fills the selects from the API) and the browser reports no
    violation of the policy, e.g. an inline style or script."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    url = live_server[0]
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.add_init_script(
                "window.violations = [];"
                "document.addEventListener('securitypolicyviolation',"
                " e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(f"{url}/")
            # A function, not an expression: Playwright would eval an expression on each poll.
            page.wait_for_function("() => document.querySelectorAll('#space option').length > 0")
            assert page.evaluate("document.styleSheets[0].cssRules.length") > 0  # style.css applied
            assert page.evaluate("window.violations") == []
            assert errors == []
        finally:
            browser.close()


# ---- Host check ----------------------------------------------------------------------------------


def test_loopback_bind_admits_only_local_host_names(db_url: str) -> None:
    settings = make_settings(db_url, bind_host="127.0.0.1")
    with TestClient(create_app(settings)) as client:
        for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000", "127.0.0.1"):
            assert client.get("/healthz", headers={"host": host}).status_code == 200, host
        evil = client.get("/healthz", headers={"host": "evil.example"})
        assert evil.status_code == 400
        assert evil.json() == {"detail": "host 'evil.example' is not allowed (GPNAS_ALLOWED_HOSTS)"}
        for host in ("evil.example:8000", "localhost.evil.example", "127.0.0.1.nip.io", "testserver"):
            assert client.get("/healthz", headers={"host": host}).status_code == 400, host


@pytest.mark.parametrize("bind_host", [None, "0.0.0.0", "192.168.1.5", "::"])
def test_other_binds_check_no_host_by_default(db_url: str, bind_host: str | None) -> None:
    with TestClient(create_app(make_settings(db_url, bind_host=bind_host))) as client:
        assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # Host: testserver


def test_configured_hosts_replace_the_default(db_url: str) -> None:
    settings = make_settings(
        db_url, bind_host="127.0.0.1", allowed_hosts=["api.example.com", "*.lab.example"]
    )
    with TestClient(create_app(settings)) as client:
        for host, status in [
            ("api.example.com:443", 200),
            ("gpu1.lab.example", 200),
            ("lab.example", 400),
            ("localhost", 400),  # the loopback default is replaced, not extended
            ("evil.example", 400),
        ]:
            assert client.get("/healthz", headers={"host": host}).status_code == status, host


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("api.example.com, localhost", ["api.example.com", "localhost"]),
        ('["api.example.com", "[::1]"]', ["api.example.com", "[::1]"]),
        ("[::1]", ["[::1]"]),  # an IPv6 literal, not a JSON list
        ("*", ["*"]),
        ("", None),
    ],
)
def test_allowed_hosts_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, hosts: list[str] | None
) -> None:
    monkeypatch.setenv("GPNAS_ALLOWED_HOSTS", value)
    assert Settings().allowed_hosts == hosts


def test_serve_passes_its_bind_address_to_the_host_check(
    live_server: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """``gpnas serve`` binds 127.0.0.1 by default: a rebound name is refused, local names are not."""
    url = live_server[0]
    port = url.rsplit(":", 1)[1]
    evil = httpx.get(f"{url}/healthz", headers={"host": "evil.example"})
    assert evil.status_code == 400
    assert evil.json() == {"detail": "host 'evil.example' is not allowed (GPNAS_ALLOWED_HOSTS)"}
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert httpx.get(f"{url}/healthz", headers={"host": host}).status_code == 200, host
