"""The outbox writes in the caller's transaction only; the inbox makes a redelivered message a no-op."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction

from messaging import bus
from messaging.envelope import Envelope
from messaging.errors import InvalidPayloadError, UnknownMessageTypeError
from messaging.models import InboxMessage, OutboxMessage
from messaging.outbox import NOTIFY_CHANNEL, OutboxOutsideTransactionError, publish
from payments.models import LedgerEntry, Payment
from saga.models import SagaTransition
from saga.services import SagaNotFoundError
from tests.factories import make_account, make_product
from tests.integration.support import balance, envelope_of, outbox, place, saga_of


@pytest.mark.django_db(transaction=True)
def test_publish_refuses_to_run_outside_a_transaction():
    order_id = str(uuid.uuid4())

    with pytest.raises(OutboxOutsideTransactionError):
        publish("order.completed", {"order_id": order_id})

    assert not OutboxMessage.objects.filter(order_id=order_id).exists()


@pytest.mark.django_db(transaction=True)
def test_publish_writes_the_row_in_the_callers_transaction_and_rolls_back_with_it():
    kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())

    with transaction.atomic():
        message = publish("order.failed", {"order_id": kept, "reason": "timeout"})
    with pytest.raises(ZeroDivisionError):
        with transaction.atomic():
            publish("order.failed", {"order_id": dropped, "reason": "timeout"})
            raise ZeroDivisionError

    row = OutboxMessage.objects.get(order_id=kept)
    assert row.message_id == message.message_id
    assert (row.routing_key, row.payload, row.headers) == (
        "order.failed",
        {"order_id": kept, "reason": "timeout"},
        {"version": 1},
    )
    assert row.published_at is None and row.correlation_id
    assert not OutboxMessage.objects.filter(order_id=dropped).exists()


@pytest.mark.django_db(transaction=True)
def test_a_committed_outbox_insert_wakes_the_relays_and_a_rolled_back_one_does_not(settings):
    settings.MESSAGING_TRANSPORT = "amqp"  # the relays' wake-up, not the in-process transport's
    params = {k: v for k, v in connection.get_connection_params().items() if k not in {"cursor_factory", "context"}}
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")

        with pytest.raises(ZeroDivisionError):
            with transaction.atomic():
                publish("order.failed", {"order_id": str(uuid.uuid4()), "reason": "timeout"})
                raise ZeroDivisionError
        assert list(listener.notifies(timeout=0.5)) == []

        with transaction.atomic():
            first = publish("order.failed", {"order_id": str(uuid.uuid4()), "reason": "timeout"})
            second = publish("order.failed", {"order_id": str(uuid.uuid4()), "reason": "timeout"})
        woken = list(listener.notifies(timeout=0.5, stop_after=2))

    # Each names its row, for the relays to claim it by its key.
    assert [(notice.channel, notice.payload) for notice in woken] == [
        (NOTIFY_CHANNEL, str(first.pk)),
        (NOTIFY_CHANNEL, str(second.pk)),
    ]


@pytest.mark.django_db
def test_publish_refuses_a_payload_that_does_not_fit_the_catalogue():
    with pytest.raises(InvalidPayloadError) as caught:
        publish("payment.refund", {"order_id": str(uuid.uuid4())})

    assert caught.value.field == "reason"
    assert not OutboxMessage.objects.filter(routing_key="payment.refund").exists()


def awaiting_payment() -> tuple[str, str, Envelope]:
    """An order of 20.00 by a customer holding 100.00, and the payment.process that waits in its outbox."""
    product = make_product(price="20.00")
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (product.sku, 1))
    return order_id, customer, envelope_of(outbox(order_id, "payment.process")[0])


@pytest.mark.django_db
def test_the_same_payment_process_dispatched_twice_charges_once():
    # given an order whose payment.process waits in the outbox
    order_id, customer, envelope = awaiting_payment()

    # when payments receives it twice
    first = bus.dispatch("payments", envelope)
    second = bus.dispatch("payments", envelope)

    # then it is applied once
    assert (first, second) == (bus.PROCESSED, bus.DUPLICATE)
    assert list(Payment.objects.filter(order_id=order_id).values_list("status", "amount")) == [
        ("CAPTURED", Decimal("20.00"))
    ]
    assert LedgerEntry.objects.filter(payment__order_id=order_id, kind="CAPTURE").count() == 1
    assert balance(customer) == Decimal("80.00")
    assert len(outbox(order_id, "payment.processed")) == 1
    assert InboxMessage.objects.filter(consumer="payments", message_id=envelope.message_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_payment_process_twice_in_one_batch_charges_once():
    # A consumer's batch shares one transaction and takes no savepoint per message: the second copy meets the
    # first one's inbox row, not yet committed, in its own transaction.
    order_id, customer, envelope = awaiting_payment()

    with transaction.atomic():
        verdicts = [bus.dispatch("payments", envelope, in_batch=True) for _ in range(2)]

    assert verdicts == [bus.PROCESSED, bus.DUPLICATE]
    assert LedgerEntry.objects.filter(payment__order_id=order_id, kind="CAPTURE").count() == 1
    assert balance(customer) == Decimal("80.00")
    assert len(outbox(order_id, "payment.processed")) == 1
    assert InboxMessage.objects.filter(consumer="payments", message_id=envelope.message_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_batch_with_a_failing_message_keeps_nothing_of_the_messages_before_it():
    order_id, customer, good = awaiting_payment()
    orphan_reply = envelope_of(
        OutboxMessage(
            message_id=uuid.uuid4(),
            routing_key="payment.processed",
            payload={"order_id": str(uuid.uuid4()), "payment_id": str(uuid.uuid4()), "amount": "1.00"},
        )
    )

    with pytest.raises(SagaNotFoundError), transaction.atomic():
        bus.dispatch("payments", good, in_batch=True)
        bus.dispatch("saga", orphan_reply, in_batch=True)

    assert not InboxMessage.objects.filter(message_id__in=[good.message_id, orphan_reply.message_id]).exists()
    assert balance(customer) == Decimal("100.00")
    assert not outbox(order_id, "payment.processed")
    # and the message applied alone afterwards charges once
    assert bus.dispatch("payments", good) == bus.PROCESSED
    assert balance(customer) == Decimal("80.00")


@pytest.mark.django_db
def test_a_repeated_payment_process_under_a_new_message_id_charges_nothing_and_repeats_the_answer():
    product = make_product(price="20.00")
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (product.sku, 1))
    row = outbox(order_id, "payment.process")[0]
    bus.dispatch("payments", envelope_of(row))

    verdict = bus.dispatch("payments", envelope_of(row, message_id=str(uuid.uuid4())))

    assert verdict == bus.PROCESSED
    assert balance(customer) == Decimal("80.00")
    answers = outbox(order_id, "payment.processed")
    assert len(answers) == 2
    assert answers[0].payload == answers[1].payload
    assert answers[0].message_id != answers[1].message_id


@pytest.mark.django_db
def test_the_same_reply_dispatched_twice_to_the_saga_moves_it_once():
    product = make_product(price="20.00")
    customer = make_account(balance="100.00").customer_id
    order_id = place(customer, (product.sku, 1))
    bus.dispatch("payments", envelope_of(outbox(order_id, "payment.process")[0]))
    reply = envelope_of(outbox(order_id, "payment.processed")[0])

    assert bus.dispatch("saga", reply) == bus.PROCESSED
    assert bus.dispatch("saga", reply) == bus.DUPLICATE

    assert saga_of(order_id).state == "INVENTORY_PENDING"
    assert SagaTransition.objects.filter(saga_id=order_id, message_type="payment.processed").count() == 1
    assert len(outbox(order_id, "inventory.reserve")) == 1


@pytest.mark.django_db
def test_a_handler_that_fails_leaves_no_inbox_row_so_the_redelivery_is_applied():
    order_id = str(uuid.uuid4())
    reply = envelope_of(
        OutboxMessage(
            message_id=uuid.uuid4(),
            routing_key="payment.processed",
            payload={"order_id": order_id, "payment_id": str(uuid.uuid4()), "amount": "1.00"},
        )
    )

    with pytest.raises(SagaNotFoundError):
        bus.dispatch("saga", reply)

    assert not InboxMessage.objects.filter(message_id=reply.message_id).exists()


@pytest.mark.django_db
def test_an_invalid_payload_is_refused_before_the_handler_and_leaves_no_inbox_row():
    row = OutboxMessage(
        message_id=uuid.uuid4(),
        routing_key="payment.process",
        payload={"order_id": str(uuid.uuid4()), "customer_id": "c", "currency": "EUR"},
    )

    with pytest.raises(InvalidPayloadError) as caught:
        bus.dispatch("payments", envelope_of(row))

    assert caught.value.field == "amount"
    assert not InboxMessage.objects.filter(message_id=str(row.message_id)).exists()
    assert not Payment.objects.filter(order_id=row.payload["order_id"]).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("consumer", "routing_key"), [("payments", "inventory.reserve"), ("nobody", "payment.process")]
)
def test_a_message_a_consumer_does_not_handle_is_refused(consumer, routing_key):
    row = OutboxMessage(message_id=uuid.uuid4(), routing_key=routing_key, payload={})

    with pytest.raises(UnknownMessageTypeError):
        bus.dispatch(consumer, envelope_of(row))

    assert not InboxMessage.objects.filter(message_id=str(row.message_id)).exists()
