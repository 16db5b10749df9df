"""The order saga through HTTP, with a real Celery worker on PostgreSQL and RabbitMQ."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.e2e.conftest import balance, place_order, stock, wait_final
from tests.factories import unique

pytestmark = [pytest.mark.e2e]


def create_product(api, *, stock_level: int, price: str = "10.00") -> str:
    sku = unique("SKU")
    response = api.post("/api/products", json={"sku": sku, "name": "Thing", "price": price, "stock": stock_level})
    assert response.status_code == 201, response.text
    return sku


def create_account(api, *, balance_amount: str) -> str:
    customer = unique("cust")
    response = api.post("/api/accounts", json={"customer_id": customer, "balance": balance_amount})
    assert response.status_code == 201, response.text
    return customer


def test_happy_path_completes_and_takes_money_and_stock(api, worker):
    sku = create_product(api, stock_level=5, price="12.50")
    customer = create_account(api, balance_amount="100.00")

    order = place_order(api, customer, [{"sku": sku, "quantity": 2}])
    final = wait_final(api, order["id"])

    assert final["status"] == "COMPLETED"
    assert final["failure_reason"] is None
    assert final["total"] == "25.00"
    assert [step["to_state"] for step in final["saga"]["history"]] == [
        "PAYMENT_PENDING",
        "INVENTORY_PENDING",
        "COMPLETED",
    ]
    assert balance(api, customer) == Decimal("75.00")
    payments = api.get("/api/payments", params={"order_id": order["id"]}).json()["results"]
    assert [(p["status"], p["amount"]) for p in payments] == [("CAPTURED", "25.00")]
    # The goods left on_hand when they were reserved, before the order completed.
    product = stock(api, sku)
    assert (product["on_hand"], product["reserved"], product["available"]) == (3, 0, 3)


def test_declined_payment_fails_the_order_and_moves_nothing(api, worker):
    sku = create_product(api, stock_level=5, price="50.00")
    customer = create_account(api, balance_amount="20.00")

    final = wait_final(api, place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"])

    assert final["status"] == "FAILED"
    assert final["failure_reason"] == "insufficient_funds"
    assert balance(api, customer) == Decimal("20.00")
    assert stock(api, sku)["available"] == 5


def test_out_of_stock_refunds_the_payment_and_keeps_the_stock(api, worker):
    sku = create_product(api, stock_level=1, price="30.00")
    customer = create_account(api, balance_amount="100.00")

    final = wait_final(api, place_order(api, customer, [{"sku": sku, "quantity": 2}])["id"])

    assert final["status"] == "FAILED"
    assert final["failure_reason"] == "out_of_stock"
    assert [step["to_state"] for step in final["saga"]["history"]] == [
        "PAYMENT_PENDING",
        "INVENTORY_PENDING",
        "COMPENSATING",
        "FAILED",
    ]
    assert balance(api, customer) == Decimal("100.00")
    payments = api.get("/api/payments", params={"order_id": final["id"]}).json()["results"]
    assert [p["status"] for p in payments] == ["REFUNDED"]
    product = stock(api, sku)
    assert (product["on_hand"], product["reserved"], product["available"]) == (1, 0, 1)
