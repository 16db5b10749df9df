"""Hostile input: the limits hold (bodies, order lines, strings, page sizes, odd paths), and an invalid message
is dead-lettered by the consumer, naming its field, before any handler runs.

Most field-by-field refusals are in tests/api/test_bad_input.py (lines over 100, strings over 64 or 200
characters, an Idempotency-Key over 255, a 256 KiB body by Content-Length); these add what they do not cover.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from config.access.services import api_token_create
from messaging.consumers import handle_delivery, store_dead_letter
from messaging.models import DeadLetter, InboxMessage
from orders.models import Order
from tests.api.conftest import assert_error, post_json, writes_nothing
from tests.factories import make_account, make_product, unique

# Pagination.


@pytest.mark.django_db
def test_a_page_holds_at_most_200_whatever_page_size_asks_and_a_bad_size_falls_back_to_50(client):
    for _ in range(201):
        make_product()

    def size(query: str) -> int:
        return len(client.get(f"/api/products?{query}").json()["results"])

    assert size("page_size=100000") == size("page_size=201") == 200
    assert size("page_size=0") == size("page_size=-5") == size("page_size=abc") == size("") == 50
    assert_error(client.get("/api/products?page=abc"), 404, "not_found")
    assert_error(client.get("/api/products?page=1000000"), 404, "not_found")


# Paths.


@pytest.mark.django_db
@pytest.mark.parametrize("odd", ["line\nbreak", "tab\there", "trailing\n", "%FF%FE", "\u202eright-to-left"])
def test_an_identifier_with_control_or_odd_characters_can_be_created_and_read_back(client, odd):
    customer = f"{unique('c')}-{odd}"
    assert post_json(client, "/api/accounts", {"customer_id": customer, "balance": "1.00"}).status_code == 201

    response = client.get("/api/accounts/" + customer.replace("%", "%25").replace("\n", "%0A").replace("\t", "%09"))

    assert response.status_code == 200, response.content[:300]
    assert response.json()["customer_id"] == customer


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/orders/%0A/cancel", "/api/orders/not-a-uuid", "/api/nothing\n", "/api/orders/" + "9" * 5000]
)
def test_an_unknown_api_path_is_a_json_404_whatever_it_holds(client, path):
    assert_error(post_json(client, path, {}), 404, "not_found")
    assert_error(client.get(path), 404, "not_found")


# NUL characters, which PostgreSQL's text cannot hold.

NUL_IN_A_PATH = [
    ("get", "/api/products/%00"),
    ("get", "/api/products/a%00b"),
    ("post", "/api/products/%00/restock"),
    ("get", "/api/accounts/%00"),
    ("get", "/api/orders/%00"),
    ("post", "/api/orders/%00/cancel"),
]
NUL_IN_A_QUERY = [
    ("/api/orders?status=%00", "status"),
    ("/api/orders?customer_id=%00", "customer_id"),
    ("/api/orders?page=%00", "page"),
    ("/api/products?page=%00", "page"),
    ("/api/products?page_size=a%00", "page_size"),
    ("/api/payments?order_id=%00", "order_id"),
    ("/api/payments?customer_id=%00", "customer_id"),
    ("/api/products/x?%00=1", "\x00"),
    ("/api/orders?status=PENDING&customer_id=c%00&page=1", "customer_id"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", NUL_IN_A_PATH)
def test_a_nul_in_a_path_is_a_json_404_on_every_route_with_a_path_parameter(client, method, path):
    make_product(sku="a")  # a prefix of the path, so that only the NUL makes it unknown

    with writes_nothing():
        response = client.post(path, {"quantity": 1}, "application/json") if method == "post" else client.get(path)

    assert_error(response, 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("path, parameter", NUL_IN_A_QUERY)
def test_a_nul_in_the_query_string_is_a_json_400_naming_the_parameter(client, path, parameter):
    body = assert_error(client.get(path), 400, "invalid_request")

    assert body["details"] == {parameter: ["Null characters are not allowed."]}


@pytest.mark.django_db
def test_every_other_control_character_in_a_path_or_a_query_is_a_value_like_any_other(client):
    customer = unique("c") + "\x01\x1f\x7f"
    make_account(customer_id=customer)
    for code in [*range(1, 32), 127]:
        escaped = f"%{code:02X}"
        for path in [
            f"/api/products/{escaped}",
            f"/api/accounts/{escaped}",
            f"/api/orders/{escaped}",
            f"/api/orders?customer_id={escaped}",
            f"/api/orders?status={escaped}",
            f"/api/orders?page={escaped}",
            f"/api/payments?customer_id={escaped}",
            f"/api/products?page_size={escaped}",
        ]:
            response = client.get(path)
            assert response.status_code in (200, 400, 404), (path, response.status_code, response.content[:300])
            assert response["Content-Type"].startswith("application/json"), path
    # and an identifier holding some is still found by them
    found = client.get("/api/accounts/" + customer.replace("\x01", "%01").replace("\x1f", "%1F").replace("\x7f", "%7F"))
    assert found.status_code == 200 and found.json()["customer_id"] == customer


ADMIN_NUL_PATHS = [
    "/admin/inventory/product/%00/change/",
    "/admin/inventory/product/%00/history/",
    "/admin/inventory/product/%00/delete/",
    "/admin/payments/account/%00/change/",
    "/admin/orders/order/%00/change/",
    "/admin/config/apitoken/%00/change/",
]
ADMIN_NUL_QUERIES = [
    "/admin/orders/order/?status=%00",
    "/admin/orders/order/?status__exact=%00",
    "/admin/orders/order/?customer_id=%00",
    "/admin/inventory/product/?q=%00",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ADMIN_NUL_PATHS + ADMIN_NUL_QUERIES)
def test_a_nul_in_an_admin_url_is_a_4xx_page_for_staff(admin_client, path):
    response = admin_client.get(path)

    assert response.status_code == (404 if path in ADMIN_NUL_PATHS else 400), response.content[:300]


@pytest.mark.django_db(transaction=True)
def test_a_nul_through_a_real_http_server_is_a_json_4xx(live_server):
    token = api_token_create(role="operator", by="tests").token

    with httpx.Client(base_url=live_server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as api:
        in_a_path = api.get("/api/products/%00")
        in_a_query = api.get("/api/orders?customer_id=%00")

    assert in_a_path.status_code == 404 and in_a_path.json()["code"] == "not_found"
    assert in_a_query.status_code == 400 and in_a_query.json()["code"] == "invalid_request"


# Bodies without a Content-Length.


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_of_a_megabyte_writes_nothing_and_is_never_a_5xx(live_server):
    token = api_token_create(role="operator", by="tests").token
    chunk = json.dumps({"customer_id": "c", "items": [{"sku": "x", "quantity": 1}] * 2000}).encode()

    def body():
        yield from (chunk for _ in range(1024 * 1024 // len(chunk) + 1))

    with httpx.Client(base_url=live_server.url, timeout=30) as api:
        response = api.post(
            "/api/orders",
            content=body(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )

    assert 400 <= response.status_code < 500, response.text[:300]
    assert set(response.json()) == {"code", "message", "details"}
    assert not Order.objects.exists()


# Messages.


def deliver(consumer: str, routing_key: str, payload: object):
    message_id = str(uuid.uuid4())
    verdict = handle_delivery(
        consumer,
        json.dumps(payload).encode(),
        {"message_id": message_id, "type": routing_key, "correlation_id": "c-1"},
        {"version": 1},
        routing_key,
    )
    return message_id, verdict


@pytest.mark.django_db(transaction=True)  # the consumer opens its own transactions, as in a worker
@pytest.mark.parametrize(
    ("consumer", "routing_key", "payload", "field"),
    [
        (
            "saga",
            "payment.processed",
            {"order_id": "not-a-uuid", "payment_id": str(uuid.uuid4()), "amount": "1.00"},
            "order_id",
        ),
        ("saga", "payment.processed", {"order_id": str(uuid.uuid4()), "amount": "1.00"}, "payment_id"),
        (
            "payments",
            "payment.process",
            {"order_id": str(uuid.uuid4()), "customer_id": "c", "amount": "lots", "currency": "EUR"},
            "amount",
        ),
        ("inventory", "inventory.reserve", {"order_id": str(uuid.uuid4()), "items": "everything"}, "items"),
    ],
    ids=["bad-uuid", "missing-field", "bad-amount", "items-not-a-list"],
)
def test_an_invalid_message_is_dead_lettered_by_the_consumer_naming_the_field(consumer, routing_key, payload, field):
    message_id, verdict = deliver(consumer, routing_key, payload)
    store_dead_letter(verdict)

    assert verdict.action == "dead_letter"
    letter = DeadLetter.objects.get(message_id=message_id)
    assert (letter.reason, letter.queue, letter.routing_key) == ("invalid_payload", consumer, routing_key)
    assert letter.detail.startswith(f"{field}:"), letter.detail
    assert not InboxMessage.objects.filter(message_id=message_id).exists()  # no handler ran


@pytest.mark.django_db(transaction=True)
def test_a_valid_message_of_the_same_kind_is_handled(settings):
    account = make_account(balance="5.00")
    order_id = str(uuid.uuid4())

    _, verdict = deliver(
        "payments",
        "payment.process",
        {"order_id": order_id, "customer_id": account.customer_id, "amount": "1.00", "currency": "EUR"},
    )

    assert verdict.action == "ack"
