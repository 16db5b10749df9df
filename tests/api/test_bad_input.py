"""Bad input never reaches the database and never makes a 500: each answer is a 4xx with the one error body,
{"code", "message", "details"} (DESIGN §5), and nothing is written."""

from __future__ import annotations

import json
import uuid

import pytest
from django.conf import settings

from tests.api.conftest import assert_error, post_json, writes_nothing
from tests.factories import UNKNOWN_ORDER, make_account, make_product, unique

pytestmark = pytest.mark.django_db


@pytest.fixture
def sku() -> str:
    return make_product(stock=10, price="10.00").sku


def order_body(customer_id, items) -> dict:
    return {"customer_id": customer_id, "items": items}


# Placing orders.


@pytest.mark.parametrize(
    "raw",
    [
        '{"customer_id": "c", "items": [',
        "{'customer_id': 'c'}",
        "not json at all",
        '{"customer_id": "c", "items": [{"sku": "x", "quantity": NaN}]}',
        b"\xff\xfe\x00garbage",
        "[" * 200_000,  # nested deeper than Python's decoder recurses
    ],
    ids=["truncated", "single-quotes", "prose", "nan", "not-utf8", "nested-too-deep"],
)
def test_a_body_that_is_not_json_is_a_400(client, raw):
    with writes_nothing():
        response = post_json(client, "/api/orders", raw)

    assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize("raw", ['[{"customer_id": "c", "items": []}]', '"an order"', "42", "null", "true"])
def test_a_body_that_is_not_a_json_object_is_a_400(client, raw):
    with writes_nothing():
        response = post_json(client, "/api/orders", raw)

    assert_error(response, 400, "invalid_request")


def test_a_body_that_is_not_sent_as_json_is_a_415(client, sku):
    with writes_nothing():
        response = client.post("/api/orders", {"customer_id": "c"})

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({}, {"customer_id", "items"}),
        ({"items": [{"sku": "S", "quantity": 1}]}, {"customer_id"}),
        ({"customer_id": "c"}, {"items"}),
    ],
)
def test_missing_fields_are_named_in_the_details(client, body, missing):
    with writes_nothing():
        response = post_json(client, "/api/orders", body)

    assert set(assert_error(response, 400, "invalid_request")["details"]) == missing


def test_a_line_without_quantity_is_refused(client, sku):
    with writes_nothing():
        response = post_json(client, "/api/orders", order_body("c", [{"sku": sku}]))

    assert "items" in assert_error(response, 400, "invalid_request")["details"]


@pytest.mark.parametrize(
    ("customer_id", "items", "field"),
    [
        (12345, [{"sku": "@SKU", "quantity": 1}], "customer_id"),
        (None, [{"sku": "@SKU", "quantity": 1}], "customer_id"),
        (["c"], [{"sku": "@SKU", "quantity": 1}], "customer_id"),
        ("", [{"sku": "@SKU", "quantity": 1}], "customer_id"),
        ("c" * 65, [{"sku": "@SKU", "quantity": 1}], "customer_id"),
        ("nul\u0000", [{"sku": "@SKU", "quantity": 1}], "customer_id"),
        ("lone\ud800", [{"sku": "@SKU", "quantity": 1}], "customer_id"),
        ("c", {"sku": "@SKU", "quantity": 1}, "items"),
        ("c", "@SKU", "items"),
        ("c", [], "items"),
        ("c", ["@SKU"], "items"),
        ("c", [{"sku": 7, "quantity": 1}], "items"),
        ("c", [{"sku": "@SKU", "quantity": "2"}], "items"),
        ("c", [{"sku": "@SKU", "quantity": True}], "items"),
        ("c", [{"sku": "@SKU", "quantity": None}], "items"),
        ("c", [{"sku": "@SKU", "quantity": 0}], "items"),
        ("c", [{"sku": "@SKU", "quantity": -1}], "items"),
        ("c", [{"sku": "@SKU", "quantity": 1.5}], "items"),
        ("c", [{"sku": "@SKU", "quantity": 2.0}], "items"),
        ("c", [{"sku": "@SKU", "quantity": 10**30}], "items"),
    ],
    ids=[
        "customer-number",
        "customer-null",
        "customer-list",
        "customer-empty",
        "customer-65-chars",
        "customer-nul",
        "customer-surrogate",
        "items-object",
        "items-string",
        "items-empty",
        "line-string",
        "sku-number",
        "quantity-string",
        "quantity-true",
        "quantity-null",
        "quantity-0",
        "quantity-minus-1",
        "quantity-1.5",
        "quantity-2.0",
        "quantity-huge",
    ],
)
def test_a_wrongly_typed_or_out_of_range_field_is_a_400_naming_it(client, sku, customer_id, items, field):
    items = json.loads(json.dumps(items).replace("@SKU", sku))

    with writes_nothing():
        response = post_json(client, "/api/orders", order_body(customer_id, items))

    assert field in assert_error(response, 400, "invalid_request")["details"]


