"""One correlation id links an order's log lines across processes: the web's, and the worker's handlers'."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from django.conf import settings
from pythonjsonlogger.json import JsonFormatter

from messaging.correlation import LogContextFilter
from tests.e2e.conftest import wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import wait_for

pytestmark = [pytest.mark.e2e]

BASE_FIELDS = {"timestamp", "level", "logger", "message"}


@pytest.fixture
def web_log() -> Iterator[io.StringIO]:
    """The web side's log lines at INFO, written as the web process writes them: settings.LOGGING's JSON
    formatter behind the context filter. (The live server is a thread of this process.)"""
    spec = settings.LOGGING["formatters"]["json"]
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter(**{key: value for key, value in spec.items() if key != "()"}))
    handler.addFilter(LogContextFilter())
    handler.setLevel(logging.INFO)
    orders_logger = logging.getLogger("orders")
    level = orders_logger.level
    orders_logger.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    try:
        yield buffer
    finally:
        logging.getLogger().removeHandler(handler)
        orders_logger.setLevel(level)


def json_lines(text: str) -> list[dict]:
    """The JSON log lines of a process's output; Celery's banner and anything else not JSON is skipped."""
    lines = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                pass
    return lines


def test_one_correlation_id_links_the_api_line_with_every_handler_line_of_the_order(api, worker, web_log):
    # given a customer who can pay and a product in stock
    sku = create_product(api, stock_level=5)
    customer = create_account(api, balance_amount="100.00")
    correlation_id = f"trace-{uuid.uuid4().hex}"

    # when an order is placed with that correlation id and completes
    response = api.post(
        "/api/orders",
        json={"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]},
        headers={"x-correlation-id": correlation_id},
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-correlation-id"] == correlation_id
    order_id = response.json()["id"]
    assert wait_final(api, order_id)["status"] == "COMPLETED"

    # then the web's line for the order carries the id and the order
    (placed,) = [line for line in json_lines(web_log.getvalue()) if line["logger"] == "orders.services"]
    assert BASE_FIELDS <= set(placed)
    assert datetime.fromisoformat(placed["timestamp"]).tzinfo is not None
    assert (placed["level"], placed["correlation_id"], placed["order_id"]) == ("INFO", correlation_id, order_id)
    assert placed["message"].startswith("order placed")

    # and the worker's lines of the payments, inventory and saga handlers carry the same id and order
    def handled() -> dict[str, list[dict]]:
        by_consumer: dict[str, list[dict]] = {}
        for line in json_lines(worker.log()):
            if line.get("correlation_id") == correlation_id and line.get("consumer"):
                by_consumer.setdefault(line["consumer"], []).append(line)
        return by_consumer if {"payments", "inventory", "saga"} <= set(by_consumer) else {}

    lines = wait_for(handled, timeout=10, message="the handler lines of the order in the worker's log")
    assert {line["message_type"] for line in lines["payments"]} == {"payment.process"}
    assert {line["message_type"] for line in lines["inventory"]} == {"inventory.reserve"}
    assert {line["message_type"] for line in lines["saga"]} >= {"payment.processed", "inventory.reserved"}
    for line in [line for consumer_lines in lines.values() for line in consumer_lines]:
        assert BASE_FIELDS <= set(line), line
        assert line["order_id"] == order_id, line
        assert line["message_id"], line
        if line["message_type"] != "payment.process":  # the one message the HTTP request itself caused
            assert line["causation_id"], line
    # the saga's lines say which state the saga moved to
    states = {line["message_type"]: line["saga_state"] for line in lines["saga"]}
    assert states["payment.processed"] == "INVENTORY_PENDING"
    assert states["inventory.reserved"] == "COMPLETED"
