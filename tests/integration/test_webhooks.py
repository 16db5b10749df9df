"""Webhooks on PostgreSQL, delivered by the in-process transport to a real HTTP server the test starts.

The saga's messages are driven by `drain(lane=MAIN)`; the webhook deliveries by the webhooks lane, as its own
thread would (`Lane.drain`), with the retry backoff of the settings (tests/webhook_receiver.py says what each
path of the receiver does).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection

from messaging import inprocess
from messaging.deadletters import dead_letter_replay
from messaging.inprocess import MAIN, Lane, pending
from messaging.models import DeadLetter, InboxMessage, OutboxMessage
from orders.models import Order, WebhookAttempt, WebhookEndpoint
from orders.webhooks import CONSUMER, DELIVER, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, event_id_of
from saga.services import saga_cancel
from tests.factories import make_account, make_product
from tests.integration.support import place
from tests.webhook_receiver import start_receiver, stop_receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inprocess")]

SECRET = "whsec-integration-0123456789"
TIMEOUT_S = 0.5
ALL_EVENTS = ["order.completed", "order.failed", "order.cancelled"]


@pytest.fixture(autouse=True)
def webhook_timing(settings):
    settings.WEBHOOK_TIMEOUT_S = TIMEOUT_S
    settings.MESSAGING_RETRY_BASE_S = 0.05
    settings.MESSAGING_MAX_ATTEMPTS = 3


@pytest.fixture
def receiver():
    server = start_receiver(SECRET, hang_s=TIMEOUT_S * 3, slow_s=0.2)
    yield server
    stop_receiver(server)


def endpoint(receiver, path: str, events=ALL_EVENTS, active: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(url=receiver.url + path, secret=SECRET, events=list(events), active=active)


def completed_order() -> str:
    order_id = place(make_account(balance="100.00").customer_id, (make_product(stock=5, price="10.00").sku, 1))
    inprocess.drain(lane=MAIN)
    assert Order.objects.get(id=order_id).status == "COMPLETED"
    return order_id


def deliver_webhooks(timeout: float = 20.0) -> None:
    """Run the webhooks lane until nothing is owed, waiting out each backoff as its thread would."""
    lane = Lane(CONSUMER)
    deadline = time.monotonic() + timeout
    while pending(CONSUMER).exists():
        assert time.monotonic() < deadline, "webhooks still owed"
        wait = lane.drain()
        if wait:
            time.sleep(wait)


def attempts(endpoint: WebhookEndpoint) -> list[tuple]:
    rows = WebhookAttempt.objects.filter(endpoint=endpoint).order_by("attempt")
    return list(rows.values_list("attempt", "status_code", "error", "succeeded"))


def test_an_ended_order_owes_one_delivery_to_each_active_endpoint_subscribed_in_the_transaction_that_ends_it(
    receiver,
):
    subscribed = endpoint(receiver, "/ok")
    endpoint(receiver, "/failed-only", events=["order.failed"])
    endpoint(receiver, "/inactive", active=False)

    order_id = completed_order()

    owed = list(OutboxMessage.objects.filter(routing_key=DELIVER))
    assert [row.payload["endpoint_id"] for row in owed] == [str(subscribed.pk)]
    assert owed[0].payload["event_id"] == event_id_of(order_id, "order.completed")
    assert "secret" not in json.dumps(owed[0].payload) and SECRET not in json.dumps(owed[0].payload)
    with connection.cursor() as cursor:
        # The same PostgreSQL transaction wrote the order's end and the delivery it owes.
        cursor.execute("SELECT xmin::text FROM orders_order WHERE id = %s", [order_id])
        ended_in = cursor.fetchone()[0]
        cursor.execute("SELECT xmin::text FROM messaging_outboxmessage WHERE id = %s", [owed[0].pk])
        assert cursor.fetchone()[0] == ended_in


def test_the_endpoint_gets_the_event_signed_with_its_id_and_a_resend_carries_the_same_id_and_body(receiver):
    ok = endpoint(receiver, "/ok")
    order_id = completed_order()

    deliver_webhooks()

    [request] = receiver.to("/ok")
    assert request.verified
    event = json.loads(request.body)
    order = Order.objects.get(id=order_id)
    assert event == {
        "id": event_id_of(order_id, "order.completed"),
        "type": "order.completed",
        "created_at": event["created_at"],
        "data": {
            "order": {
                "id": order_id,
                "status": "COMPLETED",
                "customer_id": order.customer_id,
                "total": "10.00",
                "currency": order.currency,
                "failure_reason": "",
                "failure_detail": "",
            }
        },
    }
    assert request.headers[EVENT_ID_HEADER.lower()] == event["id"]
    assert request.headers[SIGNATURE_HEADER.lower()].startswith(f"t={request.headers[TIMESTAMP_HEADER.lower()]},v1=")
    assert request.headers["content-type"] == "application/json"
    assert attempts(ok) == [(1, 204, "", True)]

    # A redelivery of the same message is skipped by the inbox: no second POST.
    row = OutboxMessage.objects.get(routing_key=DELIVER)
    OutboxMessage.objects.filter(pk=row.pk).update(published_at=None)
    deliver_webhooks()
    assert len(receiver.to("/ok")) == 1
    # As if a worker died between the answer and its inbox row: sent again, with the same id and body, and
    # the receiver that deduplicates on the id acts once.
    InboxMessage.objects.filter(consumer=CONSUMER).delete()
    OutboxMessage.objects.filter(pk=row.pk).update(published_at=None)
    deliver_webhooks()
    first, second = receiver.to("/ok")
    assert second.body == first.body and second.verified
    assert receiver.taken["/ok"] == [event["id"]] and receiver.duplicates["/ok"] == 1
    assert attempts(ok) == [(1, 204, "", True), (2, 204, "", True)]


def test_each_endpoint_gets_only_the_events_it_subscribed_to(receiver):
    completed = endpoint(receiver, "/completed", events=["order.completed"])
    failed = endpoint(receiver, "/failed", events=["order.failed"])
    cancelled = endpoint(receiver, "/cancelled", events=["order.cancelled"])
    sku = make_product(stock=5, price="10.00").sku
    completed_id = place(make_account(balance="100.00").customer_id, (sku, 1))
    failed_id = place(make_account(balance="1.00").customer_id, (sku, 1))  # insufficient funds
    cancelled_id = place(make_account(balance="100.00").customer_id, (sku, 1))
    saga_cancel(order_id=cancelled_id, by="tests")
    inprocess.drain(lane=MAIN)

    deliver_webhooks()

    def events(path: str) -> list[tuple[str, str, str]]:
        found = [json.loads(r.body) for r in receiver.to(path)]
        return [(e["type"], e["data"]["order"]["id"], e["data"]["order"]["failure_reason"]) for e in found]

    assert events("/completed") == [("order.completed", completed_id, "")]
    assert events("/failed") == [("order.failed", failed_id, "insufficient_funds")]
    assert events("/cancelled") == [("order.cancelled", cancelled_id, "cancelled")]
    for each in (completed, failed, cancelled):
        assert attempts(each) == [(1, 204, "", True)]


def test_an_endpoint_that_fails_twice_is_retried_with_backoff_and_the_same_event_id_until_it_takes_it(receiver):
    flaky = endpoint(receiver, "/flaky/2")
    order_id = completed_order()

    deliver_webhooks()

    requests = receiver.to("/flaky/2")
    assert [r.answered for r in requests] == [503, 503, 204]
    assert {r.headers[EVENT_ID_HEADER.lower()] for r in requests} == {event_id_of(order_id, "order.completed")}
    assert all(r.verified for r in requests)
    assert len({r.body for r in requests}) == 1
    # The backoff: 0.05 s after the first failure, twice that after the second.
    gaps = [later.at - earlier.at for earlier, later in zip(requests, requests[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps
    assert attempts(flaky) == [(1, 503, "HTTP 503", False), (2, 503, "HTTP 503", False), (3, 204, "", True)]
    assert not DeadLetter.objects.exists()


def test_an_endpoint_that_always_fails_ends_as_a_dead_letter_that_can_be_replayed_once_it_is_back(receiver):
    down = endpoint(receiver, "/down")
    order_id = completed_order()

    deliver_webhooks()

    assert attempts(down) == [(n, 500, "HTTP 500", False) for n in (1, 2, 3)]
    letter = DeadLetter.objects.get()
    assert (letter.queue, letter.routing_key, letter.reason, letter.attempts) == (
        CONSUMER,
        DELIVER,
        "retries_exhausted",
        3,
    )
    assert "HTTP 500" in letter.detail and SECRET not in letter.detail + letter.body + json.dumps(letter.headers)
    assert not pending(CONSUMER).exists()

    WebhookEndpoint.objects.filter(pk=down.pk).update(url=receiver.url + "/back")
    dead_letter_replay(letter=letter, by="tests")
    deliver_webhooks()

    [request] = receiver.to("/back")
    assert request.verified and json.loads(request.body)["id"] == event_id_of(order_id, "order.completed")
    assert attempts(down)[-1] == (4, 204, "", True)


def test_an_endpoint_that_does_not_answer_in_time_is_cut_off_at_the_timeout_and_retried(receiver):
    hanging = endpoint(receiver, "/timeout")
    completed_order()

    deliver_webhooks()

    rows = list(WebhookAttempt.objects.filter(endpoint=hanging).order_by("attempt"))
    assert [(a.attempt, a.status_code, a.succeeded) for a in rows] == [
        (1, None, False),
        (2, None, False),
        (3, None, False),
    ]
    for attempt in rows:
        assert attempt.error.startswith(f"timed out after {TIMEOUT_S:g}s"), attempt.error
        assert TIMEOUT_S * 1000 * 0.9 <= attempt.duration_ms < TIMEOUT_S * 1000 * 2.5, attempt.duration_ms
    assert len(receiver.to("/timeout")) == 3
    assert DeadLetter.objects.get().reason == "retries_exhausted"


def test_a_deactivated_or_deleted_endpoint_is_sent_nothing_more(receiver):
    paused, gone = endpoint(receiver, "/paused"), endpoint(receiver, "/gone")
    completed_order()
    WebhookEndpoint.objects.filter(pk=paused.pk).update(active=False)
    gone.delete()

    deliver_webhooks()

    assert receiver.to("/paused") == [] and receiver.to("/gone") == []
    assert not WebhookAttempt.objects.exists() and not DeadLetter.objects.exists()


def test_a_slow_endpoint_holds_up_no_order(receiver, settings):
    settings.WEBHOOK_TIMEOUT_S = 3.0
    receiver.slow_s = 1.0  # an answer, within the timeout
    endpoint(receiver, "/slow")
    endpoint(receiver, "/ok")
    stop = threading.Event()
    lane = threading.Thread(target=Lane(CONSUMER).run_forever, args=(stop,), daemon=True)
    lane.start()
    try:
        sku = make_product(stock=10, price="1.00").sku
        started = time.monotonic()
        orders = []
        for _ in range(4):
            orders.append(place(make_account(balance="10.00").customer_id, (sku, 1)))
            inprocess.drain(lane=MAIN)
            inprocess.wake()
        all_ended = time.monotonic() - started
        assert set(Order.objects.filter(id__in=orders).values_list("status", flat=True)) == {"COMPLETED"}
        # Four orders ended in less time than the slow endpoint takes to answer for two of them.
        assert all_ended < 2 * receiver.slow_s, all_ended
        assert len(receiver.taken.get("/slow", [])) <= 2

        deadline = time.monotonic() + 15
        while len(receiver.taken.get("/slow", [])) < 4 or len(receiver.taken.get("/ok", [])) < 4:
            assert time.monotonic() < deadline, receiver.taken
            time.sleep(0.05)
    finally:
        stop.set()
        lane.join(5)
    assert sorted(receiver.taken["/slow"]) == sorted(event_id_of(o, "order.completed") for o in orders)
    assert not receiver.duplicates and not DeadLetter.objects.exists()


def test_a_webhook_delivery_never_names_the_secret_in_the_logs(receiver, caplog):
    endpoint(receiver, "/flaky/1")
    completed_order()

    with caplog.at_level("DEBUG"):
        deliver_webhooks()

    assert "webhook order.completed" in caplog.text
    assert SECRET not in caplog.text


@pytest.fixture
def staff():
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("ops-webhooks", password="x" * 12))
    return client


def test_an_operator_registers_an_endpoint_in_the_admin_audited_with_its_secret_never_shown_back(staff):
    from config.access.models import AuditEntry

    form = {"url": "https://receiver.example/hooks", "description": "shop", "events": ["order.completed"]}
    refused = staff.post("/admin/orders/webhookendpoint/add/", {**form, "active": "on"})
    assert refused.status_code == 200 and "a new endpoint needs a secret" in refused.content.decode()

    added = staff.post("/admin/orders/webhookendpoint/add/", {**form, "active": "on", "secret": SECRET})
    assert added.status_code == 302, added.content.decode()[:2000]
    created = WebhookEndpoint.objects.get()
    assert (created.url, created.secret, created.events, created.active) == (
        form["url"],
        SECRET,
        ["order.completed"],
        True,
    )
    page = staff.get(f"/admin/orders/webhookendpoint/{created.pk}/change/").content.decode()
    assert SECRET not in page

    # Changed without a secret: the secret stays; the change is audited by field names only.
    changed = staff.post(
        f"/admin/orders/webhookendpoint/{created.pk}/change/", {**form, "events": ALL_EVENTS, "secret": ""}
    )
    assert changed.status_code == 302
    created.refresh_from_db()
    assert (created.secret, created.events, created.active) == (SECRET, ALL_EVENTS, False)
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "target", "details"))
    assert [(action, target) for action, target, _ in entries] == [
        ("webhook_endpoint.create", f"webhook_endpoint:{created.pk}"),
        ("webhook_endpoint.change", f"webhook_endpoint:{created.pk}"),
    ]
    assert "active" in entries[1][2]["changed"] and SECRET not in json.dumps(entries)


def test_every_attempt_shows_on_its_endpoint_and_on_the_list_of_attempts(receiver, staff):
    flaky = endpoint(receiver, "/flaky/1")
    order_id = completed_order()
    deliver_webhooks()

    page = staff.get(f"/admin/orders/webhookendpoint/{flaky.pk}/change/").content.decode()
    assert page.count(event_id_of(order_id, "order.completed")) == 2
    assert "HTTP 503" in page and SECRET not in page
    listing = staff.get(f"/admin/orders/webhookattempt/?endpoint__id__exact={flaky.pk}").content.decode()
    assert listing.count("HTTP 503") == 1 and "2 webhook attempts" in listing
    found = staff.get(f"/admin/orders/webhookattempt/?q={order_id}").content.decode()
    assert "2 webhook attempts" in found