def test_an_unknown_sku_is_a_422_naming_it(client, sku):
    missing = unique("NOPE")

    with writes_nothing():
        response = post_json(
            client, "/api/orders", order_body("c", [{"sku": sku, "quantity": 1}, {"sku": missing, "quantity": 1}])
        )

    assert assert_error(response, 422, "unknown_sku")["details"] == {"unknown_skus": [missing]}


def test_the_same_sku_twice_is_a_400(client, sku):
    with writes_nothing():
        response = post_json(
            client, "/api/orders", order_body("c", [{"sku": sku, "quantity": 1}, {"sku": sku, "quantity": 2}])
        )

    assert sku in json.dumps(assert_error(response, 400, "invalid_request")["details"]["items"])


@pytest.mark.parametrize("lines", [settings.MAX_ORDER_LINES + 1, 5000])
def test_more_than_100_lines_is_a_400(client, lines):
    items = [{"sku": f"S{n}", "quantity": 1} for n in range(lines)]

    with writes_nothing():
        response = post_json(client, "/api/orders", order_body("c", items))

    assert "items" in assert_error(response, 400, "invalid_request")["details"]


def test_exactly_100_lines_is_accepted(client):
    skus = [make_product(price="1.00").sku for _ in range(settings.MAX_ORDER_LINES)]

    response = post_json(client, "/api/orders", order_body(unique("cust"), [{"sku": s, "quantity": 1} for s in skus]))

    assert response.status_code == 201, response.content[:300]
    assert len(response.json()["items"]) == 100


def test_a_body_over_256_kib_is_a_413(client, sku):
    padding = "x" * (256 * 1024)

    with writes_nothing():
        response = post_json(
            client, "/api/orders", {"customer_id": "c", "items": [{"sku": sku, "quantity": 1}], "padding": padding}
        )

    body = assert_error(response, 413, "request_too_large")
    assert body["details"] == {"limit_bytes": 256 * 1024}


def test_a_body_just_under_256_kib_is_read(client, sku):
    body = json.dumps({"customer_id": unique("cust"), "items": [{"sku": sku, "quantity": 1}], "padding": ""})
    body = body.replace('"padding": ""', '"padding": "' + "x" * (256 * 1024 - len(body) - 1) + '"')
    assert len(body.encode()) < 256 * 1024

    response = post_json(client, "/api/orders", body)

    assert response.status_code == 201, response.content[:300]


def test_a_content_length_that_is_not_a_number_is_a_400(client):
    with writes_nothing():
        response = client.post("/api/orders", "{}", content_type="application/json", CONTENT_LENGTH="lots")

    assert_error(response, 400, "invalid_content_length")


def test_an_idempotency_key_longer_than_255_characters_is_a_400(client, sku):
    with writes_nothing():
        response = post_json(
            client, "/api/orders", order_body("c", [{"sku": sku, "quantity": 1}]), **{"Idempotency-Key": "k" * 256}
        )

    assert "Idempotency-Key" in assert_error(response, 400, "invalid_request")["details"]


def test_an_idempotency_key_holding_a_nul_is_a_400(client, sku):
    with writes_nothing():
        response = post_json(
            client, "/api/orders", order_body("c", [{"sku": sku, "quantity": 1}]), **{"Idempotency-Key": "key\x00"}
        )

    assert assert_error(response, 400, "invalid_request")["details"] == {
        "Idempotency-Key": ["Null characters are not allowed."]
    }


def test_an_idempotency_key_reused_with_another_body_is_a_409(client, sku):
    key = unique("key")
    first = post_json(client, "/api/orders", order_body("c", [{"sku": sku, "quantity": 1}]), **{"Idempotency-Key": key})
    assert first.status_code == 201

    with writes_nothing():
        response = post_json(
            client, "/api/orders", order_body("c", [{"sku": sku, "quantity": 2}]), **{"Idempotency-Key": key}
        )

    assert assert_error(response, 409, "idempotency_key_reused")["details"]["order_id"] == first.json()["id"]


