"""No delivery can hurt the consumer: whatever its body, headers or properties, `handle_delivery` returns a
verdict, and a dead letter is stored whole, with what does not fit a column cut down and the original kept.
The consumer's and the dead-letter thread's own steps are driven with real kombu messages on real RabbitMQ."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection, Consumer, Producer, Queue

from messaging import topology
from messaging.consumers import handle_delivery, store_dead_letter
from messaging.correlation import LogContextFilter
from messaging.deadletters import why_not_replayable
from messaging.heartbeat import DEAD_LETTERS
from messaging.models import DeadLetter, InboxMessage
from messaging.worker import ConsumerThread, DeadLetterThread
from tests.integration.support import outbox
from tests.integration.test_outbox_and_inbox import awaiting_payment
from tests.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)  # the consumer opens its own transactions, as in a worker

ORDER = str(uuid.uuid4())
VALID_BODY = json.dumps({"order_id": ORDER, "reason": "x", "code": "y"}).encode()


def deliver(
    body: bytes | str = VALID_BODY, *, consumer: str = "saga", message_id: object = "", headers=None, **properties
):
    """Hand one delivery to the shared delivery path; store its dead letter as the in-process transport does."""
    properties = {"message_id": message_id or str(uuid.uuid4()), "type": "payment.failed", **properties}
    properties = {key: value for key, value in properties.items() if value is not None}
    verdict = handle_delivery(consumer, body, properties, headers or {}, str(properties.get("type", "")))
    if verdict.action == "dead_letter":
        store_dead_letter(verdict)
    return verdict


def letters(**lookups) -> list[DeadLetter]:
    return list(DeadLetter.objects.filter(**lookups).order_by("id"))


# Bodies.


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"[" * 100_000, "RecursionError"),
        (b"{" * 50_000 + b"}" * 50_000, "body is not JSON"),
        (b"\xff\xfe\x00binary", "not UTF-8"),
        ("\ud800 a lone surrogate", "not UTF-8"),
        (b'"' + b"x" * 3_000_000 + b'"', "must be a JSON object"),
    ],
    ids=["100000-brackets", "deep-objects", "binary", "surrogate", "3MB-string"],
)
def test_a_body_that_cannot_be_decoded_is_a_dead_letter_with_its_reason(body, detail):
    message_id = str(uuid.uuid4())

    verdict = deliver(body, message_id=message_id)

    assert verdict.action == "dead_letter"
    [letter] = letters(message_id=message_id)
    assert letter.reason in {"undecodable_body", "invalid_payload"}
    assert detail in letter.detail
    assert len(letter.body) >= min(len(body), 100_000)  # kept whole, as text or base64


@pytest.mark.parametrize(
    "payload",
    [
        {"order_id": 7, "reason": "x", "code": "y"},
        {"order_id": [ORDER], "reason": {"a": 1}, "code": None},
        {"order_id": {"$gt": ""}, "reason": "x", "code": "y"},
        {"order_id": ORDER, "reason": "x" * 10_000, "code": True},
        {"order_id": "1e999999999", "reason": 1e308, "code": float("nan")},
    ],
    ids=["int", "list", "object", "huge-and-bool", "numbers"],
)
def test_wrong_json_types_in_a_payload_are_a_clean_invalid_payload(payload):
    message_id = str(uuid.uuid4())

    deliver(json.dumps(payload).encode(), message_id=message_id)

    [letter] = letters(message_id=message_id)
    assert letter.reason == "invalid_payload"
    assert not InboxMessage.objects.filter(message_id=message_id).exists()


# Headers and properties.


@pytest.mark.parametrize(
    "headers",
    [
        {"x-attempt": float("inf")},
        {"x-attempt": {"table": 1}},
        {"x-attempt": [1, 2]},
        {"x-attempt": 2**63 - 1},
        {"x-attempt": -(2**63)},
        {"x-attempt": "9" * 5000},
        {"causation_id": b"\xff\xfe", "order_id": {"nested": [1]}, "version": float("nan")},
        {"causation_id": "line\nforged", "order_id": "o" * 500},
        {b"\xff": b"\xfe", "\x00key": "\x00value", "float": float("-inf"), "deep": [[[[[[{"a": [b"\x00"]}]]]]]]},
    ],
    ids=[
        "attempt-inf",
        "attempt-table",
        "attempt-list",
        "attempt-huge",
        "attempt-negative",
        "attempt-digits",
        "ids-of-wrong-types",
        "ids-with-newline-and-long",
        "odd-keys-and-values",
    ],
)
def test_header_values_of_the_wrong_type_never_make_the_delivery_raise(headers):
    message_id = str(uuid.uuid4())

    verdict = deliver(headers=headers, message_id=message_id)

    assert verdict.action == "dead_letter"  # payment.failed of an order no saga has: a handler error
    [letter] = letters(message_id=message_id)
    assert letter.reason == "handler_error"
    assert 1 <= letter.attempts <= 2**31 - 1


@pytest.mark.parametrize(
    "message_id",
    [b"\xff\xfe", "m" * 129, "id\nwith a newline", 12345, {"a": 1}],
    ids=["bytes", "too-long", "newline", "int", "table"],
)
def test_a_message_id_that_cannot_be_an_inbox_key_is_a_dead_letter_keeping_the_original(message_id):
    verdict = deliver(message_id=message_id, headers={"x-marker": (marker := uuid.uuid4().hex)})

    assert verdict.action == "dead_letter" and verdict.failure.reason == "invalid_envelope"
    [letter] = letters(headers__contains={"x-marker": marker})
    assert 1 <= len(letter.message_id) <= 128 and letter.message_id.isprintable()
    assert "message_id" in letter.headers["x-sagaflow-original"]
    assert not InboxMessage.objects.filter(routing_key="payment.failed").exists()


def test_a_type_and_a_message_id_longer_than_the_columns_are_cut_and_the_originals_kept():
    long_type, long_id = "payment." + "t" * 300, "i" * 200

    deliver(message_id=long_id, type=long_type, headers={"x-marker": (marker := uuid.uuid4().hex)})
    deliver(message_id=long_id[:150], type=long_type, headers={"x-marker": marker})

    first, second = letters(headers__contains={"x-marker": marker})
    assert len(first.routing_key) <= 100 and first.headers["x-sagaflow-original"]["routing_key"] == long_type
    assert first.headers["x-sagaflow-original"]["message_id"] == long_id
    assert second.headers["x-sagaflow-original"]["message_id"] == long_id[:150]
    assert first.message_id != second.message_id  # two ids cut to the same length stay two letters


def test_every_message_without_an_id_gets_a_row_of_its_own_and_the_same_message_the_same_row():
    bodies = [b'{"first": 1}', b'{"second": 2}', b"not even json"]

    for body in bodies + bodies[:1]:
        verdict = handle_delivery("saga", body, {"type": "payment.failed"}, {}, "payment.failed")
        assert verdict.failure.reason in {"invalid_envelope", "undecodable_body"}
        store_dead_letter(verdict)

    stored = letters()
    assert sorted(letter.body for letter in stored) == sorted(body.decode() for body in bodies)
    assert all(uuid.UUID(letter.message_id) for letter in stored)
    assert all(letter.headers["x-sagaflow-original"] == {"message_id": None} for letter in stored)


@pytest.fixture
def text_log():
    """What the worker writes with LOG_FORMAT=text, from INFO up, as one string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(LogContextFilter())
    handler.setFormatter(
        logging.Formatter(settings.LOGGING["formatters"]["text"]["fmt"], defaults={"correlation_id": "-"})
    )
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_newline_and_a_300_character_correlation_id_are_cleaned_where_they_enter_and_the_handler_publishes(text_log):
    order_id, _, _ = awaiting_payment()
    row = outbox(order_id, "payment.process")[0]
    hostile = "forged\nERROR   fake.logger [x] an operator should act now" + "c" * 300

    verdict = handle_delivery(
        "payments",
        row.body(),
        {**row.wire_properties(), "correlation_id": hostile},
        row.wire_headers(),
        row.routing_key,
    )

    assert verdict.action == "ack"
    [reply] = outbox(order_id, "payment.processed")
    assert len(reply.correlation_id) <= 128 and "\n" not in reply.correlation_id
    assert reply.correlation_id.startswith("forged\\nERROR")
    lines = text_log.getvalue().splitlines()
    assert any("handled payment.process in payments" in line for line in lines)
    assert not [line for line in lines if line.startswith("ERROR   fake.logger")]


