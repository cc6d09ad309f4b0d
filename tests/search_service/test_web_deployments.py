"""The page's deployment view in a real headless Chromium: tasks, budgets, the memory slider."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_web_page as web
from fastapi.testclient import TestClient
from scipy.stats import norm
from service_helpers import make_settings, post_scored_tasks, register
from test_web_page import assert_sentences

from search_service import create_app
from search_service.testing import serving

SPACE = "ufo-track2"
DEVICE = "cpu-a"
TASKS = ("market1501", "veri", "sop")  # scored, each with a front on DEVICE
PAGE = f"/?space={SPACE}&device={DEVICE}"
# The browser fixtures (one Chromium per module, a fresh page per test that fails on script
# errors) and the skip without Chromium are the page tests' own.
browser, page, pytestmark = web.browser, web.page, web.pytestmark
# The deployment shown answers what the controls describe now, and nothing is pending.
READY = (
    "() => { const b = deploymentBody().body; return b !== undefined && !deploy.inFlight && "
    "deploy.shownKey === JSON.stringify(b) && !document.getElementById('deploy-result')"
    ".classList.contains('stale'); }"
)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """A real uvicorn server on a SQLite database with three scored tasks and a fitted device."""
    path = tmp_path_factory.mktemp("web-deployments") / "gpnas.db"
    shutil.copy(sqlite_template, path)
    settings = make_settings(
        f"sqlite:///{path}", front_max_evaluations=300, front_time_limit_s=1.0, deployment_time_limit_s=1.0
    )
    app = create_app(settings)
    with TestClient(app) as client:
        register(client, DEVICE)
        post_scored_tasks(client, TASKS, device=DEVICE)
        report = client.post("/v1/refit", json={"space": SPACE}).json()
        assert report["errors"] == [] and len(report["fronts"]) == len(TASKS), report
    with serving(app) as url:
        yield url


def front_of(server_url: str, task: str) -> list[dict[str, Any]]:
    query = {"space": SPACE, "task": task, "device": DEVICE, "limit": 1000}
    return httpx.get(f"{server_url}/v1/pareto", params=query).json()["points"]


def open_view(page: Any, server_url: str) -> None:
    page.goto(f"{server_url}{PAGE}")
    page.wait_for_function("() => document.querySelectorAll('#deploy-tasks tbody tr').length > 0")


def row(task: str) -> str:
    return f"#deploy-tasks tbody tr[data-task='{task}']"


def choose(page: Any, budgets: dict[str, float]) -> None:
    """Type each task's budget, then tick the tasks (so that one search answers them all)."""
    for task, budget in budgets.items():
        page.fill(f"{row(task)} .deploy-budget", str(budget))
    for task in budgets:
        page.check(f"{row(task)} .deploy-check")


def body_of(budgets: dict[str, float], **extra: Any) -> dict[str, Any]:
    """The request the page sends for ``budgets`` (weights 1, confidence 0.9, separate inputs)."""
    tasks = [{"task": t, "weight": 1, "latency_budget_ms": b} for t, b in budgets.items()]
    body = {"space": SPACE, "device": DEVICE, "tasks": tasks, "confidence": 0.9, "input": "separate"}
    return body | extra


def sent_bodies(page: Any) -> list[dict[str, Any]]:
    """Record the bodies of the deployment queries the page sends from now on."""
    bodies: list[dict[str, Any]] = []

    def on_request(request: Any) -> None:
        if request.url.endswith("/v1/deployments/query"):
            bodies.append(request.post_data_json)

    page.on("request", on_request)
    return bodies


def shown_rows(page: Any) -> list[tuple[str, str]]:
    rows = page.eval_on_selector_all(
        "#deploy-table tbody tr", "els => els.map(e => [e.dataset.task, e.dataset.arch])"
    )
    return [tuple(r) for r in rows]


def count(text: str, pattern: str) -> int:
    """The exact count (``66,900,672``) that ``pattern``'s group finds in ``text``."""
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return int(found.group(1).replace(",", ""))


