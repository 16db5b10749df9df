"""Cancel and Idempotency-Key, end to end with real workers."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest

from orders.models import Order
from saga.models import Saga
from tests.e2e.conftest import balance, place_order, stock, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import celery_worker, wait_for

pytestmark = [pytest.mark.e2e]


def test_cancelling_a_pending_order_refunds_it_and_ends_cancelled(api, started):
    # given an order stuck waiting for payments
    started(celery_worker("no-payments", MESSAGING_CONSUMERS="saga,inventory"), ("saga", "inventory"))
    sku = create_product(api, stock_level=5, price="20.00")
    customer = create_account(api, balance_amount="100.00")
    order = place_order(api, customer, [{"sku": sku, "quantity": 1}])

    # when it is cancelled, and payments comes back afterwards and charges it late
    response = api.post(f"/api/orders/{order['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["saga"]["state"] == "COMPENSATING"
    started(celery_worker("payments", MESSAGING_CONSUMERS="payments"), ("payments",))
    final = wait_final(api, order["id"])

    # then it ends cancelled, with no money moved and no stock held
    assert (final["status"], final["failure_reason"]) == ("CANCELLED", "cancelled")
    assert balance(api, customer) == Decimal("100.00")
    product = stock(api, sku)
    assert (product["on_hand"], product["reserved"]) == (5, 0)
    assert api.post(f"/api/orders/{order['id']}/cancel").status_code == 409


def test_cancelling_a_completed_order_answers_409(api, worker):
    sku = create_product(api, stock_level=5)
    customer = create_account(api, balance_amount="100.00")
    final = wait_final(api, place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"])
    assert final["status"] == "COMPLETED"

    response = api.post(f"/api/orders/{final['id']}/cancel")

    assert response.status_code == 409
    assert response.json()["code"] == "order_not_cancellable"
    assert api.get(f"/api/orders/{final['id']}").json()["status"] == "COMPLETED"


def test_same_idempotency_key_and_body_returns_the_same_order_and_one_saga(api, worker):
    sku = create_product(api, stock_level=5)
    customer = create_account(api, balance_amount="100.00")
    key = str(uuid.uuid4())
    body = {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}

    first = api.post("/api/orders", json=body, headers={"Idempotency-Key": key})
    wait_final(api, first.json()["id"])
    again = api.post("/api/orders", json=body, headers={"Idempotency-Key": key})
    other = api.post(
        "/api/orders", json={**body, "items": [{"sku": sku, "quantity": 2}]}, headers={"Idempotency-Key": key}
    )

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert Order.objects.filter(customer_id=customer).count() == 1
    assert Saga.objects.filter(customer_id=customer).count() == 1
    assert balance(api, customer) == Decimal("90.00")


def test_concurrent_requests_with_one_key_make_one_order(api, worker):
    sku = create_product(api, stock_level=50)
    customer = create_account(api, balance_amount="100.00")
    key = str(uuid.uuid4())
    body = {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}
    answers = []
    start = threading.Barrier(10)

    def post():
        start.wait()
        response = api.post("/api/orders", json=body, headers={"Idempotency-Key": key})
        answers.append((response.status_code, response.json()))

    threads = [threading.Thread(target=post) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(answers) == 10
    created = {payload["id"] for status, payload in answers if status == 201}
    assert len(created) == 1
    assert all(
        status == 201 or (status == 409 and payload["code"] == "idempotency_key_in_use") for status, payload in answers
    )
    assert Order.objects.filter(customer_id=customer).count() == 1
    wait_final(api, created.pop())
    wait_for(lambda: balance(api, customer) == Decimal("90.00"), message="one charge")
