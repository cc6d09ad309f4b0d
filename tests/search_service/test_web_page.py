"""The web page in a real headless Chromium: it loads, draws the front, and the slider picks subnets."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from service_helpers import make_settings, measurements

from search_service import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/ensure_services.sh)"),
]
TASK = "market1501"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """A real uvicorn server on a SQLite database holding one fitted front."""
    path = tmp_path_factory.mktemp("web") / "gpnas.db"
    shutil.copy(sqlite_template, path)
    app = create_app(make_settings(f"sqlite:///{path}"))
    with TestClient(app) as client:
        response = client.post("/v1/devices", json={"name": "cpu-a", "profiler": "torch-cpu", "settings": {}})
        assert response.status_code == 201, response.text
        batch = measurements(60, device="cpu-a", seed=1) + measurements(60, device=None, task=TASK, seed=2)
        assert client.post("/v1/measurements", json={"measurements": batch}).status_code == 200
        report = client.post("/v1/refit", json={"space": "ufo-track2"})
        assert report.status_code == 200 and report.json()["fronts"], report.text

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
        assert thread.is_alive(), "uvicorn stopped during start-up"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_page_draws_front_and_slider_changes_the_choice(server_url: str) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    front = httpx.get(
        f"{server_url}/v1/pareto",
        params={"space": "ufo-track2", "task": TASK, "device": "cpu-a", "limit": 1000},
    ).json()
    assert len(front["points"]) >= 2, "the fixture must give a front with a trade-off"

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{server_url}/?space=ufo-track2&task={TASK}&device=cpu-a")

            # Every front point is drawn, measured ones marked.
            page.wait_for_function(
                f"document.querySelectorAll('#front-plot circle.point').length === {len(front['points'])}"
            )
            drawn = page.eval_on_selector_all(
                "#front-plot circle.point", "els => els.map(e => e.dataset.arch)"
            )
            assert drawn == [p["arch"] for p in front["points"]]
            measured = {p["arch"] for p in front["points"] if p["measured"]}
            marked = page.eval_on_selector_all(
                "#front-plot circle.point.measured", "els => els.map(e => e.dataset.arch)"
            )
            assert set(marked) == measured

            # The slider starts at the largest budget: the best-scoring subnet that fits is chosen.
            chosen = page.locator("#chosen-arch")
            page.wait_for_function("document.getElementById('chosen-arch').textContent.length > 20")
            loose = chosen.text_content()
            assert loose in drawn
            assert page.locator("#config-table tbody tr").count() in (10, 11, 12)
            assert page.eval_on_selector("circle.point.chosen", "e => e.dataset.arch") == loose

            # Lowering the budget with the keyboard, as a user would, changes the chosen subnet.
            page.focus("#budget")
            choices = {loose}
            for _ in range(30):
                for _ in range(8):
                    page.keyboard.press("ArrowLeft")
                page.wait_for_timeout(400)
                choices.add(chosen.text_content())
                if len(choices) >= 3:
                    break
            assert len(choices) >= 3, f"moving the slider gave only {choices}"
            page.keyboard.press("Home")
            page.wait_for_function("document.getElementById('chosen-arch').textContent === 'nothing fits'")
            assert errors == []
        finally:
            browser.close()
