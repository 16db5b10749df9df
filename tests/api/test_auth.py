"""Who may do what through the API (DESIGN §5, "Authentication"): bearer tokens, operator and customer roles,
per-token throttling of order creation, and the commands that issue and revoke tokens."""

from __future__ import annotations

import uuid

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from config.access.models import ApiToken, AuditEntry
from orders.models import Order
from tests.api.conftest import assert_error, post_json, writes_nothing
from tests.factories import UNKNOWN_ORDER, make_account, make_product, unique
from tests.integration.support import drain

pytestmark = pytest.mark.django_db

PROTECTED = [
    ("get", "/api/products"),
    ("post", "/api/products"),
    ("get", "/api/products/WIDGET-1"),
    ("post", "/api/products/WIDGET-1/restock"),
    ("post", "/api/accounts"),
    ("get", "/api/accounts/alice"),
    ("get", "/api/orders"),
    ("post", "/api/orders"),
    ("get", f"/api/orders/{UNKNOWN_ORDER}"),
    ("get", f"/api/orders/{UNKNOWN_ORDER}/wait"),
    ("post", f"/api/orders/{UNKNOWN_ORDER}/cancel"),
    ("get", "/api/payments"),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(client, method: str, path: str, **headers: str):
    if method == "post":
        return post_json(client, path, {}, **headers)
    return client.get(path, headers=headers)


@pytest.fixture
def anonymous(client):
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    return client


@pytest.fixture
def sku() -> str:
    return make_product(stock=100, price="1.00").sku


def place(client, body: dict, **headers: str):
    return post_json(client, "/api/orders", body, **headers)


# No token, or a bad one: 401.


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_api_path_without_a_token_answers_401_with_the_error_body_and_www_authenticate(anonymous, method, path):
    with writes_nothing():
        response = call(anonymous, method, path)

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sf_not-a-token-that-exists",
        "Bearer",
        "Bearer two parts",
        "bearer " + "x" * 5000,
        "Basic dXNlcjpwYXNz",
        "Bearer caf\u00e9",
    ],
    ids=["unknown", "no-token", "two-parts", "huge", "basic", "not-ascii"],
)
def test_a_bad_authorization_header_answers_401(anonymous, header):
    response = anonymous.get("/api/orders", HTTP_AUTHORIZATION=header)

    assert_error(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="sagaflow"'


def test_a_revoked_token_answers_401(anonymous, token_for):
    token = token_for("operator")
    assert anonymous.get("/api/products", headers=bearer(token)).status_code == 200

    call_command("revoke_api_token", token, by="tests")

    assert_error(anonymous.get("/api/products", headers=bearer(token)), 401, "authentication_failed")


def test_a_token_records_when_it_was_last_used(anonymous, token_for):
    token = token_for("operator")

    anonymous.get("/api/products", headers=bearer(token))

    assert ApiToken.objects.get(prefix=token[:10]).last_used_at is not None


@pytest.mark.parametrize("path", ["/api/schema", "/api/docs", "/health", "/health/live"])
def test_the_schema_the_docs_and_health_are_public_even_with_a_stale_token(anonymous, path):
    for headers in ({}, bearer("sf_revoked-or-never-issued")):
        response = anonymous.get(path, headers=headers)

        assert response.status_code not in (401, 403), (path, response.status_code)
        assert "WWW-Authenticate" not in response


def test_the_schema_declares_the_bearer_scheme_on_every_api_operation(anonymous):
    schema = anonymous.get("/api/schema", HTTP_ACCEPT="application/json").json()

    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    operations = [(path, method, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(operations) == len(PROTECTED)
    for path, method, operation in operations:
        assert operation["security"] == [{"bearerAuth": []}], (path, method)
        assert "401" in operation["responses"], (path, method)


def test_metrics_is_public_unless_metrics_token_required_and_then_needs_an_operator(anonymous, token_for, settings):
    assert anonymous.get("/metrics").status_code == 200

    settings.METRICS_TOKEN_REQUIRED = True

    assert_error(anonymous.get("/metrics"), 401, "not_authenticated")
    assert anonymous.get("/metrics")["WWW-Authenticate"] == 'Bearer realm="sagaflow"'
    assert_error(anonymous.get("/metrics", headers=bearer("sf_never-issued")), 401, "authentication_failed")
    assert_error(anonymous.get("/metrics", headers=bearer(token_for("customer", "alice"))), 403)
    assert anonymous.get("/metrics", headers=bearer(token_for("operator"))).status_code == 200


def test_a_post_to_an_unknown_api_path_is_a_json_404_even_where_csrf_is_enforced():
    strict = Client(enforce_csrf_checks=True)

    response = post_json(strict, "/api/orders/null,null/cancel", {})

    assert_error(response, 404, "not_found")


# Operators.


def test_an_operator_may_order_for_any_customer_and_must_say_for_whom(client, sku):
    customer = make_account().customer_id

    assert place(client, {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}).status_code == 201
    with writes_nothing():
        response = place(client, {"items": [{"sku": sku, "quantity": 1}]})

    assert set(assert_error(response, 400, "invalid_request")["details"]) == {"customer_id"}


# Customers.


def test_a_customer_places_orders_for_itself_with_or_without_naming_itself(client, token_for, sku):
    customer = make_account().customer_id
    token = token_for("customer", customer)

    unnamed = place(client, {"items": [{"sku": sku, "quantity": 1}]}, **bearer(token))
    named = place(client, {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}, **bearer(token))

    assert (unnamed.status_code, named.status_code) == (201, 201)
    assert unnamed.json()["customer_id"] == named.json()["customer_id"] == customer


def test_a_customer_may_not_order_for_another_customer(client, token_for, sku):
    token = token_for("customer", unique("alice"))

    with writes_nothing():
        response = place(
            client, {"customer_id": unique("bob"), "items": [{"sku": sku, "quantity": 1}]}, **bearer(token)
        )

    assert_error(response, 403, "customer_mismatch")


def test_another_customers_order_is_answered_as_a_missing_one(client, token_for, sku):
    mine, theirs = unique("alice"), unique("bob")
    token = token_for("customer", mine)
    my_order = place(client, {"customer_id": mine, "items": [{"sku": sku, "quantity": 1}]}).json()
    their_order = place(client, {"customer_id": theirs, "items": [{"sku": sku, "quantity": 1}]}).json()
    missing = str(uuid.uuid4())

    assert client.get(f"/api/orders/{my_order['id']}", headers=bearer(token)).json()["id"] == my_order["id"]
    for path in (f"/api/orders/{their_order['id']}", f"/api/orders/{missing}"):
        assert_error(client.get(path, headers=bearer(token)), 404, "order_not_found")
    with writes_nothing():
        response = post_json(client, f"/api/orders/{their_order['id']}/cancel", {}, **bearer(token))
    assert_error(response, 404, "order_not_found")
    assert Order.objects.get(id=their_order["id"]).status == "PENDING"


@pytest.mark.django_db(transaction=True)  # drain() delivers on fresh connections, outside a test transaction
def test_a_customer_cancels_its_own_order_and_the_audit_log_names_its_token(client, token_for, sku, inprocess):
    customer = make_account(balance="100.00").customer_id
    token = token_for("customer", customer)
    order = place(client, {"items": [{"sku": sku, "quantity": 1}]}, **bearer(token)).json()

    response = post_json(client, f"/api/orders/{order['id']}/cancel", {}, **bearer(token))
    drain()

    assert response.status_code == 202
    entry = AuditEntry.objects.get(action="order.cancel", target=f"order:{order['id']}")
    assert entry.actor.startswith("api-token:") and f"customer {customer}" in entry.actor


@pytest.mark.django_db(transaction=True)
def test_lists_show_a_customer_only_its_own_orders_and_payments(client, token_for, sku, inprocess):
    mine, theirs = make_account().customer_id, make_account().customer_id
    token = token_for("customer", mine)
    for customer in (mine, theirs):
        place(client, {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]})
    drain()

    orders = client.get("/api/orders?page_size=200", headers=bearer(token)).json()
    payments = client.get("/api/payments?page_size=200", headers=bearer(token)).json()
    asked_for_theirs = client.get(f"/api/orders?customer_id={theirs}", headers=bearer(token)).json()
    their_payments = client.get(f"/api/payments?customer_id={theirs}", headers=bearer(token)).json()

    assert {o["customer_id"] for o in orders["results"]} == {mine} and orders["count"] == 1
    assert {p["customer_id"] for p in payments["results"]} == {mine} and payments["count"] == 1
    assert asked_for_theirs["count"] == their_payments["count"] == 0
    assert client.get("/api/orders?page_size=200").json()["count"] >= 2  # the operator sees both


def test_a_customer_reads_its_own_account_and_another_is_answered_as_missing(client, token_for):
    mine, theirs = make_account(balance="12.00").customer_id, make_account().customer_id
    token = token_for("customer", mine)

    assert client.get(f"/api/accounts/{mine}", headers=bearer(token)).json() == {
        "customer_id": mine,
        "balance": "12.00",
    }
    theirs_body = assert_error(client.get(f"/api/accounts/{theirs}", headers=bearer(token)), 404)
    nobody_body = assert_error(client.get(f"/api/accounts/{unique('nobody')}", headers=bearer(token)), 404)
    assert theirs_body["code"] == nobody_body["code"] == "account_not_found"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/products", {"sku": "NEW-1", "name": "n", "price": "1.00", "stock": 1}),
        ("/api/products/{sku}/restock", {"quantity": 1}),
        ("/api/accounts", {"customer_id": "mallory", "balance": "1000000.00"}),
    ],
    ids=["create-product", "restock", "open-account"],
)
def test_a_customer_may_read_the_catalogue_but_not_change_it_nor_open_accounts(client, token_for, sku, path, body):
    token = token_for("customer", unique("alice"))

    assert client.get(f"/api/products/{sku}", headers=bearer(token)).status_code == 200
    assert client.get("/api/products", headers=bearer(token)).status_code == 200
    with writes_nothing():
        response = post_json(client, path.format(sku=sku), body, **bearer(token))

    assert_error(response, 403, "permission_denied")


