"""The database round trips of the hot path, pinned so that a change that adds some is seen."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import OutboxMessage
from payments.models import Account, ClosedOrder, LedgerEntry, Payment
from tests.api.conftest import post_json
from tests.factories import make_account, make_product
from tests.integration.support import deliver

pytestmark = pytest.mark.django_db(transaction=True)

# What each step costs today, as the database sees it (BEGIN, COMMIT and savepoints included). The first POST
# includes the token's lookup and its last_used_at, and the throttle's one statement; then BEGIN, the prices, one
# statement for the order, its lines, its saga, the saga's first step and both messages (sql.batched), COMMIT.
# Its answer is built from what was written, not read back. Each request looks its token up here: the tests'
# process keeps no tokens (tests/plugin.py; tests/api/test_recent_tokens.py counts them kept).
MAX_QUERIES = {
    "POST /api/orders": 7,
    # With a key: its lookup before, the bound on the wait for a request in flight with the same key, and its
    # first answer written in the order's transaction; not the token's last_used_at, touched by the first POST.
    # A replay is the throttle, the token and the key's lookup.
    "POST /api/orders with an Idempotency-Key": 9,
    "its replay": 3,
    # The status read: the token, then the order, its lines and its saga's timeline in one statement (PostgreSQL).
    "GET /api/orders/{id}": 2,
    # A handler's inserts, its outbox messages among them, go out in one statement (sql.batched in bus.dispatch);
    # the saga's update of itself and of the order join it.
    "payment.process": 8,
    "payment.processed": 5,
    # The goods leave on_hand as they are reserved: the reservation, its line, its stock movement and the answer
    # in one statement.
    "inventory.reserve": 7,
    # The saga's last step ends the order, and reads which webhook endpoints want to hear of it (here: a worker
    # keeps them, tests/integration/test_kept_endpoints.py). No consumer here hears order.completed: it is
    # published for anyone else who subscribes.
    "inventory.reserved": 6,
    "inventory.reservation_failed": 5,
    # The order's lock and its payment, then the order's closure, the balance given back, the ledger entry, the
    # payment's status and `payment.refunded` in one statement (13 statements before 2026-12-04, through the ORM
    # and a savepoint).
    "payment.refund": 6,
    # The saga's last step ends the order and reads the webhook endpoints, as on the way to COMPLETED.
    "payment.refunded": 6,
}


def test_each_step_of_a_saga_stays_within_its_query_budget(client, inprocess):
    sku = make_product(stock=10).sku
    customer = make_account(balance="100.00").customer_id
    counts = {}

    with CaptureQueriesContext(connection) as posted:
        response = post_json(client, "/api/orders", {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]})
    assert response.status_code == 201
    counts["POST /api/orders"] = len(posted)
    order_id = response.json()["id"]
    for step in ["POST /api/orders with an Idempotency-Key", "its replay"]:
        with CaptureQueriesContext(connection) as keyed:
            answer = post_json(
                client,
                "/api/orders",
                {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]},
                **{"Idempotency-Key": "pinned"},
            )
        assert answer.status_code == 201
        counts[step] = len(keyed)

    with CaptureQueriesContext(connection) as read:
        assert client.get(f"/api/orders/{order_id}").status_code == 200
    counts["GET /api/orders/{id}"] = len(read)

    counts.update(
        handled_counts(order_id, ["payment.process", "payment.processed", "inventory.reserve", "inventory.reserved"])
    )

    assert_within(counts, MAX_QUERIES)


def handled_counts(order_id: str, steps: list[str]) -> dict[str, int]:
    """The statements of each of `steps` (message types) of the order, delivered in turn."""
    counts = {}
    for step in steps:
        row = OutboxMessage.objects.get(order_id=order_id, routing_key=step)
        with CaptureQueriesContext(connection) as handled:
            deliver(row)
        counts[step] = len(handled) - 1  # less the test's own "mark published"
    return counts


def assert_within(counts: dict[str, int], budgets: dict[str, int]) -> None:
    assert counts
    for step, count in counts.items():
        assert count <= budgets[step], f"{step}: {count} queries, budget {budgets[step]}"


# The compensation path of an order the stock cannot serve, after its charge.
COMPENSATION_STEPS = ["inventory.reservation_failed", "payment.refund", "payment.refunded"]


def test_each_step_of_a_saga_compensation_stays_within_its_query_budget(client, inprocess):
    sku = make_product(stock=1).sku
    customer = make_account(balance="100.00").customer_id
    response = post_json(client, "/api/orders", {"customer_id": customer, "items": [{"sku": sku, "quantity": 2}]})
    assert response.status_code == 201
    order_id = response.json()["id"]
    for step in ["payment.process", "payment.processed", "inventory.reserve"]:
        deliver(OutboxMessage.objects.get(order_id=order_id, routing_key=step))

    counts = handled_counts(order_id, COMPENSATION_STEPS)

    # and the refund did all it does: the money back, one ledger entry, the order closed to later charges
    assert client.get(f"/api/orders/{order_id}").json()["status"] == "FAILED"
    assert Account.objects.get(customer_id=customer).balance == Decimal("100.00")
    kinds = LedgerEntry.objects.filter(payment__order_id=order_id).values_list("kind", flat=True)
    assert sorted(kinds) == [LedgerEntry.Kind.CAPTURE, LedgerEntry.Kind.REFUND]
    assert Payment.objects.get(order_id=order_id).status == Payment.Status.REFUNDED
    assert ClosedOrder.objects.filter(order_id=order_id).exists()
    assert_within(counts, MAX_QUERIES)
