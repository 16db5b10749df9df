"""The messages page in a real browser: the vendored Mermaid draws the saga's diagram, with no network beyond
the product."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from saga.transitions import State


def test_the_messages_page_draws_the_saga_diagram_with_every_state_from_local_assets(browser, live_server):
    browser.get(f"{live_server.url}/api/messages")

    svg = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#saga-diagram svg")))
    drawn = svg.get_attribute("textContent")
    for state in State:
        assert state.value in drawn, state
    assert "payment.refunded" in drawn and "saga.cancel" in drawn
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert any(url.endswith("/mermaid.min.js") for url in resources), resources
    foreign = [url for url in resources if not url.startswith(live_server.url)]
    assert not foreign, f"the messages page asked for resources beyond the product: {foreign}"