def test_an_idempotency_key_belongs_to_one_customer(client, token_for, sku):
    key = unique("key")
    alice, bob = unique("alice"), unique("bob")
    first = place(
        client,
        {"items": [{"sku": sku, "quantity": 1}]},
        **bearer(token_for("customer", alice)),
        **{"Idempotency-Key": key},
    )

    second = place(
        client,
        {"items": [{"sku": sku, "quantity": 2}]},
        **bearer(token_for("customer", bob)),
        **{"Idempotency-Key": key},
    )

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["id"] != first.json()["id"] and second.json()["customer_id"] == bob


# Throttling.


def test_a_customer_token_placing_orders_too_fast_gets_429_with_retry_after(client, token_for, sku, settings):
    settings.API_CUSTOMER_ORDER_RATE = "2/min"
    token, other = token_for("customer", unique("alice")), token_for("customer", unique("bob"))
    body = {"items": [{"sku": sku, "quantity": 1}]}

    statuses = [place(client, body, **bearer(token)).status_code for _ in range(2)]
    with writes_nothing():
        throttled = place(client, body, **bearer(token))

    assert statuses == [201, 201]
    assert_error(throttled, 429, "throttled")
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert place(client, body, **bearer(other)).status_code == 201  # per token, not global
    assert client.get("/api/orders", headers=bearer(token)).status_code == 200  # reads are not throttled