def test_the_view_lists_the_space_tasks(page: Any, server_url: str) -> None:
    open_view(page, server_url)
    space = next(s for s in httpx.get(f"{server_url}/v1/spaces").json() if s["name"] == SPACE)
    listed = page.eval_on_selector_all("#deploy-tasks tbody tr", "els => els.map(e => e.dataset.task)")
    assert listed == space["tasks"]
    labels = page.eval_on_selector_all("#deploy-tasks tbody label", "els => els.map(e => e.textContent)")
    assert labels == space["tasks"]
    assert (
        page.eval_on_selector_all("#deploy-tasks .deploy-check", "els => els.filter(e => e.checked).length")
        == 0
    )
    assert "Choose one or more tasks" in page.text_content("#deploy-status")
    assert page.eval_on_selector("#memory", "e => e.disabled")
    assert page.text_content("#memory-value") == "no cap"

    # Ticking a task fills its budget with the middle of what its front meets at the confidence.
    page.check(f"{row('veri')} .deploy-check")
    page.wait_for_function(f"() => document.querySelector(\"{row('veri')} .deploy-budget\").value !== ''")
    z = float(norm.ppf(0.9))
    budgets = [p["latency_ms"] + z * p["latency_std"] for p in front_of(server_url, "veri")]
    value = float(page.input_value(f"{row('veri')} .deploy-budget"))
    assert value == pytest.approx((min(budgets) + max(budgets)) / 2, rel=1e-3)
    assert min(budgets) < value < max(budgets)
    assert not page.eval_on_selector("#memory", "e => e.disabled")  # the front gives its range


def test_two_tasks_show_the_api_answer(page: Any, server_url: str) -> None:
    open_view(page, server_url)
    bodies = sent_bodies(page)
    budgets = {"market1501": 15.0, "veri": 16.0}
    choose(page, budgets)
    page.wait_for_function(READY)

    body = body_of(budgets)
    assert bodies[-1] == body
    direct = httpx.post(f"{server_url}/v1/deployments/query", json=body, timeout=30)
    assert direct.status_code == 200, direct.text
    answer = direct.json()
    assert shown_rows(page) == [(t["task"], t["arch"]) for t in answer["tasks"]]
    assert page.get_attribute("#deploy-result", "data-state") == "answer"
    # One row per task: arch, score and latency with their stds, P(feasible), params alone.
    cells = page.eval_on_selector_all(
        "#deploy-table tbody tr", "els => els.map(e => [...e.cells].map(c => c.textContent))"
    )
    for shown, task in zip(cells, answer["tasks"], strict=True):
        p = task["predicted"]
        assert shown[2] == f"{p['score']:.3f} ± {p['score_std']:.3f}"
        assert shown[3] == f"{p['latency_ms']:.2f} ± {p['latency_std']:.2f}"
        assert shown[4].startswith(f"{p['p_feasible']:.3f}")
        assert shown[5] == f"{task['params_alone']:,}"
    summary = page.text_content("#deploy-summary")
    assert count(summary, r"holds ([\d,]+) parameters") == answer["params"]
    assert count(summary, r"against ([\d,]+) \(") == answer["independent_params"]
    saved = (1 - answer["params"] / answer["independent_params"]) * 100
    assert f"{saved:.1f}% saved" in summary
    assert f"{answer['weight_mb']:.4g} MB as float32" in summary
    assert f"method: {answer['method']}" in summary
    assert f"{answer['objective']:.3f}" in summary
    assert not page.eval_on_selector("#deploy-status", "e => e.classList.contains('error')")