# Through RabbitMQ: the consumer thread's own dead-lettering, and the dead-letter thread that stores it.


class Broker:
    """A connection to this test's vhost with a consumer thread and a dead-letter thread that are driven by
    hand, one real kombu message at a time."""

    def __init__(self, connection: Connection):
        self.connection = connection
        topology.declare_all(connection.default_channel)
        self.channel = connection.channel()
        for queue in ("payments", "saga", topology.DEAD_LETTER_QUEUE):
            self.channel.queue_purge(queue)  # what earlier tests of this run left in the run's vhost
        self.consumers = {name: ConsumerThread(name, threading.Event()) for name in ("payments", "saga")}
        for consumer in self.consumers.values():
            consumer.producer = Producer(connection.channel())
        self.dead_letters = DeadLetterThread(topology.DEAD_LETTER_QUEUE, threading.Event(), loop=DEAD_LETTERS)

    def publish(self, queue: str, body: bytes, **properties) -> None:
        import amqp

        # py-amqp itself, so that a property may be any bytes at all, as a foreign publisher may send.
        self.channel.basic_publish(amqp.Message(body, **properties), exchange="", routing_key=queue)

    def take(self, queue: str):
        """The next message of `queue`, received as a consumer thread receives it: kombu's Consumer, which
        decodes it (and raises, in drain_events, on what it cannot decode)."""
        received = []
        with Consumer(
            self.connection.channel(),
            queues=[Queue(queue, no_declare=True)],
            auto_declare=False,
            on_message=received.append,
        ):
            wait_for(lambda: self._drained() or received, timeout=10, message=f"a message in {queue}")
        return received[0]

    def _drained(self) -> None:
        try:
            self.connection.drain_events(timeout=0.05)
        except TimeoutError:
            pass

    def through_the_consumer(self, queue: str) -> None:
        self.consumers[queue].on_one(self.take(queue))

    def store_what_reached_the_dead_letters(self) -> None:
        self.dead_letters.on_message(self.take(topology.DEAD_LETTER_QUEUE))


