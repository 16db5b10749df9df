"""The message catalogue (DESIGN §2) and the envelope decoder: what a consumer accepts before any handler runs."""

from __future__ import annotations

import json
import uuid

import pytest

from messaging.catalogue import CATALOGUE, validate_payload
from messaging.envelope import decode
from messaging.errors import InvalidEnvelopeError, InvalidPayloadError, UndecodableBodyError, UnknownMessageTypeError
from messaging.models import OutboxMessage

# Fixed, not drawn at import: test ids made from them must be the same in every pytest-xdist worker.
ORDER = "6a0d3e51-8b2c-4f7a-a1d9-3c5e7f9b2d40"
OTHER = "c2e4a6b8-1d3f-4e5a-b7c9-0e2f4a6c8d1b"
ITEMS = [{"sku": "SKU-1", "quantity": 2}]

VALID: dict[str, dict] = {
    "order.created": {
        "order_id": ORDER,
        "customer_id": "cust-1",
        "items": [{"sku": "SKU-1", "quantity": 2, "unit_price": "10.00"}],
        "total": "20.00",
        "currency": "EUR",
    },
    "payment.process": {"order_id": ORDER, "customer_id": "cust-1", "amount": "20.00", "currency": "EUR"},
    "payment.processed": {"order_id": ORDER, "payment_id": OTHER, "amount": "20.00"},
    "payment.failed": {"order_id": ORDER, "reason": "the balance is short", "code": "insufficient_funds"},
    "payment.refund": {"order_id": ORDER, "reason": "out_of_stock"},
    "payment.refunded": {"order_id": ORDER, "payment_id": OTHER, "amount": "20.00"},
    "inventory.reserve": {"order_id": ORDER, "items": ITEMS},
    "inventory.reserved": {"order_id": ORDER, "reservation_id": OTHER, "items": ITEMS},
    "inventory.reservation_failed": {"order_id": ORDER, "reason": "not enough", "code": "out_of_stock", "items": ITEMS},
    "inventory.release": {"order_id": ORDER, "reason": "timeout"},
    "inventory.released": {"order_id": ORDER, "items": ITEMS},
    "order.completed": {"order_id": ORDER},
    "order.failed": {"order_id": ORDER, "reason": "out_of_stock"},
    "webhook.deliver": {
        "endpoint_id": OTHER,
        "event_id": str(uuid.uuid4()),
        "event_type": "order.completed",
        "order_id": ORDER,
        "occurred_at": "2026-12-02T01:23:45.678901+00:00",
    },
}

FIELDS = [(key, field) for key, payload in VALID.items() for field in payload]


def test_every_routing_key_in_the_catalogue_has_a_valid_example_here():
    assert set(VALID) == set(CATALOGUE)


def test_every_message_of_design_section_2_is_in_the_catalogue():
    design = {
        "order.created",
        "payment.process",
        "payment.processed",
        "payment.failed",
        "payment.refund",
        "payment.refunded",
        "inventory.reserve",
        "inventory.reserved",
        "inventory.reservation_failed",
        "inventory.released",
        "order.completed",
        "order.failed",
    }
    assert design <= set(CATALOGUE)


@pytest.mark.parametrize("routing_key", sorted(VALID))
def test_a_valid_payload_is_accepted(routing_key):
    payload = dict(VALID[routing_key])

    assert validate_payload(routing_key, payload) == VALID[routing_key]


@pytest.mark.parametrize(("routing_key", "field"), FIELDS, ids=[f"{k}-{f}" for k, f in FIELDS])
def test_a_missing_required_field_is_refused_by_name(routing_key, field):
    payload = {k: v for k, v in VALID[routing_key].items() if k != field}

    with pytest.raises(InvalidPayloadError) as caught:
        validate_payload(routing_key, payload)

    assert caught.value.field == field
    assert caught.value.reason == "invalid_payload"
    assert field in str(caught.value)


@pytest.mark.parametrize("routing_key", sorted(VALID))
def test_unknown_fields_are_ignored(routing_key):
    payload = {**VALID[routing_key], "added_in_version_2": {"anything": [1, 2]}, "note": None}

    assert validate_payload(routing_key, payload) is payload