def test_an_order_whose_total_does_not_fit_is_refused_not_a_500(client):
    expensive = make_product(price="9999999999.99").sku

    with writes_nothing():
        response = post_json(client, "/api/orders", order_body("c", [{"sku": expensive, "quantity": 1_000_000}]))

    assert_error(response, 422, "order_total_too_large")


# Reading and cancelling orders.


def test_an_order_that_does_not_exist_is_a_404(client):
    order_id = str(uuid.uuid4())

    response = client.get(f"/api/orders/{order_id}")

    assert assert_error(response, 404, "order_not_found")["details"] == {"order_id": order_id}


@pytest.mark.parametrize("order_id", ["42", "not-a-uuid", UNKNOWN_ORDER[:-1], UNKNOWN_ORDER + "0"])
def test_a_malformed_order_id_is_a_json_404(client, order_id):
    assert_error(client.get(f"/api/orders/{order_id}"), 404, "not_found")
    assert_error(client.post(f"/api/orders/{order_id}/cancel"), 404, "not_found")


def test_cancelling_an_order_that_does_not_exist_is_a_404(client):
    with writes_nothing():
        response = client.post(f"/api/orders/{uuid.uuid4()}/cancel")

    assert_error(response, 404, "order_not_found")


@pytest.mark.parametrize(
    "query", ["status=pending", "status=SHIPPED", "status=PENDING,FAILED", "customer_id=" + "c" * 65]
)
def test_an_order_list_filter_out_of_range_is_a_400(client, query):
    body = assert_error(client.get(f"/api/orders?{query}"), 400, "invalid_request")

    assert set(body["details"]) <= {"status", "customer_id"} and body["details"]


@pytest.mark.parametrize("query", ["order_id=42", "order_id=not-a-uuid", "customer_id=" + "c" * 65])
def test_a_payment_list_filter_out_of_range_is_a_400(client, query):
    assert_error(client.get(f"/api/payments?{query}"), 400, "invalid_request")


@pytest.mark.parametrize("query", ["page=0", "page=abc", "page=999"])
def test_a_page_that_does_not_exist_is_a_json_404(client, query):
    assert_error(client.get(f"/api/orders?{query}"), 404, "not_found")


# Paths and methods.


@pytest.mark.parametrize(
    "path",
    [
        "/api",
        "/api/",
        "/api/nope",
        "/api/orders/",
        "/api/products/",
        "/api/v2/orders",
        f"/api/orders/{UNKNOWN_ORDER}/refund",
        "/api/payments/42",
    ],
)
def test_an_unknown_api_path_is_a_json_404(client, path):
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/orders"),
        ("put", "/api/orders"),
        ("patch", "/api/products"),
        ("delete", f"/api/orders/{UNKNOWN_ORDER}"),
        ("get", f"/api/orders/{UNKNOWN_ORDER}/cancel"),
        ("post", "/api/products/SKU-1"),
        ("get", "/api/products/SKU-1/restock"),
        ("get", "/api/accounts"),
        ("delete", "/api/accounts/cust-1"),
        ("post", "/api/payments"),
        ("post", "/api/schema"),
        ("delete", "/api/schema"),
        ("post", "/api/docs"),
    ],
)
def test_a_wrong_method_is_a_json_405(client, method, path):
    with writes_nothing():
        response = getattr(client, method)(path)

    assert_error(response, 405, "method_not_allowed")
    assert method.upper() not in response["Allow"]


