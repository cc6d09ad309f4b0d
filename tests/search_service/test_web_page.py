"""The web page in a real headless Chromium: it loads, draws the front, and the slider picks subnets."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from scipy.stats import norm
from service_helpers import make_settings, measurements

from search_service import create_app
from search_service.testing import serving

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/ensure_services.sh)"),
]
SPACE = "ufo-track2"
TASK = "market1501"
EMPTY_DEVICE = "cpu-empty"  # registered, never measured: it has no front
PAGE = f"/?space={SPACE}&task={TASK}&device=cpu-a"
# How far the page's budgets may lie from scipy's: the page nudges budgets up by 1e-9 (relative)
# so that the server's own z_c cannot find a point infeasible at its own budget.
REL_TOL = 1e-7
SLIDER = "e => ({min: Number(e.min), max: Number(e.max), value: Number(e.value), disabled: e.disabled})"
# wait_for_function predicates are functions ("() => ..."): Playwright evals a plain expression
# again on every poll, which the page's Content-Security-Policy (no 'unsafe-eval') blocks; a
# function is evaluated once, through the DevTools protocol, which the policy does not cover.
CHOSEN_READY = "() => document.getElementById('chosen-arch').textContent.length > 20"


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[str]:
    """A real uvicorn server on a SQLite database holding one fitted front."""
    path = tmp_path_factory.mktemp("web") / "gpnas.db"
    shutil.copy(sqlite_template, path)
    app = create_app(make_settings(f"sqlite:///{path}"))
    with TestClient(app) as client:
        for name in ("cpu-a", EMPTY_DEVICE):
            device = {"name": name, "profiler": "torch-cpu", "settings": {}}
            response = client.post("/v1/devices", json=device)
            assert response.status_code == 201, response.text
        batch = measurements(60, device="cpu-a", seed=1) + measurements(60, device=None, task=TASK, seed=2)
        assert client.post("/v1/measurements", json={"measurements": batch}).status_code == 200
        report = client.post("/v1/refit", json={"space": SPACE})
        assert report.status_code == 200 and report.json()["fronts"], report.text
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def front(server_url: str) -> list[dict[str, Any]]:
    """The served front of the page's default choice."""
    page = httpx.get(
        f"{server_url}/v1/pareto", params={"space": SPACE, "task": TASK, "device": "cpu-a", "limit": 1000}
    ).json()
    assert len(page["points"]) >= 2, "the fixture must give a front with a trade-off"
    return page["points"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (each test opens its own page)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
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
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; the test fails on any uncaught script error."""
    context = browser.new_context()
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == []


def budgets(front: list[dict[str, Any]], confidence: float) -> list[float]:
    """Each point's smallest feasible budget at ``confidence``: mean + z_c * std (the /v1/query rule)."""
    z = float(norm.ppf(confidence))
    return [p["latency_ms"] + z * p["latency_std"] for p in front]


def wait_for_answer_to_shown_budget(page: Any) -> None:
    """Until the chosen subnet shown answers the budget and the confidence the page shows."""
    budget = page.text_content("#budget-value")
    confidence = str(float(page.input_value("#confidence")))
    expected = json.dumps(f"P(latency ≤ {budget} ms)")
    required = json.dumps(f"at least the required {confidence}")
    page.wait_for_function(
        f"() => (t => t.includes({expected}) && t.includes({required}))"
        "(document.getElementById('chosen-predicted').textContent)"
    )


def open_front(page: Any, server_url: str, front: list[dict[str, Any]], path: str = PAGE) -> None:
    page.goto(f"{server_url}{path}")
    page.wait_for_function(
        f"() => document.querySelectorAll('#front-plot circle.point').length === {len(front)}"
    )
    page.wait_for_function(CHOSEN_READY)


def test_page_draws_front_and_slider_changes_the_choice(
    page: Any, server_url: str, front: list[dict[str, Any]]
) -> None:
    open_front(page, server_url, front)

    # Every front point is drawn, measured ones marked.
    drawn = page.eval_on_selector_all("#front-plot circle.point", "els => els.map(e => e.dataset.arch)")
    assert drawn == [p["arch"] for p in front]
    measured = {p["arch"] for p in front if p["measured"]}
    marked = page.eval_on_selector_all(
        "#front-plot circle.point.measured", "els => els.map(e => e.dataset.arch)"
    )
    assert set(marked) == measured

    # The default view shows a chosen subnet, drawn as chosen, with its configuration.
    chosen = page.locator("#chosen-arch")
    first = chosen.text_content()
    assert first != "nothing fits"
    assert page.locator("#config-table tbody tr").count() in (10, 11, 12)
    assert page.eval_on_selector("circle.point.chosen", "e => e.dataset.arch") == first
    assert "P(latency ≤" in page.locator("#chosen-predicted").text_content()

    # Moving the budget with the keyboard, as a user would, changes the chosen subnet.
    page.focus("#budget")
    choices = {first}
    for key in ("ArrowLeft", "ArrowRight"):
        page.keyboard.press("End" if key == "ArrowLeft" else "Home")
        for _ in range(30):
            for _ in range(6):
                page.keyboard.press(key)
            page.wait_for_timeout(300)
            choices.add(chosen.text_content())
            if len(choices) >= 3:
                break
    assert len(choices) >= 3, f"moving the slider gave only {choices}"
    assert "nothing fits" not in choices

    # The slider's lowest budget still buys a subnet: the front's cheapest at this confidence, or
    # a better-scoring candidate off the mean front whose latency is surer.
    page.keyboard.press("Home")
    cheapest = min(zip(budgets(front, 0.9), front, strict=True), key=lambda bp: bp[0])[1]
    wait_for_answer_to_shown_budget(page)
    chosen_arch = chosen.text_content()
    assert chosen_arch != "nothing fits"
    scores = {p["arch"]: p["score"] for p in front}
    assert chosen_arch == cheapest["arch"] or scores.get(chosen_arch, float("inf")) >= cheapest["score"]


def test_normal_quantile_matches_scipy(page: Any, server_url: str, front: list[dict[str, Any]]) -> None:
    page.goto(f"{server_url}{PAGE}")
    probabilities = [
        1e-300,
        1e-20,
        1e-10,
        1e-5,
        0.001,
        0.02,
        0.02425,
        0.1,
        0.3,
        0.5,
        0.7,
        0.9,
        0.95,
        0.97575,
        0.99,
        0.999,
        1 - 1e-10,
    ]
    got = page.evaluate("ps => ps.map(normalQuantile)", probabilities)
    for p, z in zip(probabilities, got, strict=True):
        assert z == pytest.approx(float(norm.ppf(p)), rel=1e-13, abs=1e-14), p
    assert page.evaluate("[normalQuantile(0), normalQuantile(1)]") == [float("-inf"), float("inf")]
    xs = [-30.0, -8.0, -2.5, -1.0, 0.0, 0.7, 2.0, 5.0]
    got = page.evaluate("xs => xs.map(normalCdf)", xs)
    for x, phi in zip(xs, got, strict=True):
        assert phi == pytest.approx(float(norm.cdf(x)), rel=1e-13), x


def test_slider_spans_the_budgets_the_front_meets_at_the_confidence(
    page: Any, server_url: str, front: list[dict[str, Any]]
) -> None:
    open_front(page, server_url, front)
    seen = []
    for confidence in ("0.9", "0.5", "0.99"):
        if confidence != "0.9":  # 0.90 is the page's default
            page.select_option("#confidence", confidence)
        expected = budgets(front, float(confidence))
        page.wait_for_function(
            f"() => Math.abs(Number(document.getElementById('budget').max) - {max(expected)!r}) <= "
            f"{REL_TOL * max(expected)!r}"
        )
        slider = page.eval_on_selector("#budget", SLIDER)
        assert not slider["disabled"]
        assert slider["min"] == pytest.approx(min(expected), rel=REL_TOL)
        assert slider["max"] == pytest.approx(max(expected), rel=REL_TOL)
        assert slider["min"] <= slider["value"] <= slider["max"]
        # Whatever the confidence, the budget kept (or clamped) on the slider buys a subnet.
        wait_for_answer_to_shown_budget(page)
        assert page.text_content("#chosen-arch") != "nothing fits"
        seen.append((slider["min"], slider["max"]))
    assert len(set(seen)) == 3, f"the slider range did not follow the confidence: {seen}"


def test_default_budget_and_point_clicks_use_the_confidence(
    page: Any, server_url: str, front: list[dict[str, Any]]
) -> None:
    open_front(page, server_url, front)
    expected = budgets(front, 0.9)
    slider = page.eval_on_selector("#budget", SLIDER)
    assert slider["value"] == pytest.approx((min(expected) + max(expected)) / 2, rel=REL_TOL)

    page.select_option("#confidence", "0.99")
    expected = budgets(front, 0.99)
    scores = {p["arch"]: p["score"] for p in front}
    for index in (0, len(front) // 2, len(front) - 1):
        point = front[index]
        circle = page.locator(f"#front-plot circle.point[data-arch='{point['arch']}']")
        assert float(circle.get_attribute("data-budget")) == pytest.approx(expected[index], rel=1e-12)
        circle.dispatch_event("click")
        budget = page.evaluate("state.budget")
        assert budget == pytest.approx(expected[index], rel=REL_TOL)
        assert budget >= expected[index]  # never below the point's own budget
        wait_for_answer_to_shown_budget(page)
        chosen = page.text_content("#chosen-arch")
        assert chosen != "nothing fits"
        # The clicked point fits its own budget, so the choice scores at least as well.
        if chosen in scores:
            assert scores[chosen] >= point["score"] - 1e-9


def test_axis_and_tooltips_say_what_the_score_is(
    page: Any, server_url: str, front: list[dict[str, Any]]
) -> None:
    label = next(s for s in httpx.get(f"{server_url}/v1/spaces").json() if s["name"] == SPACE)["score_label"]
    assert label
    open_front(page, server_url, front)
    assert page.text_content("#front-plot #y-label") == f"predicted {label}"
    assert page.text_content("#front-plot #x-label") == "predicted latency (ms)"
    tooltip = page.text_content("#front-plot circle.point title")
    assert f"predicted {label}: " in tooltip
    assert label in page.get_attribute("#front-plot", "aria-label")
    assert label in page.text_content("#chosen-predicted")


def assert_sentences(text: str) -> None:
    assert text.strip()
    assert "{" not in text and "[" not in text, f"raw JSON shown: {text!r}"


def test_a_missing_front_reads_as_a_sentence(page: Any, server_url: str) -> None:
    page.goto(f"{server_url}/?space={SPACE}&task={TASK}&device={EMPTY_DEVICE}")
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    status = page.text_content("#status")
    assert_sentences(status)
    assert f"no latency measurements of device '{EMPTY_DEVICE}'" in status
    assert '"' not in status, f"the detail was shown as a JSON string: {status!r}"
    assert page.eval_on_selector("#budget", "e => e.disabled")
    assert page.locator("#front-plot circle.point").count() == 0


def _rewrite_budget(budget: float) -> Any:
    def handler(route: Any) -> None:
        body = route.request.post_data_json
        body["latency_budget_ms"] = budget
        route.continue_(post_data=json.dumps(body))

    return handler


def test_query_errors_read_as_sentences(page: Any, server_url: str, front: list[dict[str, Any]]) -> None:
    open_front(page, server_url, front)
    predicted = page.locator("#chosen-predicted")

    # FastAPI's validation error (a list of {loc, msg, type}) from the real server.
    page.route("**/v1/query", _rewrite_budget(-1.0))
    page.select_option("#confidence", "0.95")
    page.wait_for_function("() => document.getElementById('chosen-arch').textContent === 'no subnet chosen'")
    text = predicted.text_content()
    assert_sentences(text)
    assert "latency_budget_ms: Input should be greater than 0" in text

    # Nothing fits (a budget below the slider's range, as when the front changed since it was
    # drawn): said in words with the budget, the confidence and the cheapest budget that works.
    page.unroute("**/v1/query")
    page.select_option("#confidence", "0.99")
    page.evaluate("setBudget(0.001); scheduleQuery()")
    page.wait_for_function("() => document.getElementById('chosen-arch').textContent === 'nothing fits'")
    text = predicted.text_content()
    assert_sentences(text)
    assert "Nothing fits a budget of 0.001 ms at confidence 0.99." in text
    cheapest = re.search(r"cheapest budget this front meets at that confidence is ([0-9.e+-]+) ms", text)
    assert cheapest, text
    assert float(cheapest.group(1)) == pytest.approx(min(budgets(front, 0.99)), rel=1e-3)
    assert page.locator("#config-table tbody tr").count() == 0

    # A network failure.
    page.unroute("**/v1/query")
    page.route("**/v1/query", lambda route: route.abort())
    page.select_option("#confidence", "0.5")
    page.wait_for_function(
        "() => document.getElementById('chosen-predicted').textContent.includes('Could not reach the server')"
    )
    assert_sentences(predicted.text_content())

    # And the page recovers once the server answers again.
    page.unroute("**/v1/query")
    page.select_option("#confidence", "0.9")
    page.wait_for_function(CHOSEN_READY)
    assert not page.eval_on_selector("#chosen-predicted", "e => e.classList.contains('error')")


def test_the_download_button_posts_the_chosen_subnets_artifact(
    page: Any, server_url: str, front: list[dict[str, Any]]
) -> None:
    from test_web_deployments import route_artifacts

    open_front(page, server_url, front)
    wait_for_answer_to_shown_budget(page)
    arch = page.text_content("#chosen-arch")
    posted = route_artifacts(page)
    with page.expect_download():
        page.click("#download-subnet")
    expected = {
        "space": SPACE,
        "arch": arch,
        "task": TASK,
        "tasks": None,
        "input": None,
        "weights": {"supernet_version": None, "random_seed": 0},
        "precision": "fp32",
    }
    assert posted == [(expected, None)]  # no token typed: none sent
    assert "sha256 " + "a" * 64 in page.text_content("#download-subnet-status")