@pytest.mark.parametrize(
    ("routing_key", "field", "value"),
    [
        ("payment.process", "order_id", "not-a-uuid"),
        ("payment.process", "order_id", 12),
        ("payment.process", "amount", 20.0),
        ("payment.process", "amount", "-1.00"),
        ("payment.process", "amount", "NaN"),
        ("payment.process", "amount", "twenty"),
        ("payment.process", "customer_id", ""),
        ("payment.process", "customer_id", "c" * 65),
        ("inventory.reserve", "items", []),
        ("inventory.reserve", "items", {"sku": "SKU-1", "quantity": 1}),
        ("inventory.reserve", "items", [{"sku": "SKU-1", "quantity": 0}]),
        ("inventory.reserve", "items", [{"sku": "SKU-1", "quantity": True}]),
        ("inventory.reserve", "items", [{"sku": "SKU-1", "quantity": "2"}]),
        ("inventory.reserve", "items", [{"quantity": 1}]),
        ("payment.processed", "payment_id", None),
        ("order.failed", "reason", ""),
    ],
)
def test_an_ill_typed_field_is_refused_by_name(routing_key, field, value):
    with pytest.raises(InvalidPayloadError) as caught:
        validate_payload(routing_key, {**VALID[routing_key], field: value})

    assert caught.value.field == field


def test_a_refund_of_a_charge_that_never_happened_may_carry_no_payment_id():
    payload = {"order_id": ORDER, "payment_id": None, "amount": "0.00"}

    assert validate_payload("payment.refunded", payload) is payload


def test_a_release_that_freed_nothing_may_carry_no_items():
    payload = {"order_id": ORDER, "items": []}

    assert validate_payload("inventory.released", payload) is payload


@pytest.mark.parametrize("body", [[VALID["order.completed"]], "order", 42, None])
def test_a_payload_that_is_not_an_object_is_refused(body):
    with pytest.raises(InvalidPayloadError) as caught:
        validate_payload("order.completed", body)

    assert caught.value.field == "<body>"


def test_an_unknown_routing_key_is_refused():
    with pytest.raises(UnknownMessageTypeError) as caught:
        validate_payload("order.shipped", {"order_id": ORDER})

    assert caught.value.reason == "unknown_type"


# The envelope decoder.

PROPERTIES = {"message_id": OTHER, "correlation_id": "corr-1", "type": "order.completed"}
HEADERS = {"causation_id": "cause-1", "order_id": ORDER, "version": 1, "x-attempt": 3, "x-extra": "kept"}


def test_decode_builds_the_envelope_from_body_properties_and_headers():
    envelope = decode(json.dumps(VALID["order.completed"]).encode(), PROPERTIES, HEADERS, "order.completed")

    assert envelope.message_id == OTHER
    assert envelope.routing_key == "order.completed"
    assert envelope.payload == VALID["order.completed"]
    assert (envelope.correlation_id, envelope.causation_id, envelope.order_id) == ("corr-1", "cause-1", ORDER)
    assert (envelope.version, envelope.attempt) == (1, 3)
    assert envelope.headers == {"x-extra": "kept"}


def test_decode_reads_back_what_an_outbox_row_sends():
    row = OutboxMessage(
        routing_key="order.completed",
        payload={"order_id": ORDER},
        headers={"version": 1},
        correlation_id="corr-1",
        causation_id="cause-1",
        order_id=ORDER,
    )

    envelope = decode(row.body(), row.wire_properties(), row.wire_headers(attempt=2), "ignored")

    assert (envelope.message_id, envelope.routing_key, envelope.payload) == (
        str(row.message_id),
        "order.completed",
        {"order_id": ORDER},
    )
    assert (envelope.correlation_id, envelope.causation_id, envelope.order_id) == ("corr-1", "cause-1", ORDER)
    assert (envelope.version, envelope.attempt, envelope.headers) == (1, 2, {})


@pytest.mark.parametrize("body", [b"not json", b'{"order_id": ', b"", "{'single': 'quotes'}"])
def test_decode_refuses_a_body_that_is_not_json(body):
    with pytest.raises(UndecodableBodyError) as caught:
        decode(body, PROPERTIES, HEADERS, "order.completed")

    assert caught.value.reason == "undecodable_body"


def test_decode_refuses_a_body_that_is_not_utf8():
    with pytest.raises(UndecodableBodyError):
        decode(b"\xff\xfe{}", PROPERTIES, HEADERS, "order.completed")


@pytest.mark.parametrize(
    "properties",
    [
        {"correlation_id": "corr-1", "type": "order.completed"},
        {**PROPERTIES, "message_id": ""},
        {**PROPERTIES, "message_id": None},
        {**PROPERTIES, "message_id": 1234},
    ],
)
def test_decode_refuses_a_message_without_a_message_id(properties):
    with pytest.raises(InvalidEnvelopeError) as caught:
        decode(b"{}", properties, HEADERS, "order.completed")

    assert "message_id" in str(caught.value)


def test_decode_falls_back_to_the_routing_key_and_first_attempt_when_properties_are_sparse():
    envelope = decode(b"{}", {"message_id": OTHER}, {"x-attempt": "garbage"}, "payment.refund")

    assert envelope.routing_key == "payment.refund"
    assert envelope.attempt == 1
