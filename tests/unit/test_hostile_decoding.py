"""Decoding what a foreign publisher sends, without a database: py-amqp's frames made tolerant, the envelope,
the catalogue, and the ids cleaned where they enter. Whatever the input, either a result or a
PermanentMessageError, never anything else."""

from __future__ import annotations

from struct import pack

import amqp
import pytest
from amqp import abstract_channel, serialization
from amqp.spec import Basic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging import wire
from messaging.catalogue import CATALOGUE, validate_payload
from messaging.correlation import clean_id, printable
from messaging.envelope import Envelope, decode
from messaging.errors import PermanentMessageError
from tests.integration.hostile import amqp_values, bodies, headers, json_values, properties

MANY = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

wire.install()  # as MessagingConfig.ready does in every process; idempotent


def content_header(**props) -> bytes:
    """The properties part of a content-header frame, as a publisher sends it."""
    return amqp.Message(b"", **props)._serialize_properties()


def test_properties_that_are_not_utf8_are_decoded_as_bytes_instead_of_raising():
    raw = content_header(
        message_id=b"\xff\xfe", correlation_id="ok", type=b"\xc3", timestamp=2**63, application_headers={"k": b"\xff"}
    )

    decoded, _ = serialization.PROPERTY_CLASSES[Basic.CLASS_ID](raw, 0)

    assert decoded == {
        "message_id": b"\xff\xfe",
        "correlation_id": "ok",
        "type": b"\xc3",
        "timestamp": 2**63,
        "application_headers": {"k": b"\xff"},
    }


def test_a_headers_table_that_cannot_be_decoded_is_kept_whole_in_base64():
    table = b"\x01k" + b"T" + pack(">Q", 2**64 - 1)  # a timestamp past the year 9999
    raw = pack(">H", 0x2000 | 0x0080) + pack(">I", len(table)) + table + b"\x02id"

    decoded, offset = serialization.PROPERTY_CLASSES[Basic.CLASS_ID](raw, 0)

    assert offset == len(raw) and decoded["message_id"] == "id"
    assert set(decoded["application_headers"]) == {wire.UNDECODABLE_HEADERS}


def test_a_delivery_whose_routing_key_is_not_utf8_is_decoded_with_it_as_bytes():
    frame = serialization.dumps("sLbss", ["ctag", 7, True, "sagaflow.dlx", b"\xff\xfe"])

    arguments, _ = abstract_channel.loads("sLbss", frame, 0)

    assert arguments == ["ctag", 7, True, "sagaflow.dlx", b"\xff\xfe"]


@MANY
@given(props=properties, table=headers)
def test_tolerant_decoding_gives_what_py_amqp_gives_whenever_py_amqp_can(props, table):
    raw = content_header(**props, application_headers=table)
    try:
        strict = serialization.decode_properties_basic(raw, 0)
    except Exception:  # noqa: BLE001 - what py-amqp cannot decode: only the tolerant one must
        strict = None

    tolerant = wire.tolerant_properties(raw, 0)

    assert tolerant[1] == len(raw)
    if strict is not None:
        assert repr(tolerant) == repr(strict)  # repr: NaN is not equal to itself


@MANY
@given(
    body=bodies(huge=False),
    props=properties | st.dictionaries(st.text(max_size=15), amqp_values),
    table=headers | amqp_values,
)
def test_decode_gives_an_envelope_or_a_permanent_error_whatever_it_is_given(body, props, table):
    try:
        envelope = decode(body, props, table, "payment.failed")
    except PermanentMessageError as error:
        assert error.reason in {"undecodable_body", "invalid_envelope"}
        return
    assert isinstance(envelope, Envelope) and envelope.message_id == props["message_id"]
    for copied in (envelope.correlation_id, envelope.causation_id, envelope.order_id):
        assert copied.isascii() and copied.isprintable() and len(copied) <= 128
    assert 1 <= envelope.attempt < 2**31


@MANY
@given(
    routing_key=st.sampled_from(sorted(CATALOGUE)),
    payload=json_values,
    fields=st.dictionaries(st.sampled_from(sorted({f for t in CATALOGUE.values() for f in t.fields})), json_values),
)
def test_the_catalogue_refuses_wrong_json_types_with_a_permanent_error_and_nothing_else(routing_key, payload, fields):
    for candidate in (payload, fields):
        try:
            assert validate_payload(routing_key, candidate) is candidate
        except PermanentMessageError as error:
            assert error.reason == "invalid_payload"


@MANY
@given(value=amqp_values | st.text(st.characters(codec=None, exclude_categories=())))
def test_printable_text_stays_on_one_line_and_a_clean_id_is_short_printable_ascii(value):
    text, identifier = printable(value), clean_id(value)

    assert text.isprintable() and len(text.splitlines()) <= 1
    assert identifier.isascii() and identifier.isprintable() and len(identifier) <= 128


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("corr-1", "corr-1"),
        ("a\nb", "a\\nb"),
        ("tab\there", "tab\\there"),
        (b"\xff", "\\xff"),
        ("\u2028", "\\u2028"),
        ("é", "\\xe9"),
        (None, ""),
        ("x" * 300, "x" * 128),
    ],
)
def test_a_clean_id_escapes_what_could_forge_a_log_line_and_is_cut_to_128(value, cleaned):
    assert clean_id(value) == cleaned