def test_the_operator_rate_is_its_own_and_off_disables_it(client, token_for, sku, settings):
    settings.API_CUSTOMER_ORDER_RATE = "1/min"
    settings.API_OPERATOR_ORDER_RATE = "off"
    customer = unique("c")

    statuses = [
        place(client, {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}).status_code for _ in range(4)
    ]
    settings.API_OPERATOR_ORDER_RATE = "1/min"
    limited = [
        place(client, {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]}).status_code for _ in range(2)
    ]

    assert statuses == [201] * 4
    assert limited == [201, 429]


# Commands.


def test_create_api_token_prints_the_token_on_its_last_line_and_stores_only_its_hash(capsys, anonymous):
    call_command("create_api_token", "--role", "customer", "--customer-id", "alice", "--by", "ops")
    token = capsys.readouterr().out.strip().splitlines()[-1]

    record = ApiToken.objects.get(prefix=token[:10])
    assert (record.role, record.customer_id) == ("customer", "alice")
    assert token not in record.key_hash and len(record.key_hash) == 64
    assert anonymous.get("/api/accounts/alice", headers=bearer(token)).status_code == 404  # authenticated
    assert AuditEntry.objects.filter(action="api_token.create", actor="ops").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "customer"],
        ["--role", "operator", "--customer-id", "alice"],
        ["--role", "customer", "--customer-id", "x" * 65],
    ],
    ids=["customer-without-id", "operator-with-id", "id-too-long"],
)
def test_create_api_token_refuses_a_token_that_would_not_make_sense(args):
    with pytest.raises(CommandError):
        call_command("create_api_token", *args)

    assert not ApiToken.objects.exists()


def test_revoke_api_token_is_audited_and_refuses_an_unknown_token(token_for):
    token = token_for("operator")

    call_command("revoke_api_token", token, "--by", "ops")
    call_command("revoke_api_token", token, "--by", "ops")  # again: nothing more happens
    with pytest.raises(CommandError):
        call_command("revoke_api_token", "sf_never-issued")

    assert ApiToken.objects.get(prefix=token[:10]).revoked_at is not None
    assert AuditEntry.objects.filter(action="api_token.revoke", actor="ops").count() == 1
