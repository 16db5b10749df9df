"""Pages a person opens, in a real browser: the API docs, and an order's saga timeline in the admin."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from messaging.models import OutboxMessage
from tests.factories import make_account, make_product
from tests.integration.support import drain, place

ORDER_OPERATIONS = {
    ("GET", "/api/orders"),
    ("POST", "/api/orders"),
    ("GET", "/api/orders/{order_id}"),
    ("POST", "/api/orders/{order_id}/cancel"),
}


def test_the_api_docs_list_the_order_operations_with_no_network_beyond_the_product(browser, live_server):
    browser.get(f"{live_server.url}/api/docs")

    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    operations = {
        (
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
            block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert ORDER_OPERATIONS <= operations, operations
    # every script, style sheet, image and the schema itself came from the product
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources, "the page loaded nothing: the check below would prove nothing"
    foreign = [url for url in resources if not url.startswith(live_server.url)]
    assert not foreign, f"the docs page asked for resources beyond the product: {foreign}"


def test_an_admin_logs_in_and_opens_an_orders_saga_timeline(browser, live_server, transactional_db, inprocess):
    # given a staff user and an order that went through its saga
    password = uuid.uuid4().hex
    User.objects.create_superuser("ops", "ops@example.com", password)
    order_id = place(make_account(balance="100.00").customer_id, (make_product(stock=5).sku, 1))
    drain()
    message_ids = {str(m) for m in OutboxMessage.objects.filter(order_id=order_id).values_list("message_id", flat=True)}

    # when they log in and open the order from the orders list
    browser.get(f"{live_server.url}/admin/")
    browser.find_element(By.NAME, "username").send_keys("ops")
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "user-tools")))
    browser.get(f"{live_server.url}/admin/orders/order/")
    browser.find_element(By.CSS_SELECTOR, f'a[href$="/admin/orders/order/{order_id}/change/"]').click()

    # then the saga timeline is on the page: each transition, and every message with its id
    timeline = WebDriverWait(browser, 15).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "table.saga-timeline"))
    )
    transitions = [
        row.find_elements(By.TAG_NAME, "td")[4].text
        for row in timeline.find_elements(By.CSS_SELECTOR, "tr.timeline-transition")
    ]
    assert transitions == [
        "∅ → PAYMENT_PENDING",
        "PAYMENT_PENDING → INVENTORY_PENDING",
        "INVENTORY_PENDING → COMPLETED",
    ]
    shown_ids = {code.text for code in timeline.find_elements(By.TAG_NAME, "code")}
    assert message_ids <= shown_ids
    assert timeline.find_elements(By.CSS_SELECTOR, "tr.timeline-handled")
