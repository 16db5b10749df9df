"""A consumer thread's batch that fails, at a message or at its commit: nothing of it is kept, each message is
then handled alone, the good ones applied, counted and logged once and the failing one dead-lettered, logged
and counted once.
Real PostgreSQL and RabbitMQ; the deliveries are plain objects with what a kombu message carries."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection, Producer

from messaging import bus, metrics, topology
from messaging.models import InboxMessage, OutboxMessage
from messaging.worker import ConsumerThread
from payments.models import LedgerEntry
from saga.models import SagaTransition
from tests.integration.support import balance, outbox, saga_of
from tests.integration.test_outbox_and_inbox import awaiting_payment

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Delivery:
    body: bytes
    properties: dict
    headers: dict
    delivery_info: dict
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    acked: list = field(default_factory=list)

    def ack(self) -> None:
        self.acked.append(True)


def delivery_of(row: OutboxMessage) -> Delivery:
    """What a consumer receives for an outbox row."""
    return Delivery(row.body(), row.wire_properties(), row.wire_headers(), {"routing_key": row.routing_key})


@pytest.fixture
def refused_at_commit():
    """Makes any transaction that inserts the inbox row of a given message fail at its COMMIT."""
    refused: list[str] = []

    def refuse(message_id: str) -> None:
        refused.append(message_id)
        with connection.cursor() as cursor:
            cursor.execute(f"""
                CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.message_id = '{message_id}' THEN RAISE EXCEPTION 'refused at commit'; END IF;
                    RETURN NULL;
                END $$""")
            cursor.execute(
                "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON messaging_inboxmessage "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
            )

    yield refuse
    if refused:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_at_commit ON messaging_inboxmessage")
            cursor.execute("DROP FUNCTION refuse_at_commit()")


def sample(name: str, **labels: str) -> float:
    return metrics.HANDLING.get_sample_value(name, labels) or 0


def splits() -> float:
    return sample("sagaflow_consumer_batches_split_total", consumer="payments")


def settle(queue: str, *deliveries: Delivery) -> int:
    """Hands `deliveries` to a consumer thread of `queue` as one receipt; returns how many dead letters it sent."""
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        topology.declare_all(broker.default_channel)

        def waiting() -> int:
            return broker.default_channel.queue_declare(topology.DEAD_LETTER_QUEUE, passive=True).message_count

        dead_letters_before = waiting()
        consumer = ConsumerThread(queue, threading.Event())
        consumer.producer = Producer(broker.channel())
        consumer.received = list(deliveries)
        consumer.after_deliveries(broker)
        return waiting() - dead_letters_before


def test_a_batch_whose_commit_fails_is_rolled_back_and_each_message_handled_alone(refused_at_commit, caplog):
    first_order, first_customer, _ = awaiting_payment()
    second_order, second_customer, second = awaiting_payment()
    refused_at_commit(second.message_id)
    batch = [delivery_of(outbox(order, "payment.process")[0]) for order in (first_order, second_order)]
    splits_before = splits()

    dead_letters = settle("payments", *batch)

    assert splits() == splits_before + 1
    assert "was rolled back (the commit failed" in caplog.text
    assert [delivery.acked for delivery in batch] == [[True], [True]]
    # the first applied once, alone; the second never applied, and dead-lettered with its reason
    assert LedgerEntry.objects.filter(payment__order_id=first_order, kind="CAPTURE").count() == 1
    assert balance(first_customer) == Decimal("80.00")
    assert not LedgerEntry.objects.filter(payment__order_id=second_order).exists()
    assert balance(second_customer) == Decimal("100.00")
    assert not InboxMessage.objects.filter(message_id=second.message_id).exists()
    assert dead_letters == 1


def reply_and_orphan() -> tuple[str, Delivery, Delivery]:
    """For the saga consumer: the payment.processed of an order, and a payment.failed of an order no saga has
    (its handler fails permanently). Returns the order's id and the two deliveries."""
    order_id, _, payment = awaiting_payment()
    bus.dispatch("payments", payment)
    reply = delivery_of(outbox(order_id, "payment.processed")[0])
    orphan = delivery_of(
        OutboxMessage(
            message_id=uuid.uuid4(),
            routing_key="payment.failed",
            payload={"order_id": str(uuid.uuid4()), "code": "declined", "reason": "no saga has this order"},
        )
    )
    return order_id, reply, orphan


def test_a_message_that_fails_in_a_batch_is_logged_and_counted_once_when_handled_alone(caplog):
    order_id, reply, orphan = reply_and_orphan()
    dead_before = sample("sagaflow_messages_dead_lettered_total", consumer="saga", reason="handler_error")

    dead_letters = settle("saga", reply, orphan)

    assert dead_letters == 1
    assert sample("sagaflow_messages_dead_lettered_total", consumer="saga", reason="handler_error") == dead_before + 1
    assert caplog.text.count("handler of payment.failed failed permanently") == 1
    # the reply, rolled back with the batch and then applied alone, moved the saga once
    assert saga_of(order_id).state == "INVENTORY_PENDING"
    assert SagaTransition.objects.filter(saga_id=order_id, message_type="payment.processed").count() == 1


def test_the_messages_of_a_rolled_back_batch_that_succeed_alone_are_counted_and_logged_once(caplog):
    _, reply, orphan = reply_and_orphan()
    labels = {"consumer": "saga", "message_type": "payment.processed"}
    handled_before = sample("sagaflow_messages_handled_total", **labels, outcome="processed")
    timed_before = sample("sagaflow_handler_duration_seconds_count", **labels)
    caplog.set_level("INFO", logger="messaging.bus")

    settle("saga", reply, orphan)

    # the reply was handled in the batch, rolled back with it, then handled alone: only that attempt counts
    assert sample("sagaflow_messages_handled_total", **labels, outcome="processed") == handled_before + 1
    assert sample("sagaflow_handler_duration_seconds_count", **labels) == timed_before + 1
    assert caplog.text.count("handled payment.processed in saga") == 1


def test_a_batch_that_commits_counts_and_logs_each_of_its_messages_once(caplog):
    replies = []
    for _ in range(2):
        order_id, _, payment = awaiting_payment()
        bus.dispatch("payments", payment)
        replies.append(delivery_of(outbox(order_id, "payment.processed")[0]))
    labels = {"consumer": "saga", "message_type": "payment.processed"}
    handled_before = sample("sagaflow_messages_handled_total", **labels, outcome="processed")
    caplog.set_level("INFO", logger="messaging.bus")

    settle("saga", *replies)

    assert [delivery.acked for delivery in replies] == [[True], [True]]
    assert sample("sagaflow_messages_handled_total", **labels, outcome="processed") == handled_before + 2
    assert caplog.text.count("handled payment.processed in saga") == 2
