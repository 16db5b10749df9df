"""The lean paths of the API's most frequent requests give what the serializers that the schema describes give:
the status read and the POST's answer byte for byte, the POST's input as the input serializer validates it.
(The tokens a process keeps: tests/api/test_recent_tokens.py.)"""

from __future__ import annotations

import pytest
from rest_framework import serializers

from config.kernel.api import json_text, validated
from orders.api import OrderCreateInputSerializer, OrderDetailOutputSerializer, order_input
from orders.selectors import order_get
from tests.api.conftest import assert_error, post_json
from tests.factories import make_account, make_product
from tests.integration.support import drain, place

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def anonymous(client):
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    return client


def by_the_serializer(order_id: str) -> bytes:
    """The answer as OrderDetailOutputSerializer, which the schema describes, renders the order now."""
    return json_text(OrderDetailOutputSerializer(order_get(order_id=order_id)).data).encode()


def test_the_status_read_is_what_the_schemas_serializer_gives_for_every_outcome(client, inprocess):
    product, other = make_product(stock=5, price="2.50"), make_product(stock=100, price="0.99")
    rich = make_account(balance="100.00").customer_id
    completed = place(rich, (product.sku, 2), (other.sku, 3))  # two lines, in the order they were given
    declined = place(make_account(balance="1.00").customer_id, (product.sku, 1))
    out_of_stock = place(rich, (product.sku, 4))
    drain()
    pending = place(rich, (other.sku, 1))

    for order_id in (completed, declined, out_of_stock, pending):
        response = client.get(f"/api/orders/{order_id}")
        assert response.status_code == 200
        assert response.content == by_the_serializer(order_id)
    assert {client.get(f"/api/orders/{o}").json()["status"] for o in (completed, declined, pending)} == {
        "COMPLETED",
        "FAILED",
        "PENDING",
    }
    assert client.get(f"/api/orders/{declined}").json()["failure_reason"] == "insufficient_funds"


def test_the_status_read_has_a_responses_headers_and_indents_when_the_accept_header_asks(client, inprocess):
    order_id = place(make_account(balance="100.00").customer_id, (make_product(stock=5).sku, 1))

    plain = client.get(f"/api/orders/{order_id}")
    indented = client.get(f"/api/orders/{order_id}", HTTP_ACCEPT="application/json; indent=2")

    assert plain["Content-Type"] == "application/json"
    assert plain["Allow"] == "GET, HEAD, OPTIONS"
    assert indented.content.startswith(b'{\n  "id": ') and indented.json() == plain.json()
    assert client.get(f"/api/orders/{order_id}", HTTP_ACCEPT="text/html").status_code == 406


def test_the_posts_answer_is_what_the_schemas_serializer_gives_for_the_order_just_placed(client, inprocess):
    sku = make_product(stock=5, price="3.10").sku
    customer = make_account(balance="100.00").customer_id

    response = post_json(client, "/api/orders", {"customer_id": customer, "items": [{"sku": sku, "quantity": 2}]})
    keyed = post_json(
        client,
        "/api/orders",
        {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]},
        **{"Idempotency-Key": "k"},
    )

    for answer in (response, keyed):
        assert answer.status_code == 201
        assert answer.content == by_the_serializer(answer.json()["id"])


def test_an_order_of_another_customer_or_none_is_a_404_for_a_customer_token(client, token_for, inprocess):
    sku = make_product(stock=5).sku
    alices = place(make_account(balance="100.00", customer_id="alice").customer_id, (sku, 1))
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token_for('customer', 'bob')}"

    assert_error(client.get(f"/api/orders/{alices}"), 404, "order_not_found")
    assert_error(client.get("/api/orders/6f1c1b9e-0000-4000-8000-000000000000"), 404, "order_not_found")


LINE = {"sku": "SKU-1", "quantity": 1}


@pytest.mark.parametrize(
    "body, customer_required",
    [
        ({"customer_id": "c-1", "items": [LINE]}, True),
        ({"customer_id": "c-1", "items": [LINE, {"sku": "SKU-2", "quantity": 1_000_000}]}, True),
        ({"customer_id": "c-1", "items": [{**LINE, "note": "ignored"}], "extra": 1}, True),
        ({"items": [LINE]}, False),
        ({"customer_id": "c-1", "items": [LINE]}, False),
        # Each of these is refused, or taken only by the serializer: the answer must be the serializer's.
        ({"items": [LINE]}, True),
        ({"customer_id": None, "items": [LINE]}, False),
        ({"customer_id": "", "items": [LINE]}, True),
        ({"customer_id": "x" * 65, "items": [LINE]}, True),
        ({"customer_id": "c\x00", "items": [LINE]}, True),
        ({"customer_id": "clé", "items": [{"sku": "bière", "quantity": 1}]}, True),
        ({"customer_id": 7, "items": [LINE]}, True),
        ({"customer_id": "c-1", "items": []}, True),
        ({"customer_id": "c-1", "items": [LINE] * 2}, True),
        ({"customer_id": "c-1", "items": [{"sku": f"S{n}", "quantity": 1} for n in range(101)]}, True),
        ({"customer_id": "c-1", "items": [{"sku": "SKU-1", "quantity": True}]}, True),
        ({"customer_id": "c-1", "items": [{"sku": "SKU-1", "quantity": 0}]}, True),
        ({"customer_id": "c-1", "items": [{"sku": "SKU-1", "quantity": 1_000_001}]}, True),
        ({"customer_id": "c-1", "items": [{"sku": "SKU-1", "quantity": "1"}]}, True),
        ({"customer_id": "c-1", "items": [{"sku": "SKU-1"}]}, True),
        ({"customer_id": "c-1", "items": ["SKU-1"]}, True),
        ({"customer_id": "c-1", "items": {"sku": "SKU-1"}}, True),
        ([{"customer_id": "c-1"}], True),
    ],
)
def test_the_posts_input_is_what_the_input_serializer_validates(body, customer_required):
    def outcome(validate):
        try:
            return "taken", validate()
        except serializers.ValidationError as refused:
            return "refused", refused.detail

    taken = outcome(lambda: order_input(body, customer_required=customer_required))
    by_serializer = outcome(lambda: validated(OrderCreateInputSerializer, body, customer_required=customer_required))

    assert taken[0] == by_serializer[0]
    assert taken[1] == (dict(by_serializer[1]) if by_serializer[0] == "taken" else by_serializer[1])
    if taken[0] == "taken":
        assert [dict(line) for line in taken[1]["items"]] == [dict(line) for line in by_serializer[1]["items"]]
