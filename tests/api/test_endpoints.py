"""The shape of every endpoint's answer (DESIGN §5), the schema and docs, and the correlation header."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import quote

import pytest
from django.test import RequestFactory
from django.urls import get_resolver

from inventory.models import StockMovement
from messaging.models import OutboxMessage
from orders.models import Order
from orders.services import order_create
from tests.api.conftest import assert_error, post_json
from tests.factories import make_account, make_product, unique
from tests.integration.support import drain

MONEY = re.compile(r"^-?\d+\.\d{2}$")
PRODUCT_FIELDS = {"sku", "name", "price", "on_hand", "reserved", "available"}
ORDER_FIELDS = {
    "id",
    "status",
    "customer_id",
    "items",
    "total",
    "currency",
    "failure_reason",
    "created_at",
    "updated_at",
}
STEP_FIELDS = {"from_state", "to_state", "message_type", "message_id", "at"}
PAYMENT_FIELDS = {"id", "order_id", "customer_id", "amount", "status", "created_at", "updated_at"}


def assert_page(body: dict) -> list:
    assert set(body) == {"count", "next", "previous", "results"}
    assert isinstance(body["results"], list)
    return body["results"]


def place(client, customer_id: str, items: list[dict], **headers: str) -> dict:
    response = post_json(client, "/api/orders", {"customer_id": customer_id, "items": items}, **headers)
    assert response.status_code == 201, response.content[:500]
    return response.json()


# Products.


@pytest.mark.django_db
def test_creating_a_product_answers_201_with_the_product(client):
    sku = unique("SKU")

    response = post_json(client, "/api/products", {"sku": sku, "name": "Widget", "price": "7", "stock": 5})

    assert response.status_code == 201
    assert response.json() == {
        "sku": sku,
        "name": "Widget",
        "price": "7.00",
        "on_hand": 5,
        "reserved": 0,
        "available": 5,
    }
    assert client.get(f"/api/products/{sku}").json() == response.json()


@pytest.mark.django_db
def test_the_product_list_is_paginated(client):
    skus = sorted(make_product(price="1.50").sku for _ in range(3))

    first = client.get("/api/products?page_size=2").json()
    everything = assert_page(client.get("/api/products?page_size=200").json())

    assert first["count"] >= 3 and first["next"] and first["previous"] is None
    assert len(first["results"]) == 2
    listed = {p["sku"]: p for p in everything}
    assert set(skus) <= set(listed)
    for product in listed.values():
        assert set(product) == PRODUCT_FIELDS
        assert MONEY.match(product["price"])
    assert listed[skus[0]]["price"] == "1.50"


@pytest.mark.django_db
def test_restocking_answers_200_with_the_product_and_records_the_movement(client):
    sku = make_product(stock=2).sku

    response = post_json(client, f"/api/products/{sku}/restock", {"quantity": 3})

    assert response.status_code == 200
    assert (response.json()["on_hand"], response.json()["available"]) == (5, 5)
    assert list(StockMovement.objects.filter(product_id=sku).order_by("id").values_list("kind", "quantity")) == [
        ("INITIAL", 2),
        ("RESTOCK", 3),
    ]


# Accounts.


@pytest.mark.django_db
def test_creating_an_account_answers_201_and_it_can_be_read_back(client):
    customer = unique("cust")

    response = post_json(client, "/api/accounts", {"customer_id": customer, "balance": "100"})

    assert response.status_code == 201
    assert response.json() == {"customer_id": customer, "balance": "100.00"}
    assert client.get(f"/api/accounts/{customer}").json() == {"customer_id": customer, "balance": "100.00"}


@pytest.mark.django_db
@pytest.mark.parametrize("zero", ["-0", "-0.00", "0"])
def test_a_zero_amount_is_never_shown_as_negative_zero(client, zero):
    customer, sku = unique("cust"), unique("SKU")

    account = post_json(client, "/api/accounts", {"customer_id": customer, "balance": zero})
    product = post_json(client, "/api/products", {"sku": sku, "name": "Free", "price": zero, "stock": 1})

    assert account.json()["balance"] == "0.00"
    assert product.json()["price"] == "0.00"


# Orders.


@pytest.mark.django_db
def test_placing_an_order_answers_201_with_the_order_and_its_saga(client):
    sku, other = make_product(price="12.50").sku, make_product(price="0.99").sku
    customer = unique("cust")

    order = place(client, customer, [{"sku": sku, "quantity": 2}, {"sku": other, "quantity": 1}])

    assert set(order) == ORDER_FIELDS | {"failure_detail", "saga"}
    uuid.UUID(order["id"])
    assert (order["status"], order["customer_id"], order["total"], order["currency"]) == (
        "PENDING",
        customer,
        "25.99",
        "EUR",
    )
    assert order["items"] == [
        {"sku": sku, "quantity": 2, "unit_price": "12.50"},
        {"sku": other, "quantity": 1, "unit_price": "0.99"},
    ]
    assert order["failure_reason"] is None
    assert order["saga"]["state"] == "PAYMENT_PENDING"
    [step] = order["saga"]["history"]
    assert set(step) == STEP_FIELDS
    assert (step["from_state"], step["to_state"], step["message_type"]) == (None, "PAYMENT_PENDING", "order.created")
    # The answer is built from what was written, without reading it back: it must be what a read gives.
    assert client.get(f"/api/orders/{order['id']}").json() == order
    assert sorted(OutboxMessage.objects.filter(order_id=order["id"]).values_list("routing_key", flat=True)) == [
        "order.created",
        "payment.process",
    ]


@pytest.mark.django_db
def test_the_order_list_is_paginated_and_filtered(client):
    sku = make_product().sku
    customer = unique("cust")
    mine = [place(client, customer, [{"sku": sku, "quantity": 1}])["id"] for _ in range(2)]
    place(client, unique("other"), [{"sku": sku, "quantity": 1}])

    by_customer = assert_page(client.get(f"/api/orders?customer_id={customer}").json())
    pending = assert_page(client.get(f"/api/orders?customer_id={customer}&status=PENDING").json())
    failed = assert_page(client.get(f"/api/orders?customer_id={customer}&status=FAILED").json())

    assert sorted(o["id"] for o in by_customer) == sorted(mine)
    assert all(set(o) >= ORDER_FIELDS for o in by_customer)
    assert sorted(o["id"] for o in pending) == sorted(mine)
    assert failed == []


@pytest.mark.django_db
def test_the_same_idempotency_key_and_body_answers_with_the_first_order(client):
    sku = make_product().sku
    customer, key = unique("cust"), unique("key")

    first = place(client, customer, [{"sku": sku, "quantity": 1}], **{"Idempotency-Key": key})
    again = place(client, customer, [{"sku": sku, "quantity": 1}], **{"Idempotency-Key": key})

    assert again == first
    assert OutboxMessage.objects.filter(order_id=first["id"], routing_key="payment.process").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inprocess")
def test_an_idempotency_key_replay_after_the_order_moved_on_answers_with_the_first_answer(client):
    sku = make_product().sku
    customer, key = make_account().customer_id, unique("key")
    body = {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}
    first = post_json(client, "/api/orders", body, **{"Idempotency-Key": key})
    drain()

    again = post_json(client, "/api/orders", body, **{"Idempotency-Key": key})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content  # byte for byte, not only the same content
    assert again.json()["status"] == "PENDING"
    assert client.get(f"/api/orders/{first.json()['id']}").json()["status"] == "COMPLETED"


@pytest.mark.django_db
def test_a_replay_of_an_order_placed_by_an_older_version_answers_with_what_that_version_kept(client):
    sku = make_product().sku
    body = {"customer_id": unique("cust"), "items": [{"sku": sku, "quantity": 1}]}
    kept, nothing = unique("key"), unique("key")
    # older versions kept the first answer's content as jsonb after the commit, or nothing when they stopped first
    for key in (kept, nothing):
        order_create(customer_id=body["customer_id"], items=body["items"], idempotency_key=key)
    Order.objects.filter(idempotency_key=kept).update(first_answer={"id": "as kept"})

    assert post_json(client, "/api/orders", body, **{"Idempotency-Key": kept}).json() == {"id": "as kept"}
    order = Order.objects.get(idempotency_key=nothing)
    again = post_json(client, "/api/orders", body, **{"Idempotency-Key": nothing})
    assert again.status_code == 201 and again.json() == client.get(f"/api/orders/{order.id}").json()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inprocess")
def test_a_completed_order_shows_its_history_and_its_payment(client):
    # given
    sku = make_product(stock=5, price="12.50").sku
    customer = make_account(balance="100.00").customer_id
    order_id = place(client, customer, [{"sku": sku, "quantity": 2}])["id"]

    # when
    drain()

    # then the order shows how it got there, oldest first
    order = client.get(f"/api/orders/{order_id}").json()
    assert (order["status"], order["failure_reason"], order["total"]) == ("COMPLETED", None, "25.00")
    history = order["saga"]["history"]
    assert [(s["from_state"], s["to_state"], s["message_type"]) for s in history] == [
        (None, "PAYMENT_PENDING", "order.created"),
        ("PAYMENT_PENDING", "INVENTORY_PENDING", "payment.processed"),
        ("INVENTORY_PENDING", "COMPLETED", "inventory.reserved"),
    ]
    assert all(set(step) == STEP_FIELDS and step["message_id"] for step in history)
    assert [s["at"] for s in history] == sorted(s["at"] for s in history)
    # and its payment, and what it did to the account and the stock
    [payment] = assert_page(client.get(f"/api/payments?order_id={order_id}").json())
    assert set(payment) == PAYMENT_FIELDS
    assert (payment["order_id"], payment["customer_id"], payment["amount"], payment["status"]) == (
        order_id,
        customer,
        "25.00",
        "CAPTURED",
    )
    assert client.get(f"/api/accounts/{customer}").json()["balance"] == "75.00"
    assert client.get(f"/api/products/{sku}").json() == {
        "sku": sku,
        "name": "Test product",
        "price": "12.50",
        "on_hand": 3,
        "reserved": 0,
        "available": 3,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inprocess")
def test_a_failed_order_shows_a_stable_reason_and_a_readable_detail(client):
    sku = make_product(price="50.00").sku
    customer = make_account(balance="10.00").customer_id
    order_id = place(client, customer, [{"sku": sku, "quantity": 1}])["id"]

    drain()

    order = client.get(f"/api/orders/{order_id}").json()
    assert (order["status"], order["failure_reason"]) == ("FAILED", "insufficient_funds")
    assert order["failure_detail"]
    [payment] = assert_page(client.get(f"/api/payments?customer_id={customer}").json())
    assert (payment["status"], payment["amount"]) == ("DECLINED", "50.00")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inprocess")
def test_cancelling_a_pending_order_answers_202_and_it_ends_cancelled(client):
    sku = make_product(price="10.00").sku
    customer = make_account(balance="100.00").customer_id
    order_id = place(client, customer, [{"sku": sku, "quantity": 1}])["id"]

    response = client.post(f"/api/orders/{order_id}/cancel")
    drain()

    assert response.status_code == 202
    assert response.json()["id"] == order_id
    assert response.json()["saga"]["state"] == "COMPENSATING"
    order = client.get(f"/api/orders/{order_id}").json()
    assert (order["status"], order["failure_reason"], order["saga"]["state"]) == ("CANCELLED", "cancelled", "CANCELLED")
    assert client.get(f"/api/accounts/{customer}").json()["balance"] == "100.00"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("inprocess")
def test_cancelling_a_completed_order_is_a_409(client):
    sku = make_product().sku
    order_id = place(client, make_account().customer_id, [{"sku": sku, "quantity": 1}])["id"]
    drain()
    rows = OutboxMessage.objects.count()

    response = client.post(f"/api/orders/{order_id}/cancel")

    assert assert_error(response, 409, "order_not_cancellable")["details"] == {"state": "COMPLETED"}
    assert OutboxMessage.objects.count() == rows
    assert client.get(f"/api/orders/{order_id}").json()["status"] == "COMPLETED"


# Schema and docs.


@pytest.mark.django_db
def test_the_schema_is_an_openapi_3_document_of_every_endpoint(client):
    response = client.get("/api/schema?format=json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/products",
        "/api/products/{sku}",
        "/api/products/{sku}/restock",
        "/api/accounts",
        "/api/accounts/{customer_id}",
        "/api/orders",
        "/api/orders/{order_id}",
        "/api/orders/{order_id}/cancel",
        "/api/payments",
    } <= set(schema["paths"])


@pytest.mark.django_db
def test_the_schema_is_served_as_yaml_by_default(client):
    response = client.get("/api/schema")

    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


@pytest.mark.django_db
def test_the_docs_page_uses_only_local_assets(client):
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert not re.search(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", html, re.IGNORECASE), "a remote URL"
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert client.get(asset).status_code == 200, asset
    assert "/api/schema" in html


# Correlation.


@pytest.mark.django_db
def test_a_given_correlation_id_is_echoed_and_rides_on_the_messages_it_causes(client):
    sku = make_product().sku
    correlation = f"req-{uuid.uuid4().hex}"

    response = post_json(
        client,
        "/api/orders",
        {"customer_id": unique("c"), "items": [{"sku": sku, "quantity": 1}]},
        **{"X-Correlation-ID": correlation},
    )

    assert response.status_code == 201
    assert response["x-correlation-id"] == correlation
    assert set(
        OutboxMessage.objects.filter(order_id=response.json()["id"]).values_list("correlation_id", flat=True)
    ) == {correlation}


@pytest.mark.django_db
@pytest.mark.parametrize("given", [None, "", "has spaces in it", "x" * 129, "semi;colon"])
def test_a_missing_or_unusable_correlation_id_is_replaced_by_a_generated_one(client, given):
    headers = {} if given is None else {"X-Correlation-ID": given}

    response = client.get("/api/products", headers=headers)

    generated = response["x-correlation-id"]
    assert generated != given
    uuid.UUID(generated)


@pytest.mark.django_db
def test_error_answers_carry_the_correlation_id_too(client):
    response = client.get("/api/nope", headers={"X-Correlation-ID": "trace-404"})

    assert_error(response, 404)
    assert response["x-correlation-id"] == "trace-404"


def test_a_server_error_under_the_api_is_answered_in_json_and_elsewhere_by_django():
    handler = get_resolver().resolve_error_handler(500)

    api = handler(RequestFactory().get("/api/orders"))
    admin = handler(RequestFactory().get("/admin/"))

    assert api.status_code == 500
    assert json.loads(api.content)["code"] == "server_error"
    assert set(json.loads(api.content)) == {"code", "message", "details"}
    assert admin.status_code == 500
    assert admin["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.parametrize("shape", ["a/b", "a b", "with?query#hash", "ünïcode", "trailing/"])
def test_any_sku_or_customer_id_that_can_be_created_can_be_read_back(client, shape):
    sku, customer = f"{unique('SKU')}-{shape}", f"{unique('cust')}-{shape}"
    assert post_json(client, "/api/products", {"sku": sku, "name": "n", "price": "1.00", "stock": 1}).status_code == 201
    assert post_json(client, "/api/accounts", {"customer_id": customer, "balance": "1.00"}).status_code == 201

    product = client.get(f"/api/products/{quote(sku)}")
    restocked = post_json(client, f"/api/products/{quote(sku)}/restock", {"quantity": 2})
    account = client.get(f"/api/accounts/{quote(customer)}")

    assert (product.status_code, product.json()["sku"]) == (200, sku)
    assert (restocked.status_code, restocked.json()["on_hand"]) == (200, 3)
    assert (account.status_code, account.json()["customer_id"]) == (200, customer)
