"""Hostile messages by property, end to end: hypothesis makes messages of every shape, they are published
straight to the real queues (the consumers' and the dead-letter queue itself) of a real worker, between
valid orders placed over HTTP. Every order completes, every hostile message is a stored dead letter, and the
worker never loses a connection over one. And a correlation id with newlines, as long as AMQP allows, is
cleaned where it enters: the message is handled, its effects published, and the text log has no forged line.
"""

from __future__ import annotations

import uuid

import amqp
import pytest
from django.conf import settings
from django.db.models.fields.json import KT
from django.utils import timezone
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from kombu import Connection

from messaging import topology
from messaging.correlation import clean_id
from messaging.deadletters import ORIGINAL
from messaging.models import DeadLetter, OutboxMessage
from tests.e2e.conftest import place_order, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.integration.hostile import MARKER, HostileMessage, hostile_messages
from tests.processes import celery_worker, wait_for

pytestmark = [pytest.mark.e2e]

GENERATED = 150
ORDER_EVERY = 10


def generated(count: int) -> list[HostileMessage]:
    """`count` hostile messages drawn by hypothesis, up front, and a few of the worst kinds by hand."""
    drawn: list[HostileMessage] = []

    @hypothesis_settings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_messages(through_broker=True))
    def draw(message: HostileMessage) -> None:
        drawn.append(message)

    draw()
    by_hand = [
        HostileMessage(queue, b"[" * 100_000, {"message_id": str(uuid.uuid4()), "type": "payment.process"})
        for queue in ("payments", "inventory", "saga")
    ]
    by_hand += [
        HostileMessage("payments", b'"' + b"x" * (4 << 20) + b'"', {"type": "payment.process"}),
        HostileMessage(topology.DEAD_LETTER_QUEUE, b"\xff" * (1 << 20), {}),
        HostileMessage("saga", b"{}", {"message_id": b"\xff\xfe", "type": b"\xc3", "correlation_id": b"\xff"}),
    ]
    return _one_per_letter(drawn + by_hand)


def _one_per_letter(messages: list[HostileMessage]) -> list[HostileMessage]:
    """Drops a message that repeats an earlier one's queue, id and body: the store rightly keeps them as one."""
    seen, kept = set(), []
    for message in messages:
        key = (message.queue, repr(message.properties.get("message_id")), message.body)
        if message.has_no_id or key not in seen:
            seen.add(key)
            kept.append(message)
    return kept


def publish(channel, message: HostileMessage) -> None:
    # py-amqp's own message, so that a property may be any bytes, as a foreign publisher may send.
    channel.basic_publish(
        amqp.Message(message.body, application_headers=message.headers, **message.properties),
        exchange="",
        routing_key=message.queue,
    )


def stored_markers() -> list[str]:
    return list(
        DeadLetter.objects.filter(headers__has_key=MARKER)
        .annotate(marker=KT(f"headers__{MARKER}"))
        .values_list("marker", flat=True)
    )


def test_hostile_messages_between_valid_orders_are_each_a_dead_letter_and_every_order_completes(api, worker):
    messages = [message.marked(uuid.uuid4().hex) for message in generated(GENERATED)]
    sku = create_product(api, stock_level=1000, price="1.00")
    customer = create_account(api, balance_amount="1000.00")

    # when the hostile messages are published to the worker's queues, an order placed every few of them
    orders = []
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        channel = broker.channel()
        for number, message in enumerate(messages):
            publish(channel, message)
            if number % ORDER_EVERY == 0:
                orders.append(place_order(api, customer, [{"sku": sku, "quantity": 1}]))

    # then every order completes
    assert {wait_final(api, order["id"], timeout=90)["status"] for order in orders} == {"COMPLETED"}
    # and every hostile message is one stored dead letter, those without an id included
    expected = sorted(message.headers[MARKER] for message in messages)
    wait_for(
        lambda: len(stored_markers()) >= len(expected),
        timeout=120,
        interval=0.5,
        message=f"{len(expected)} hostile messages to be stored as dead letters",
    )
    assert sorted(stored_markers()) == expected
    without_id = DeadLetter.objects.filter(headers__has_key=MARKER, headers__contains={ORIGINAL: {"message_id": None}})
    assert without_id.count() == sum(message.has_no_id for message in messages)
    # and the worker took them all in its stride: the same process, never a lost connection
    assert worker.running()
    log = worker.log()
    for trouble in ("lost its connection", "could not settle", "cannot be stored", "could not be classified"):
        assert trouble not in log, trouble


def test_a_correlation_id_with_newlines_is_cleaned_where_it_enters_and_its_effects_are_published(api, started):
    sku = create_product(api, stock_level=5, price="3.00")
    customer = create_account(api, balance_amount="10.00")
    # given an order whose payment.process we send ourselves, with a correlation id a log line could be
    # forged with, as long as an AMQP property may be (255 bytes)
    order = place_order(api, customer, [{"sku": sku, "quantity": 1}])
    command = OutboxMessage.objects.get(order_id=order["id"], routing_key="payment.process")
    OutboxMessage.objects.filter(pk=command.pk).update(published_at=timezone.now())
    forged = "\n2030-01-01 00:00:00,000 CRITICAL sagaflow.forged [x] FORGED LINE: pay attacker\n"
    hostile = ("corr" + forged * 4)[:255]
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        topology.declare_all(broker.default_channel)
        channel = broker.channel()
        channel.basic_publish(
            amqp.Message(
                command.body(),
                application_headers=command.wire_headers(),
                **{**command.wire_properties(), "correlation_id": hostile},
            ),
            exchange="",
            routing_key="payments",
        )

    # when a worker that logs text handles it
    worker = started(celery_worker("text-log", LOG_FORMAT="text"))

    # then the order completes: the handler's own publish took the cleaned id
    assert wait_final(api, order["id"])["status"] == "COMPLETED"
    reply = OutboxMessage.objects.get(order_id=order["id"], routing_key="payment.processed")
    assert reply.correlation_id == clean_id(hostile) and len(reply.correlation_id) == 128
    # and the id is in the text log, escaped on the handler's lines, and no line of the log is forged
    lines = worker.log().splitlines()
    assert any("handled payment.process in payments" in line and "[corr\\n2030-01-01" in line for line in lines)
    assert not [line for line in lines if line.startswith("2030-01-01") or "FORGED" in line.split("[")[0]]