def test_a_lower_memory_cap_gives_a_smaller_deployment(page: Any, server_url: str) -> None:
    open_view(page, server_url)
    budgets = {"market1501": 15.0, "veri": 16.0}
    choose(page, budgets)
    page.wait_for_function(READY)
    uncapped = count(page.text_content("#deploy-summary"), r"holds ([\d,]+) parameters")
    assert page.text_content("#memory-value") == "no cap"

    # Move the slider down with the keyboard, as a user would.
    bodies = sent_bodies(page)
    page.focus("#memory")
    for _ in range(30):
        page.keyboard.press("ArrowLeft")
    page.wait_for_function(READY)
    cap = count(page.text_content("#memory-value"), r"at most ([\d,]+) parameters")
    assert cap < uncapped
    assert page.get_attribute("#deploy-result", "data-state") == "answer", page.text_content("#deploy-status")
    params = count(page.text_content("#deploy-summary"), r"holds ([\d,]+) parameters")
    assert params <= cap
    assert bodies[-1] == body_of(budgets, max_params=cap)
    assert len(bodies) <= 3, f"30 key presses sent {len(bodies)} queries"
    assert f"{cap * 4 / 1e6:.4g} MB as float32" in page.text_content("#memory-value")

    # Megabytes of another dtype: the same answer in other units, not a new search.
    page.select_option("#deploy-dtype", "float16")
    assert f"{cap * 2 / 1e6:.4g} MB as float16" in page.text_content("#memory-value")
    assert f"{params * 2 / 1e6:.4g} MB as float16" in page.text_content("#deploy-summary")
    page.wait_for_timeout(400)
    assert bodies[-1] == body_of(budgets, max_params=cap)

    # The lowest cap the slider offers holds the chosen tasks' smallest subnets.
    page.keyboard.press("Home")
    page.wait_for_function(READY)
    lowest = count(page.text_content("#memory-value"), r"at most ([\d,]+) parameters")
    smallest = max(min(p["params"] for p in front_of(server_url, t)) for t in budgets)
    assert lowest == smallest
    if page.get_attribute("#deploy-result", "data-state") == "answer":
        assert count(page.text_content("#deploy-summary"), r"holds ([\d,]+) parameters") <= lowest
    else:
        assert_sentences(page.text_content("#deploy-status"))
    page.keyboard.press("End")
    page.wait_for_function(READY)
    assert page.text_content("#memory-value") == "no cap"
    assert count(page.text_content("#deploy-summary"), r"holds ([\d,]+) parameters") == uncapped


def test_a_too_small_budget_reads_as_a_sentence_naming_the_task(page: Any, server_url: str) -> None:
    open_view(page, server_url)
    choose(page, {"market1501": 15.0, "veri": 0.5})
    page.wait_for_function(READY)
    assert page.get_attribute("#deploy-result", "data-state") == "error"
    status = page.text_content("#deploy-status")
    assert_sentences(status)
    assert status.startswith("No deployment meets every budget at this confidence")
    assert "task 'veri' is predicted at" in status and "budget of 0.5 ms" in status
    assert page.eval_on_selector("#deploy-status", "e => e.classList.contains('error')")
    assert page.locator("#deploy-table tbody tr").count() == 0

    # A field error of the API names the task rather than its index.
    page.fill(f"{row('veri')} .deploy-weight", "0")
    page.wait_for_function(READY)
    status = page.text_content("#deploy-status")
    assert_sentences(status)
    assert "task veri weight: Input should be greater than 0." in status

    # And a budget that fits gives an answer again.
    page.fill(f"{row('veri')} .deploy-weight", "1")
    page.fill(f"{row('veri')} .deploy-budget", "16")
    page.wait_for_function(READY)
    assert page.get_attribute("#deploy-result", "data-state") == "answer"
    assert not page.eval_on_selector("#deploy-status", "e => e.classList.contains('error')")


# Hold the deployment answers (once the server has sent them) until the test releases them;
# count the requests in flight at once and the bodies whose answers are drawn.
HOLD = """() => {
  const original = window.fetch;
  window.__held = []; window.__flying = 0; window.__mostFlying = 0; window.__shown = [];
  window.__release = () => { const held = window.__held; window.__held = null; held.forEach(go => go()); };
  window.fetch = async (url, options) => {
    if (!String(url).endsWith('/v1/deployments/query')) return original(url, options);
    window.__flying++; window.__mostFlying = Math.max(window.__mostFlying, window.__flying);
    try {
      const response = await original(url, options);
      if (window.__held) await new Promise(go => window.__held.push(go));
      return response;
    } finally { window.__flying--; }
  };
  const show = showDeployment;
  showDeployment = (body, answer) => {
    window.__shown.push(JSON.stringify(body));
    return show(body, answer);
  };
}"""