@pytest.fixture
def broker():
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as connection:
        yield Broker(connection)


@pytest.mark.parametrize(
    "properties",
    [
        {"message_id": b"\xff\xfe"},
        {"correlation_id": b"a\xffb"},
        {"type": b"\xc3"},
        {"message_id": "m" * 255, "type": "t" * 255, "correlation_id": "c\n" * 127},
        {"timestamp": 2**63, "content_type": b"\xff", "content_encoding": b"\xfe"},
        {"content_encoding": "s" * 255, "body": b""},
        {"content_encoding": "latin-1", "body": b"\xff{}"},
        {"application_headers": {"compression": "application/x-gzip"}},
        {"application_headers": {"compression": b"\xff"}},
    ],
    ids=[
        "message-id-not-utf8",
        "correlation-id-not-utf8",
        "type-not-utf8",
        "longest-shortstrs",
        "odd-rest",
        "empty-body-unknown-encoding",
        "body-decoded-by-py-amqp",
        "compression-of-nothing",
        "unknown-compression",
    ],
)
def test_properties_of_any_bytes_reach_the_dead_letters_through_the_broker(broker, properties, caplog):
    marker = uuid.uuid4().hex
    body = properties.pop("body", VALID_BODY)
    headers = {**properties.pop("application_headers", {}), "x-marker": marker}
    broker.publish(
        "saga",
        body,
        application_headers=headers,
        **{"message_id": str(uuid.uuid4()), "type": "payment.failed", **properties},
    )

    broker.through_the_consumer("saga")
    broker.store_what_reached_the_dead_letters()

    [letter] = letters(headers__contains={"x-marker": marker})
    assert letter.queue == "saga" and letter.reason in {
        "invalid_envelope",
        "handler_error",
        "unknown_type",
        "undecodable_body",
        "invalid_payload",
    }
    assert letter.body in {body.decode("utf-8", "replace"), body.decode("latin-1")}
    assert "dropped" not in caplog.text


