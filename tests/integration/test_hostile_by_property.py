"""Hostile messages by property, fast and many, against PostgreSQL: whatever hypothesis makes of a delivery's
body, headers and properties, the consumer's delivery path returns a dead letter and the store keeps it, and
whatever reaches the dead-letter queue is stored by the dead-letter thread, each in a row of its own.
(tests/e2e/test_hostile_messages.py sends the same kind of messages through RabbitMQ to a real worker.)"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from messaging import topology
from messaging.consumers import handle_delivery, store_dead_letter
from messaging.deadletters import ORIGINAL, json_safe, letter_message_id, storable_body
from messaging.heartbeat import DEAD_LETTERS
from messaging.models import DeadLetter, InboxMessage
from messaging.worker import DeadLetterThread
from tests.integration.hostile import MARKER, HostileMessage, amqp_values, bodies, headers, hostile_messages

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer opens its own transactions, as in a worker

MANY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@dataclass
class Received:
    """What the dead-letter thread is handed: a kombu message's parts, and what was done with it."""

    body: bytes
    properties: dict
    headers: dict
    delivery_info: dict
    settled: list = field(default_factory=list)

    def ack(self) -> None:
        self.settled.append("ack")

    def requeue(self) -> None:
        self.settled.append("requeue")


def stored(message: HostileMessage) -> list[DeadLetter]:
    """Hand `message` to its queue's own step, as the worker does, and return the rows found by its marker.
    The rows of earlier examples go first: one with the same id and body would be this one's, updated."""
    DeadLetter.objects.all().delete()
    marker = uuid.uuid4().hex
    message = message.marked(marker)
    if message.queue == topology.DEAD_LETTER_QUEUE:
        received = Received(message.body, message.properties, message.headers, {"routing_key": message.queue})
        DeadLetterThread(message.queue, threading.Event(), loop=DEAD_LETTERS).on_message(received)
        assert received.settled == ["ack"]
    else:
        verdict = handle_delivery(message.queue, message.body, message.properties, message.headers, message.queue)
        assert verdict.action == "dead_letter", verdict
        store_dead_letter(verdict)
    return list(DeadLetter.objects.filter(headers__contains={MARKER: marker}))


@MANY
@given(message=hostile_messages())
def test_any_hostile_delivery_becomes_one_stored_dead_letter_with_its_reason_and_body(message):
    [letter] = stored(message)

    assert letter.reason and len(letter.reason) <= 100
    assert letter.queue == message.queue or message.queue == topology.DEAD_LETTER_QUEUE
    assert letter.body == storable_body(message.body)
    assert 1 <= len(letter.message_id) <= 128 and letter.message_id.isprintable()
    if message.has_no_id:
        assert uuid.UUID(letter.message_id) and letter.headers[ORIGINAL]["message_id"] is None
    assert not InboxMessage.objects.filter(message_id=letter.message_id).exists()


@MANY
@given(
    properties=st.dictionaries(
        st.sampled_from(["message_id", "type", "correlation_id", "timestamp"]), amqp_values, max_size=4
    ),
    headers=st.dictionaries(st.text(max_size=10), amqp_values, max_size=4) | amqp_values,
)
def test_properties_and_headers_of_any_python_type_never_make_the_delivery_path_raise(properties, headers):
    """In-process, nothing limits them to what AMQP can carry: not even the headers need be a table."""
    verdict = handle_delivery("saga", b"{}", properties, headers, "payment.failed")

    assert verdict.action == "dead_letter"
    store_dead_letter(verdict)
    letter = DeadLetter.objects.get(message_id=letter_message_id(verdict.failure), queue="saga")
    assert letter.reason in {"invalid_envelope", "invalid_payload", "unknown_type"}


@MANY
@given(first=bodies(huge=False), second=bodies(huge=False), headers=headers)
def test_messages_without_an_id_are_one_row_each_and_the_same_message_again_is_the_same_row(first, second, headers):
    assume(first != second)
    ids = set()

    for body in (first, second, first):
        verdict = handle_delivery("saga", body, {}, headers, "saga")
        ids.add(letter_message_id(verdict.failure))
        store_dead_letter(verdict)

    assert len(ids) == 2
    assert DeadLetter.objects.filter(message_id__in=ids).count() == 2


@settings(max_examples=500, deadline=None, database=None)
@given(value=amqp_values)
def test_what_the_store_makes_of_any_header_value_is_json_postgresql_takes(value):
    text = json.dumps(json_safe(value), allow_nan=False, ensure_ascii=False)  # raises on NaN and infinities

    assert "\\u0000" not in text
    text.encode("utf-8")  # raises on a lone surrogate, which jsonb refuses too
