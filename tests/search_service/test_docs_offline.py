"""The API docs page works offline: Swagger UI comes from the package, under its own strict CSP."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import make_settings

from search_service import create_app

# What the page loads: stylesheets, icons and scripts.
ASSET = re.compile(r"""<(?:link|script)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""")
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ORIGIN = "http://gpnas.test"


@pytest.fixture(scope="module")
def docs_client(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[TestClient]:
    """A client of an app on SQLite: the docs page reads no table, so one backend is enough."""
    path = tmp_path_factory.mktemp("docs") / "gpnas.db"
    shutil.copy(sqlite_template, path)
    with TestClient(create_app(make_settings(f"sqlite:///{path}"))) as client:
        yield client


def _csp(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as ``{directive: sources}``."""
    policy = {}
    for part in header.split(";"):
        if part.strip():
            name, *sources = part.split()
            policy[name] = sources
    return policy


def test_docs_page_needs_no_other_host(docs_client):
    response = docs_client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle(" in response.text
    assert re.findall(r"https?://", response.text) == [], "the page names another host"


def test_every_asset_of_the_page_is_served_with_its_type(docs_client):
    urls = ASSET.findall(docs_client.get("/docs").text)
    assert {Path(url).suffix for url in urls} == set(EXPECTED_TYPES), urls
    for url in urls:
        assert url.startswith("/docs/static/"), url
        response = docs_client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"].split(";")[0] == EXPECTED_TYPES[Path(url).suffix], url
        assert response.content


def test_only_the_page_assets_are_served(docs_client):
    for name in ("redoc.standalone.js", "index.html", "swagger-ui-bundle.js.map", "nope.js"):
        assert docs_client.get(f"/docs/static/{name}").status_code == 404, name


def test_csp_allows_exactly_the_inline_script(docs_client):
    response = docs_client.get("/docs")
    scripts = INLINE_SCRIPT.findall(response.text)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    policy = _csp(response.headers["content-security-policy"])
    assert sorted(policy["script-src"]) == sorted(["'self'", f"'sha256-{digest}'"])
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert policy["default-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_the_page_loads_the_served_schema(docs_client):
    assert "url: '/openapi.json'" in docs_client.get("/docs").text
    assert docs_client.get("/openapi.json").status_code == 200
    # The built-in pages would load Swagger UI and ReDoc from a CDN.
    assert docs_client.get("/redoc").status_code == 404
    assert "/docs" not in docs_client.get("/openapi.json").json()["paths"]


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/ensure_services.sh)")
def test_swagger_ui_renders_offline_under_its_csp(docs_client):
    """In a real Chromium cut off from every other host, the page draws the API's operations.

    Chromium enforces the page's CSP, so a script it blocks shows up as a console error.
    """
    playwright_api = pytest.importorskip("playwright.sync_api")
    offline: list[str] = []
    problems: list[str] = []

    def serve(route: Any) -> None:
        # Every request goes to the app in-process; one for another host is what "offline" forbids.
        url = route.request.url
        if not url.startswith(f"{ORIGIN}/"):
            offline.append(url)
            route.abort()
            return
        response = docs_client.request(route.request.method, url.removeprefix(ORIGIN))
        route.fulfill(status=response.status_code, headers=dict(response.headers), body=response.content)

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: message.type == "error" and problems.append(message.text))
            page.route("**/*", serve)
            page.goto(f"{ORIGIN}/docs")
            page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
            title = page.text_content(".swagger-ui .info .title") or ""
            operations = page.locator(".swagger-ui .opblock").count()
        finally:
            browser.close()
    assert title.startswith("gpnas")
    assert operations == sum(len(item) for item in docs_client.get("/openapi.json").json()["paths"].values())
    assert problems == []
    assert offline == []
