"""The webhook endpoints a process keeps (orders/webhooks.py): the end of an order reads none once they are
known, and an endpoint added, changed or removed anywhere is owed, or no longer owed, from the database's notice
of it; a process whose listener cannot hear reads them at every end."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.kernel.postgresql.notices import TRUST_S
from messaging.models import OutboxMessage
from orders.models import Order, WebhookEndpoint
from orders.webhooks import DELIVER, endpoints_listener, kept_endpoints, webhooks_enqueue
from tests.integration.support import elsewhere, kept_while_heard
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NOTICE_WITHIN = TRUST_S + 2


@pytest.fixture
def kept(settings):
    """Endpoints kept as the product keeps them, with a listener that hears the database."""
    with kept_while_heard(endpoints_listener, settings, "WEBHOOK_ENDPOINTS_CACHE_S"):
        yield


def endpoint(events=("order.completed",), active: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", secret="s", events=list(events), active=active)


def end_an_order(status: str = Order.Status.COMPLETED) -> tuple[int, list[str]]:
    """How many deliveries the end of an order owes, and the statements it made."""
    with CaptureQueriesContext(connection) as made, transaction.atomic():
        owed = webhooks_enqueue(order_id=str(uuid.uuid4()), status=status, occurred_at=timezone.now())
    return owed, [q["sql"] for q in made]


def reads_endpoints(statements: list[str]) -> bool:
    return any("orders_webhookendpoint" in sql for sql in statements)


def owed_soon(expected: int) -> None:
    wait_for(lambda: end_an_order()[0] == expected, timeout=NOTICE_WITHIN, interval=0.05, message=f"{expected} owed")


def kept_soon(expected: int) -> None:
    """Once the notices of what the test changed have come, an end owes `expected` and reads no endpoints."""

    def kept_and_owed() -> bool:
        owed, statements = end_an_order()
        return owed == expected and not reads_endpoints(statements)

    wait_for(kept_and_owed, timeout=NOTICE_WITHIN, interval=0.05, message=f"{expected} owed, the endpoints kept")


def test_once_read_the_end_of_an_order_reads_no_endpoints_and_still_owes_each(kept):
    first, second = endpoint(), endpoint(events=["order.completed", "order.failed"])
    endpoint(events=["order.cancelled"])
    endpoint(active=False)

    kept_soon(2)
    OutboxMessage.objects.filter(routing_key=DELIVER).delete()
    owed, statements = end_an_order()

    assert owed == 2 and not reads_endpoints(statements), statements
    assert sorted(OutboxMessage.objects.filter(routing_key=DELIVER).values_list("payload__endpoint_id", flat=True)) == (
        sorted([str(first.pk), str(second.pk)])
    )
    assert end_an_order(Order.Status.FAILED)[0] == 1


@pytest.mark.parametrize(
    "change, owed_after",
    [
        (
            "INSERT INTO orders_webhookendpoint (id, url, secret, events, active, description, created_at, updated_at)"
            " VALUES (gen_random_uuid(), 'http://127.0.0.1:9/b', 's', '[\"order.completed\"]', true, '', now(), now())",
            2,
        ),
        ("UPDATE orders_webhookendpoint SET active = false", 0),
        ("UPDATE orders_webhookendpoint SET events = '[\"order.failed\"]'", 0),
        ("DELETE FROM orders_webhookendpoint", 0),
        ("TRUNCATE orders_webhookendpoint CASCADE", 0),
    ],
    ids=["added", "deactivated", "resubscribed", "deleted", "truncated"],
)
def test_an_endpoint_changed_by_sql_elsewhere_is_seen_at_the_notice(kept, change, owed_after):
    endpoint()
    kept_soon(1)

    elsewhere(change)

    owed_soon(owed_after)
    kept_soon(owed_after)


def test_while_the_listener_cannot_hear_every_end_reads_the_endpoints_and_then_keeps_them_again(kept):
    endpoint()
    kept_soon(1)
    cut = endpoints_listener.backend_pid

    elsewhere("SELECT pg_terminate_backend(%s)", cut)
    wait_for(lambda: not kept_endpoints.trusted(), timeout=NOTICE_WITHIN, message="the listener to notice the cut")
    ends = [end_an_order() for _ in range(3)]
    # A change while it does not listen: no notice reaches it, and it must not trust what it kept before.
    elsewhere("UPDATE orders_webhookendpoint SET active = false")

    assert all(owed == 1 and reads_endpoints(statements) for owed, statements in ends), ends
    wait_for(kept_endpoints.trusted, timeout=15, message="the listener to hear again")
    assert endpoints_listener.backend_pid not in (None, cut)
    assert end_an_order()[0] == 0


def test_with_webhook_endpoints_cache_s_0_every_end_reads_them(settings):
    endpoints_listener.stop()
    settings.WEBHOOK_ENDPOINTS_CACHE_S = 0
    endpoint()

    ends = [end_an_order() for _ in range(2)]

    assert all(owed == 1 and reads_endpoints(statements) for owed, statements in ends), ends
    assert endpoints_listener._thread is None
