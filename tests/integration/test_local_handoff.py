"""The local hand-off (MESSAGING_LOCAL_HANDOFF, messaging/handoff.py) on real PostgreSQL and RabbitMQ: one
delivery runs the saga to its end on its consumer thread; the relay hands the API's payment.process to this
worker's consumers instead of publishing it; a leased row is neither announced nor claimed by a relay until its
lease ends; a handler that fails gives its rows to the relay at once, to go through the broker; a row a relay
published or holds is never handed off as well. The deliveries are those of
tests/integration/test_consumer_batches.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, transaction
from django.utils import timezone
from kombu import Queue

from messaging import bus, handoff, queries, topology
from messaging.broker import connected
from messaging.models import InboxMessage, OutboxMessage
from messaging.outbox import publish
from messaging.relay import HANDED_OFF_HEADER, ConfirmingPublisher, Tap, _Listener, relay_once
from payments.models import LedgerEntry
from tests.factories import make_account, make_product
from tests.integration.support import balance, in_another_transaction, order_of, outbox, saga_of, stock
from tests.integration.test_admin import staff  # noqa: F401 - a fixture: a client logged in as a superuser
from tests.integration.test_consumer_batches import delivery_of, sample, settle
from tests.integration.test_outbox_and_inbox import awaiting_payment
from tests.integration.test_tracing import order_placed_over_http, outbox_of
from tests.traces import as_dicts, assert_one_trace_following_causation, consumers_in, traced

pytestmark = pytest.mark.django_db(transaction=True)

REPLIES = ["payment.processed", "inventory.reserve", "inventory.reserved"]


@pytest.fixture
def handing_off(settings):
    settings.MESSAGING_LOCAL_HANDOFF = True


def handed_off(routing_key: str) -> float:
    return sample("sagaflow_messages_handed_off_total", message_type=routing_key)


def claimed(ids: list[int] | None = None) -> list[int]:
    with transaction.atomic():
        return [row.pk for row in queries.outbox_claim(200, ids)]


def leased_reply(order_id: str, envelope) -> OutboxMessage:
    """Payments applies the order's payment.process with the hand-off collecting: its payment.processed is
    committed, leased, and not handed over."""
    with handoff.collecting() as collector, transaction.atomic():
        bus.dispatch("payments", envelope)
    assert collector is not None and [row.routing_key for row in collector.rows] == ["payment.processed"]
    return outbox(order_id, "payment.processed")[0]


def test_one_delivery_runs_the_saga_to_its_end_on_the_consumer_thread(handing_off, staff):  # noqa: F811
    order_id, customer, _ = awaiting_payment()
    sku = order_of(order_id).lines.get().sku
    before = {key: handed_off(key) for key in REPLIES}
    delivery = delivery_of(outbox(order_id, "payment.process")[0])

    assert settle("payments", delivery) == 0

    assert delivery.acked == [True]
    assert saga_of(order_id).state == "COMPLETED"
    assert balance(customer) == Decimal("80.00")
    assert LedgerEntry.objects.filter(payment__order_id=order_id, kind="CAPTURE").count() == 1
    assert stock(sku)[0] == 9
    rows = {row.routing_key: row for row in outbox(order_id)}
    for key in REPLIES:
        assert rows[key].handed_off and rows[key].published_at is not None, key
        assert handed_off(key) == before[key] + 1
    # the order's placing came by the broker here (as from a relay of a worker without payments): unleased
    assert not rows["payment.process"].handed_off and rows["payment.process"].handoff_until is None
    # and the operations console says which way each row went
    handed = staff.get(f"/admin/messaging/outboxmessage/?handed_off__exact=1&q={order_id}").content.decode()
    assert handed.count("handed off</td>") == len(REPLIES)
    every = staff.get(f"/admin/messaging/outboxmessage/?q={order_id}").content.decode()
    assert every.count("handed off</td>") == len(REPLIES) and every.count("broker</td>") == len(rows) - len(REPLIES)


def test_with_the_hand_off_off_every_row_is_the_relays(settings):
    assert settings.MESSAGING_LOCAL_HANDOFF is False  # the default
    order_id, _, _ = awaiting_payment()

    settle("payments", delivery_of(outbox(order_id, "payment.process")[0]))

    reply = outbox(order_id, "payment.processed")[0]
    assert reply.published_at is None and reply.handoff_until is None
    assert saga_of(order_id).state == "PAYMENT_PENDING"
    assert claimed([reply.pk]) == [reply.pk]
    with transaction.atomic():
        claim = queries.outbox_claim(10, [reply.pk])
        assert handoff.for_relay(claim) == ([], claim)  # a relay publishes what it claims


def test_a_leased_row_is_not_announced_and_no_relay_claims_it_until_its_lease_ends(handing_off):
    order_id, _, envelope = awaiting_payment()
    listener = _Listener()
    try:
        listener.wait(0)  # what earlier inserts announced
        reply = leased_reply(order_id, envelope)
        assert listener.wait(0.5) == []
    finally:
        listener.close()

    assert reply.published_at is None and reply.handoff_until > timezone.now()
    assert claimed([reply.pk]) == [] and reply.pk not in claimed()
    OutboxMessage.objects.filter(pk=reply.pk).update(handoff_until=timezone.now() - timedelta(seconds=1))
    assert claimed([reply.pk]) == [reply.pk] and reply.pk in claimed()


def test_a_handler_that_fails_in_a_hand_off_gives_its_rows_to_the_relay_at_once(handing_off, caplog):
    # given a leased payment.failed of an order no saga has: the saga's handler fails on it
    orphan = {"order_id": str(uuid.uuid4()), "code": "declined", "reason": "no saga has this order"}
    with handoff.collecting() as collector, transaction.atomic():
        row = publish("payment.failed", orphan)
    released_before = sample("sagaflow_handoffs_released_total", message_type="payment.failed")
    listener = _Listener()
    try:
        listener.wait(0)

        # when the thread hands it over
        handoff.hand_off(collector, None)

        # then nothing of the attempt is kept, and the relay is woken for the row, which is its own now
        assert listener.wait(2) == [row.pk]
    finally:
        listener.close()
    row.refresh_from_db()
    assert (row.published_at, row.handed_off) == (None, False)
    assert row.handoff_until <= timezone.now()  # its lease ended: a relay publishes it, and never hands it over
    assert not InboxMessage.objects.filter(message_id=str(row.message_id)).exists()
    assert sample("sagaflow_handoffs_released_total", message_type="payment.failed") == released_before + 1
    assert "a hand-off of 1 messages was rolled back (a handler failed)" in caplog.text
    with transaction.atomic():
        claim = queries.outbox_claim(10, [row.pk])
        assert handoff.for_relay(claim) == ([], claim) and [each.pk for each in claim] == [row.pk]


def test_a_row_the_relay_published_first_is_not_handed_off_as_well(handing_off):
    order_id, _, envelope = awaiting_payment()
    reply = leased_reply(order_id, envelope)
    OutboxMessage.objects.filter(pk=reply.pk).update(published_at=timezone.now())  # as a relay marks it

    handoff.hand_off(_collected(reply), None)

    assert saga_of(order_id).state == "PAYMENT_PENDING"
    assert not InboxMessage.objects.filter(consumer="saga", message_id=str(reply.message_id)).exists()
    reply.refresh_from_db()
    assert not reply.handed_off


def test_a_row_a_relay_holds_is_skipped_and_stays_the_relays(handing_off):
    order_id, _, envelope = awaiting_payment()
    reply = leased_reply(order_id, envelope)

    with in_another_transaction(lambda: queries.outbox_claim(10, [reply.pk])) as held:
        assert [row.pk for row in held] == []  # leased: not even a relay asking for it by id takes it
    OutboxMessage.objects.filter(pk=reply.pk).update(handoff_until=timezone.now() - timedelta(seconds=1))
    with in_another_transaction(lambda: queries.outbox_claim(10, [reply.pk])) as held:
        assert [row.pk for row in held] == [reply.pk]
        handoff.hand_off(_collected(reply), None)
        assert saga_of(order_id).state == "PAYMENT_PENDING"

    reply.refresh_from_db()
    assert reply.published_at is None and not reply.handed_off
    assert not InboxMessage.objects.filter(consumer="saga", message_id=str(reply.message_id)).exists()


def test_a_reply_handed_off_and_then_delivered_by_the_broker_changes_nothing_the_second_time(handing_off):
    order_id, customer, envelope = awaiting_payment()
    reply = leased_reply(order_id, envelope)
    handoff.hand_off(_collected(reply), None)
    assert saga_of(order_id).state == "COMPLETED"

    assert settle("saga", delivery_of(reply)) == 0

    assert saga_of(order_id).state == "COMPLETED"
    assert InboxMessage.objects.filter(consumer="saga", message_id=str(reply.message_id)).count() == 1
    assert balance(customer) == Decimal("80.00")


def _collected(*rows: OutboxMessage) -> handoff.Collector:
    collector = handoff.Collector()
    collector.rows = list(rows)
    return collector


@pytest.mark.parametrize(
    ("hosted", "expected"),
    [
        (["payments", "inventory", "saga", "webhooks"], {"payment.processed": True, "inventory.reserve": True}),
        # a consumer that runs in another worker: the message must reach it through the broker
        (["payments", "inventory"], {"payment.processed": False, "inventory.reserve": True}),
    ],
)
def test_a_message_type_is_handed_off_only_where_every_one_of_its_consumers_runs_and_none_is_outward(
    settings, hosted, expected
):
    settings.MESSAGING_CONSUMERS = hosted

    assert {key: handoff.local(key) for key in expected} == expected
    assert handoff.local("webhook.deliver") is False  # outward: its own thread, never in a transaction of others
    assert handoff.local("no.such.message") is False


def test_with_a_consumer_hosted_elsewhere_its_messages_go_to_the_relay(handing_off, settings):
    settings.MESSAGING_CONSUMERS = ["payments", "inventory"]
    order_id, _, _ = awaiting_payment()

    settle("payments", delivery_of(outbox(order_id, "payment.process")[0]))

    reply = outbox(order_id, "payment.processed")[0]
    assert (reply.published_at, reply.handoff_until, reply.handed_off) == (None, None, False)
    assert claimed([reply.pk]) == [reply.pk]


def test_an_order_whose_replies_are_handed_off_is_still_one_trace_following_causation(handing_off):
    sku = make_product(stock=5, price="3.00").sku
    customer = make_account(balance="50.00").customer_id
    with traced() as exported:
        order_id = order_placed_over_http(customer, sku)
        settle("payments", delivery_of(outbox(order_id, "payment.process")[0]))

    assert saga_of(order_id).state == "COMPLETED"
    spans = as_dicts(exported.get_finished_spans())
    requests = [span for span in spans if span["kind"] == "SpanKind.SERVER" and "orders" in span["name"]]
    the_trace = assert_one_trace_following_causation(spans, requests[0], outbox_of(order_id))
    assert consumers_in(spans, the_trace) == {"payments", "inventory", "saga"}


@pytest.fixture
def tapped() -> Iterator[tuple[ConfirmingPublisher, str]]:
    """A relay's publisher on this run's broker, and a queue of the test's own bound to every message type:
    what it holds is what crossed the broker."""
    tap = Queue(f"tap-{uuid.uuid4().hex[:8]}", exchange=topology.main_exchange(), routing_key="#")
    with connected() as broker:
        topology.declare_all(broker.default_channel)
        tap(broker.default_channel).declare()
        try:
            yield ConfirmingPublisher(broker), tap.name
        finally:
            tap(broker.default_channel).delete()


def crossed(queue: str) -> list[str]:
    """The routing keys of what the queue `queue` received, taken from it."""
    keys = []
    with connected() as broker:
        while (message := broker.default_channel.basic_get(queue, no_ack=True)) is not None:
            keys.append(message.delivery_info["routing_key"])
    return keys


def test_the_relay_hands_the_apis_payment_process_to_this_workers_consumers_instead_of_publishing_it(
    handing_off, tapped
):
    publisher, tap = tapped
    order_id, customer, _ = awaiting_payment()
    placed = outbox(order_id, "payment.process")[0]
    assert placed.handoff_until is None  # the API's: no consumer thread leased it
    before = handed_off("payment.process")

    assert relay_once(publisher, ids=[placed.pk]) == 1

    assert saga_of(order_id).state == "COMPLETED"
    assert balance(customer) == Decimal("80.00")
    rows = {row.routing_key: row for row in outbox(order_id)}
    assert rows["payment.process"].handed_off and rows["payment.process"].published_at is not None
    assert handed_off("payment.process") == before + 1
    # the saga's commands and replies never crossed the broker; the public events it writes are the relay's
    assert crossed(tap) == []
    events = [key for key, row in rows.items() if not row.handed_off]
    assert events and all(key.startswith("order.") for key in events)
    relay_once(publisher)
    assert sorted(crossed(tap)) == sorted(events)
    assert all(row.published_at is not None for row in outbox(order_id))


@pytest.fixture
def tap_queue() -> Iterator[str]:
    """A queue of the test's own bound to the tap exchange, as an operator binds one."""
    queue = Queue(f"watch-{uuid.uuid4().hex[:8]}", exchange=topology.tap_exchange(), routing_key="#")
    with connected() as broker:
        topology.declare_all(broker.default_channel)
        queue(broker.default_channel).declare()
        try:
            yield queue.name
        finally:
            queue(broker.default_channel).delete()