# Products and accounts.


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "n", "price": "1.00", "stock": 1}, "sku"),
        ({"sku": 12, "name": "n", "price": "1.00", "stock": 1}, "sku"),
        ({"sku": "s" * 65, "name": "n", "price": "1.00", "stock": 1}, "sku"),
        ({"sku": "@SKU", "price": "1.00", "stock": 1}, "name"),
        ({"sku": "@SKU", "name": "", "price": "1.00", "stock": 1}, "name"),
        ({"sku": "@SKU", "name": "n" * 201, "price": "1.00", "stock": 1}, "name"),
        ({"sku": "@SKU", "name": "n", "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": "-0.01", "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": "1.001", "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": "ten", "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": "NaN", "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": "Infinity", "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": True, "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": 1.5, "stock": 1}, "price"),  # money is a decimal string
        ({"sku": "@SKU", "name": "n", "price": 2, "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": "1e400", "stock": 1}, "price"),
        ({"sku": "@SKU", "name": "n", "price": "1.00"}, "stock"),
        ({"sku": "@SKU", "name": "n", "price": "1.00", "stock": -1}, "stock"),
        ({"sku": "@SKU", "name": "n", "price": "1.00", "stock": "5"}, "stock"),
        ({"sku": "@SKU", "name": "n", "price": "1.00", "stock": 2.5}, "stock"),
        ({"sku": "@SKU", "name": "n", "price": "1.00", "stock": False}, "stock"),
        ({"sku": "@SKU", "name": "n", "price": "1.00", "stock": 10**10}, "stock"),
    ],
)
def test_creating_a_product_with_bad_input_is_a_400_naming_the_field(client, body, field):
    body = json.loads(json.dumps(body).replace("@SKU", unique("SKU")))

    with writes_nothing():
        response = post_json(client, "/api/products", body)

    assert field in assert_error(response, 400, "invalid_request")["details"]


def test_creating_a_product_with_a_taken_sku_is_a_409(client, sku):
    with writes_nothing():
        response = post_json(client, "/api/products", {"sku": sku, "name": "again", "price": "1.00", "stock": 1})

    assert assert_error(response, 409, "product_exists")["details"] == {"sku": sku}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"quantity": 0},
        {"quantity": -3},
        {"quantity": "3"},
        {"quantity": 1.5},
        {"quantity": True},
        {"quantity": 10**10},
    ],
)
def test_restocking_with_bad_input_is_a_400(client, sku, body):
    with writes_nothing():
        response = post_json(client, f"/api/products/{sku}/restock", body)

    assert "quantity" in assert_error(response, 400, "invalid_request")["details"]


def test_restocking_an_unknown_product_is_a_404(client):
    with writes_nothing():
        response = post_json(client, f"/api/products/{unique('NOPE')}/restock", {"quantity": 1})

    assert_error(response, 404, "product_not_found")


def test_restocking_beyond_what_the_stock_column_holds_is_refused_not_a_500(client):
    sku = make_product(stock=1_000_000_000).sku
    assert post_json(client, f"/api/products/{sku}/restock", {"quantity": 1_000_000_000}).status_code == 200

    response = post_json(client, f"/api/products/{sku}/restock", {"quantity": 1_000_000_000})

    assert_error(response, 409, "stock_limit_exceeded")


def test_an_unknown_product_is_a_404(client):
    assert_error(client.get(f"/api/products/{unique('NOPE')}"), 404, "product_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"balance": "10.00"}, "customer_id"),
        ({"customer_id": 7, "balance": "10.00"}, "customer_id"),
        ({"customer_id": "", "balance": "10.00"}, "customer_id"),
        ({"customer_id": "c" * 65, "balance": "10.00"}, "customer_id"),
        ({"customer_id": "@CUST"}, "balance"),
        ({"customer_id": "@CUST", "balance": "-1.00"}, "balance"),
        ({"customer_id": "@CUST", "balance": "1.005"}, "balance"),
        ({"customer_id": "@CUST", "balance": "plenty"}, "balance"),
        ({"customer_id": "@CUST", "balance": True}, "balance"),
        ({"customer_id": "@CUST", "balance": 100}, "balance"),
        ({"customer_id": "@CUST", "balance": "1e20"}, "balance"),
    ],
)
def test_creating_an_account_with_bad_input_is_a_400_naming_the_field(client, body, field):
    body = json.loads(json.dumps(body).replace("@CUST", unique("cust")))

    with writes_nothing():
        response = post_json(client, "/api/accounts", body)

    assert field in assert_error(response, 400, "invalid_request")["details"]


def test_creating_an_account_that_exists_is_a_409(client):
    customer = make_account().customer_id

    with writes_nothing():
        response = post_json(client, "/api/accounts", {"customer_id": customer, "balance": "5.00"})

    assert assert_error(response, 409, "account_exists")["details"] == {"customer_id": customer}


def test_an_unknown_account_is_a_404(client):
    customer = unique("unknown")

    response = client.get(f"/api/accounts/{customer}")

    assert assert_error(response, 404, "account_not_found")["details"] == {"customer_id": customer}