def test_requests_do_not_pile_up_and_stale_answers_are_not_shown(page: Any, server_url: str) -> None:
    open_view(page, server_url)
    page.evaluate(HOLD)
    bodies = sent_bodies(page)
    choose(page, {"market1501": 15.0, "veri": 14.0})
    page.wait_for_function("() => window.__held.length === 1")
    # New budgets while the first search is out: asked for after it, only the latest one.
    for budget in ("15", "16.5"):
        page.fill(f"{row('veri')} .deploy-budget", budget)
        page.wait_for_timeout(400)  # past the debounce
    assert len(bodies) == 1
    page.evaluate("window.__release()")
    page.wait_for_function(READY)
    final = body_of({"market1501": 15.0, "veri": 16.5})
    assert bodies == [body_of({"market1501": 15.0, "veri": 14.0}), final]
    assert page.evaluate("window.__mostFlying") == 1
    # The first answer came back stale (for a budget no longer shown): it was never drawn.
    assert [json.loads(b) for b in page.evaluate("window.__shown")] == [final]
    answer = httpx.post(f"{server_url}/v1/deployments/query", json=final, timeout=30).json()
    assert shown_rows(page) == [(t["task"], t["arch"]) for t in answer["tasks"]]


def fake_artifact(body: dict[str, Any]) -> dict[str, Any]:
    """What POST /v1/artifacts answers for ``body`` (faked: building a ViT-Base deployment takes
    a while, and the route has its own tests)."""
    digest = "a" * 64
    return {
        **body,
        "digest": digest,
        "size_bytes": 1234,
        "format": "onnx",
        "max_abs_diff": 1e-6,
        "url": f"/v1/artifacts/{digest}",
        "created_at": "2026-12-08T00:00:00Z",
    }


def route_artifacts(page: Any) -> list[tuple[dict[str, Any], str | None]]:
    """Answer the page's POST /v1/artifacts and its download with fakes; the bodies posted and
    their Authorization headers, as they arrive."""
    posted: list[tuple[dict[str, Any], str | None]] = []

    def create(route: Any) -> None:
        body = route.request.post_data_json
        posted.append((body, route.request.headers.get("authorization")))
        route.fulfill(status=200, content_type="application/json", body=json.dumps(fake_artifact(body)))

    page.route("**/v1/artifacts", create)
    page.route("**/v1/artifacts/*", lambda route: route.fulfill(status=200, body=b"onnx bytes"))
    return posted


def test_the_download_button_posts_the_answers_artifact_as_it_is(page: Any, server_url: str) -> None:
    open_view(page, server_url)
    assert page.eval_on_selector("#download-deployment", "e => e.disabled")
    budgets = {"market1501": 15.0, "veri": 16.0}
    choose(page, budgets)
    page.wait_for_function(READY)
    answer = httpx.post(f"{server_url}/v1/deployments/query", json=body_of(budgets), timeout=30).json()
    posted = route_artifacts(page)
    page.fill("#token", "gpnas_secret")
    with page.expect_download() as download:
        page.click("#download-deployment")
    assert download.value.suggested_filename == "a" * 64 + ".onnx"
    assert posted == [(answer["artifact"], "Bearer gpnas_secret")]
    status = page.text_content("#download-deployment-status")
    assert "onnx fp32, 1,234 bytes, random weights (seed 0), sha256 " + "a" * 64 in status
    # Another set of tasks: the shown answer's file is no longer offered until its answer is.
    page.uncheck(f"{row('veri')} .deploy-check")
    page.wait_for_function(READY)
    assert not page.eval_on_selector("#download-deployment", "e => e.disabled")
    assert page.text_content("#download-deployment-status") == ""