def watched(queue: str) -> list[tuple[str, bool]]:
    """What the queue `queue` received, taken from it: each message's routing key, and whether it was a copy of
    a hand-off."""
    seen = []
    with connected() as broker:
        while (message := broker.default_channel.basic_get(queue, no_ack=True)) is not None:
            handed = message.headers.get(HANDED_OFF_HEADER, False)
            seen.append((message.delivery_info["routing_key"], handed))
    return seen


def test_the_tap_exchange_sees_every_message_of_the_saga_once_whichever_way_it_travelled(
    handing_off, tapped, tap_queue
):
    publisher, crossing = tapped
    order_id, _, _ = awaiting_payment()
    placed = outbox(order_id, "payment.process")[0]

    relay_once(publisher, ids=[placed.pk])
    relay_once(publisher)  # the public events, through the broker

    rows = outbox(order_id)
    assert all(row.published_at is not None for row in rows)
    seen = watched(tap_queue)
    assert sorted(seen) == sorted((row.routing_key, row.handed_off) for row in rows)
    assert ("payment.process", True) in seen and ("order.completed", False) in seen
    assert sorted(key for key, handed in seen if not handed) == sorted(crossed(crossing))


def test_a_copy_the_tap_cannot_send_leaves_the_hand_off_done(handing_off, caplog):
    order_id, customer, envelope = awaiting_payment()
    reply = leased_reply(order_id, envelope)

    with connected() as broker:
        tap = Tap(broker.connection)
        tap.channel.close()  # a publish on it raises, as on a lost connection
        handoff.hand_off(_collected(reply), tap)

    assert saga_of(order_id).state == "COMPLETED"
    assert balance(customer) == Decimal("80.00")
    assert "could not copy 1 handed-off messages to the tap" in caplog.text