@pytest.mark.parametrize(
    "headers",
    [
        {"x-attempt": "not a number", "x-delivery-count": "many"},
        {"x-death": "not a list", "x-sagaflow-queue": {"a": 1}, "x-sagaflow-reason": ["r"] * 100},
        {"x-death": [1, "two", None], "x-first-death-queue": b"\xff", "x-sagaflow-detail": b"\x00" * 10},
        {"x-attempt": 2**63 - 1, "x-sagaflow-traceback": "t" * 100_000},
        {"x-sagaflow-queue": "q" * 300, "x-sagaflow-reason": "r\n" * 200},
    ],
    ids=["counts-not-numbers", "death-not-a-list", "death-of-odd-items", "huge-attempt", "long-queue-and-reason"],
)
def test_whatever_is_published_straight_to_the_dead_letter_queue_is_stored(broker, headers, caplog):
    marker = uuid.uuid4().hex

    broker.publish(topology.DEAD_LETTER_QUEUE, b"\x00anything", application_headers={**headers, "x-marker": marker})
    broker.store_what_reached_the_dead_letters()

    [letter] = letters(headers__contains={"x-marker": marker})
    assert letter.body.startswith("base64:")
    assert len(letter.queue) <= 100 and len(letter.reason) <= 100 and 1 <= letter.attempts <= 2**31 - 1
    assert "dropped" not in caplog.text


def test_a_refund_the_broker_dead_lettered_from_the_compensation_queue_is_the_payments_consumers_to_replay(broker):
    marker = uuid.uuid4().hex
    death = {"queue": "payments.compensations", "reason": "delivery_limit", "count": 5}

    broker.publish(
        topology.DEAD_LETTER_QUEUE,
        json.dumps({"order_id": str(uuid.uuid4()), "reason": "out_of_stock"}).encode(),
        message_id=str(uuid.uuid4()),
        type="payment.refund",
        content_type="application/json",
        application_headers={"x-death": [death], "x-marker": marker},
    )
    broker.store_what_reached_the_dead_letters()

    [letter] = letters(headers__contains={"x-marker": marker})
    assert (letter.queue, letter.routing_key, letter.reason) == ("payments", "payment.refund", "delivery_limit")
    assert why_not_replayable(letter, force=False) == ""


def test_headers_too_large_to_send_again_are_stored_all_the_same(broker):
    marker = uuid.uuid4().hex
    # near the broker's frame size: the consumer's own headers would not fit beside them
    broker.publish(
        "payments",
        b"{}",
        message_id=str(uuid.uuid4()),
        type="payment.process",
        application_headers={"x-marker": marker, "big": "b" * 130_000},
    )

    broker.through_the_consumer("payments")

    [letter] = letters(headers__contains={"x-marker": marker})
    assert letter.reason == "invalid_payload" and len(letter.headers["big"]) == 130_000


@pytest.fixture
def headers_refused():
    """Makes the database refuse a dead letter whose headers hold the key "refused": a letter that cannot be
    stored whole, for a reason no cleaning foresaw."""
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE messaging_deadletter ADD CONSTRAINT headers_refused CHECK (NOT headers ? 'refused')"
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE messaging_deadletter DROP CONSTRAINT headers_refused")


def test_a_letter_that_cannot_be_stored_whole_is_stored_minimal_saying_why(headers_refused):
    message_id = str(uuid.uuid4())

    deliver(b"not json", message_id=message_id, headers={"refused": "yes"})

    [letter] = letters(message_id=message_id)
    assert (letter.reason, letter.body) == ("undecodable_body", "not json")
    assert "headers_refused" in letter.headers["x-sagaflow-unstorable"] and "refused" not in letter.headers
