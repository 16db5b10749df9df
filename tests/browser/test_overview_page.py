"""The operations overview and a saga's page in a real browser: they render, the charts and the state machine
are drawn, and every request the pages make is answered by the product. Screenshots are kept in
tests/artefacts/ (SAGAFLOW_TEST_ARTEFACTS elsewhere)."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from config.overview import overview
from saga.diagram import arrows
from saga.transitions import State
from scripts.overview_timing import fill
from tests.factories import make_account, make_product
from tests.integration.support import drain, place

ARTEFACTS = Path(os.environ.get("SAGAFLOW_TEST_ARTEFACTS") or Path(__file__).resolve().parents[1] / "artefacts")
CHARTS = ["chart-flow", "chart-failures", "chart-dead-letters"]
TAKEN = "stroke:#c62828"
ARROWS = len({(arrow.from_state, arrow.to_state) for arrow in arrows()}) + 1  # and the one into the first state

# The pixels a chart has painted on its canvas: 0 for a canvas left blank.
PAINTED = """
const canvas = document.getElementById(arguments[0]);
const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let painted = 0;
for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
return painted;
"""


def requests_made(browser) -> dict[str, str]:
    """Every URL the page asked for since the last call, with how it was answered: its HTTP status, or the
    network error. From Chromium's performance log of network events."""
    urls, outcome = {}, {}
    for entry in browser.get_log("performance"):
        event = json.loads(entry["message"])["message"]
        params = event.get("params", {})
        if event["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif event["method"] == "Network.responseReceived":
            outcome[params["requestId"]] = str(params["response"]["status"])
        elif event["method"] == "Network.loadingFailed":
            outcome[params["requestId"]] = params.get("errorText", "failed")
    return {url: outcome.get(request, "no answer") for request, url in urls.items() if not url.startswith("data:")}


def assert_every_request_answered(browser, base_url: str, *, expected: list[str]) -> None:
    made = requests_made(browser)
    for asset in expected:
        assert any(asset in url for url in made), (asset, made)
    failed = {url: answer for url, answer in made.items() if answer not in ("200", "302", "304")}
    assert not failed, f"requests not answered with success: {failed}"
    foreign = [url for url in made if not url.startswith(base_url)]
    assert not foreign, f"the page asked for resources beyond the product: {foreign}"


def screenshot(browser, name: str, *, down_to: str | None = None) -> Path:
    """The whole page, or the page down to the element with id `down_to`, as tests/artefacts/<name>.png."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script(
        "const below = arguments[0] && document.getElementById(arguments[0]);"
        "return below ? Math.ceil(below.getBoundingClientRect().bottom + window.scrollY + 140)"
        " : document.documentElement.scrollHeight",
        down_to,
    )
    browser.set_window_size(1280, max(height, 800) + 100)  # the window is taller than the page it shows
    path = ARTEFACTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def log_in(browser, base_url: str) -> None:
    password = uuid.uuid4().hex
    User.objects.create_superuser("ops", "ops@example.com", password)
    requests_made(browser)  # forget those of Chromium's own new tab page (chrome://)
    browser.get(f"{base_url}/admin/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "user-tools")))


@pytest.fixture
def busy_hours(transactional_db):
    """Two and a half hours of orders, their sagas, dead letters and heartbeats, as the timing script fills them:
    all within the overview's window, however long the test takes."""
    if connection.vendor != "postgresql":
        pytest.skip("the rows are written with PostgreSQL's generate_series")
    with connection.cursor() as cursor:
        fill(cursor, orders=6000, span=timedelta(hours=2.5), dead_letters=400, now=timezone.now())


def test_staff_land_on_the_overview_and_its_charts_are_drawn_from_local_assets(browser, live_server, busy_hours):
    log_in(browser, live_server.url)

    # the login lands on the admin's index: the overview, above the list of apps
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "operations-overview")))
    for chart in CHARTS:
        WebDriverWait(browser, 15).until(
            lambda b, chart=chart: b.find_element(By.ID, chart).get_attribute("data-drawn") == "true"
        )
        assert browser.execute_script(PAINTED, chart) > 1000, f"{chart} is blank"
    figures = overview()
    started = browser.execute_script(
        "return Chart.getChart('chart-flow').data.datasets[0].data.reduce((a, b) => a + b, 0)"
    )
    assert started == sum(figures.flow[0].values) > 5000
    states = {
        row.find_element(By.TAG_NAME, "th").text: int(row.find_element(By.TAG_NAME, "a").text)
        for row in browser.find_elements(By.CSS_SELECTOR, "#sagas-by-state tr")
    }
    assert states == {figure.label: figure.value for figure in figures.states}
    assert browser.find_element(By.ID, "figure-stuck").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "#dead-letter-groups td a")
    assert "wedged" in browser.find_element(By.ID, "heartbeats").text
    assert browser.find_element(By.CSS_SELECTOR, "#content-main .app-saga")
    assert_every_request_answered(
        browser, live_server.url, expected=["/admin/", "chart.umd.min.js", "overview.js", "overview.css"]
    )
    screenshot(browser, "overview")
    screenshot(browser, "overview-top", down_to="operations-overview")  # docs/images/overview.png

    # the busiest minute's bar of failures links to the list of exactly those sagas
    failed = figures.flow[2]
    busiest = max(range(len(failed.values)), key=failed.values.__getitem__)
    link = browser.execute_script("return overviewLink('chart-flow', 2, arguments[0])", busiest)
    browser.get(link if link.startswith("http") else f"{live_server.url}{link}")
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "result_list")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == failed.values[busiest] > 0

    # a number opens the list behind it
    browser.back()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "failures-by-reason")))
    browser.find_element(By.CSS_SELECTOR, "#failures-by-reason a").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "result_list")))
    assert "failure_reason=" in browser.current_url
    assert_every_request_answered(browser, live_server.url, expected=["/admin/saga/saga/"])


def test_a_sagas_page_draws_its_state_machine_with_the_path_it_took(browser, live_server, transactional_db, inprocess):
    order_id = place(make_account(balance="100.00").customer_id, (make_product(stock=5).sku, 1))
    drain()
    log_in(browser, live_server.url)
    requests_made(browser)  # forget the login's requests

    browser.get(f"{live_server.url}/admin/saga/saga/{order_id}/change/")

    # Mermaid has drawn once every arrow of the table is a path
    WebDriverWait(browser, 30).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, "#saga-state-machine svg path.flowchart-link")) >= ARROWS
    )
    svg = browser.find_element(By.CSS_SELECTOR, "#saga-state-machine svg")
    drawn = svg.get_attribute("textContent")
    for state in State:
        assert state.value in drawn, state
    # the three arrows it took (start → PAYMENT_PENDING → INVENTORY_PENDING → COMPLETED), and no other
    taken = [
        path.get_dom_attribute("data-id")
        for path in svg.find_elements(By.CSS_SELECTOR, "path.flowchart-link")
        if TAKEN in (path.get_dom_attribute("style") or "")
    ]
    assert taken == [
        "L_start_PAYMENT_PENDING_0",
        "L_PAYMENT_PENDING_INVENTORY_PENDING_0",
        "L_INVENTORY_PENDING_COMPLETED_0",
    ]
    current = svg.find_elements(By.CSS_SELECTOR, "g.node.current")
    assert [node.get_attribute("textContent").strip() for node in current] == ["COMPLETED"]
    assert_every_request_answered(browser, live_server.url, expected=["mermaid.min.js", "state_machine.js"])
    screenshot(browser, "saga")