def test_a_relay_pass_rolled_back_after_its_hand_off_counts_nothing_handed_off(handing_off, tapped, monkeypatch):
    publisher, _ = tapped
    order_id, _, _ = awaiting_payment()
    placed = outbox(order_id, "payment.process")[0]
    before = handed_off("payment.process")
    applied = handoff.apply_claimed

    def applied_then_lost(rows):
        applied(rows)
        raise DatabaseError("the connection was lost before the relay's commit")

    monkeypatch.setattr(handoff, "apply_claimed", applied_then_lost)
    with pytest.raises(DatabaseError):
        relay_once(publisher, ids=[placed.pk])

    assert handed_off("payment.process") == before
    assert saga_of(order_id).state == "PAYMENT_PENDING"  # nothing of the hand-off was kept
    monkeypatch.setattr(handoff, "apply_claimed", applied)
    assert relay_once(publisher, ids=[placed.pk]) == 1  # the next pass takes it again, and counts it once
    assert handed_off("payment.process") == before + 1


def test_a_row_the_relays_hand_off_fails_on_goes_through_the_broker_next(handing_off, tapped, caplog):
    publisher, tap = tapped
    # an unleased payment.failed of an order no saga has, as a command or beat could write: the saga fails on it
    with transaction.atomic():
        row = publish("payment.failed", {"order_id": str(uuid.uuid4()), "code": "declined", "reason": "orphan"})

    assert relay_once(publisher, ids=[row.pk]) == 1
    row.refresh_from_db()
    assert (row.published_at, row.handed_off) == (None, False) and row.handoff_until is not None
    assert "a hand-off of 1 messages was rolled back (a handler failed)" in caplog.text

    assert relay_once(publisher, ids=[row.pk]) == 1
    row.refresh_from_db()
    assert row.published_at is not None and not row.handed_off
    assert crossed(tap) == ["payment.failed"]  # once, through the broker, with its retries and dead letters


def test_with_the_payments_consumer_hosted_elsewhere_the_relay_publishes_payment_process(handing_off, tapped, settings):
    settings.MESSAGING_CONSUMERS = ["inventory", "saga"]
    publisher, tap = tapped
    order_id, _, _ = awaiting_payment()
    placed = outbox(order_id, "payment.process")[0]

    relay_once(publisher, ids=[placed.pk])

    placed.refresh_from_db()
    assert placed.published_at is not None and not placed.handed_off
    assert saga_of(order_id).state == "PAYMENT_PENDING"
    assert crossed(tap) == ["payment.process"]
