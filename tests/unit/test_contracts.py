"""The published contracts of the messages: the JSON Schema catalogue agrees with the validation it is generated
beside, and the AsyncAPI document is valid AsyncAPI 3.0 that says what the topology and the wire really do."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from messaging import bus, contracts, topology
from messaging.catalogue import CATALOGUE, field_schema, validate_payload
from messaging.errors import InvalidPayloadError
from messaging.models import OutboxMessage
from messaging.relay import _amqp_message
from tests.unit import test_catalogue
from tests.unit.test_catalogue import FIELDS, ORDER, VALID

ASYNCAPI_SCHEMA = Path(__file__).parent / "vendor" / "asyncapi-3.0.0.schema.json"
FORMATS = jsonschema.FormatChecker()


def parametrized_cases(test: Any) -> list[tuple]:
    """The cases a test of test_catalogue is parametrized with, so that its new cases are checked here too."""
    (mark,) = [m for m in test.pytestmark if m.name == "parametrize"]
    return list(mark.args[1])


ILL_TYPED = parametrized_cases(test_catalogue.test_an_ill_typed_field_is_refused_by_name)


def schema_of(routing_key: str) -> jsonschema.Draft202012Validator:
    schema = {"$schema": contracts.JSON_SCHEMA_DIALECT, **contracts.payload_schema(CATALOGUE[routing_key])}
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS)


def accepted_by_the_validator(routing_key: str, payload: Any) -> bool:
    try:
        validate_payload(routing_key, payload)
    except InvalidPayloadError:
        return False
    return True


# The JSON Schema catalogue.


def test_every_field_check_of_the_catalogue_has_a_schema_with_a_type_name():
    for message in CATALOGUE.values():
        for name, check in message.fields.items():
            assert field_schema(check)["title"], (message.routing_key, name)


def test_a_check_without_a_schema_is_refused_by_name():
    def _unknown(value: Any) -> str | None:
        return None

    with pytest.raises(LookupError, match="_unknown"):
        field_schema(_unknown)


def test_the_catalogue_document_is_valid_json_schema_2020_12_with_every_routing_key():
    document = contracts.catalogue_schema()

    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)
    assert set(document["$defs"]) == set(CATALOGUE)


@pytest.mark.parametrize("routing_key", sorted(CATALOGUE))
def test_each_payload_schema_is_valid_in_json_schema_2020_12_and_in_draft_07_for_asyncapi(routing_key):
    schema = contracts.payload_schema(CATALOGUE[routing_key])

    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["required"] == list(CATALOGUE[routing_key].fields)


@pytest.mark.parametrize("routing_key", sorted(VALID))
def test_every_valid_example_fits_its_schema(routing_key):
    assert accepted_by_the_validator(routing_key, VALID[routing_key])
    schema_of(routing_key).validate(VALID[routing_key])


@pytest.mark.parametrize(("routing_key", "field"), FIELDS, ids=[f"{k}-{f}" for k, f in FIELDS])
def test_a_payload_missing_a_field_fits_neither_the_validator_nor_the_schema(routing_key, field):
    payload = {k: v for k, v in VALID[routing_key].items() if k != field}

    assert not accepted_by_the_validator(routing_key, payload)
    errors = list(schema_of(routing_key).iter_errors(payload))
    assert [e.validator for e in errors] == ["required"] and field in errors[0].message


@pytest.mark.parametrize(("routing_key", "field", "value"), ILL_TYPED)
def test_every_ill_typed_example_fits_neither_the_validator_nor_the_schema(routing_key, field, value):
    payload = {**VALID[routing_key], field: value}

    assert not accepted_by_the_validator(routing_key, payload)
    errors = list(schema_of(routing_key).iter_errors(payload))
    assert errors and all(e.absolute_path[0] == field for e in errors), errors


# More values on the edges of each type, on which the validator and the schema agree.
AGREED = [
    ("payment.process", "order_id", ORDER.upper(), True),
    ("payment.process", "amount", "0", True),
    ("payment.process", "amount", ".5", True),
    ("payment.process", "amount", "5.", True),
    ("payment.process", "amount", "1E+2", True),
    ("payment.process", "amount", "+1.00", True),
    ("payment.process", "amount", "Infinity", False),
    ("payment.process", "amount", "1,00", False),
    ("payment.process", "amount", "", False),
    ("payment.process", "amount", 20, False),
    ("payment.process", "customer_id", "c" * 64, True),
    ("payment.process", "currency", "x" * 255, True),
    ("payment.process", "currency", "x" * 256, False),
    ("payment.refunded", "payment_id", None, True),
    ("payment.refunded", "payment_id", "nope", False),
    ("inventory.released", "items", [], True),
    ("inventory.released", "items", [{"sku": "S", "quantity": 0}], False),
    ("inventory.reserve", "items", [{"sku": "S", "quantity": 1, "unit_price": "1.00"}], True),
    ("inventory.reserve", "items", [{"sku": "", "quantity": 1}], False),
    ("inventory.reserve", "items", [{"sku": "s" * 65, "quantity": 1}], False),
    ("inventory.reserve", "items", ["SKU-1"], False),
]


@pytest.mark.parametrize(("routing_key", "field", "value", "valid"), AGREED)
def test_the_validator_and_the_schema_agree_on_the_edges(routing_key, field, value, valid):
    payload = {**VALID[routing_key], field: value}

    assert accepted_by_the_validator(routing_key, payload) is valid
    assert schema_of(routing_key).is_valid(payload) is valid


# Where they part, the schema is the stricter, and says what producers write: the validator's leniency here
# refuses nothing a producer of the schema sends. Listed so that a change to either side is seen.
VALIDATOR_ONLY = [
    ("payment.process", "order_id", ORDER.replace("-", "")),
    ("payment.process", "order_id", f"{{{ORDER}}}"),
    ("payment.process", "amount", " 1.00 "),
    ("payment.process", "amount", "1_000"),
    ("payment.process", "amount", "-0"),
]


@pytest.mark.parametrize(("routing_key", "field", "value"), VALIDATOR_ONLY)
def test_the_few_spellings_only_the_validator_accepts(routing_key, field, value):
    payload = {**VALID[routing_key], field: value}

    assert accepted_by_the_validator(routing_key, payload)
    assert not schema_of(routing_key).is_valid(payload)


def test_a_quantity_with_a_fraction_part_is_refused_by_the_validator_although_json_schema_counts_it_an_integer():
    # JSON Schema cannot tell 2 from 2.0; the validator can, and refuses it. Producers write integers.
    payload = {**VALID["inventory.reserve"], "items": [{"sku": "SKU-1", "quantity": 2.0}]}

    assert not accepted_by_the_validator("inventory.reserve", payload)
    assert schema_of("inventory.reserve").is_valid(payload)


# The AsyncAPI document.


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return contracts.asyncapi()


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for k, v in node.items() for r in ([v] if k == "$ref" else refs_in(v))]
    if isinstance(node, list):
        return [r for v in node for r in refs_in(v)]
    return []


def test_the_asyncapi_document_is_valid_by_the_official_asyncapi_3_schema(asyncapi):
    official = json.loads(ASYNCAPI_SCHEMA.read_text())

    jsonschema.Draft7Validator(official).validate(asyncapi)
    assert asyncapi["asyncapi"] == "3.0.0"


def test_the_official_schema_does_refuse_a_broken_document(asyncapi):
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    broken = json.loads(json.dumps(asyncapi))
    broken["channels"]["queue.payments"]["bindings"]["amqp"]["queue"]["durable"] = "yes"
    broken["operations"]["payments.receive"]["action"] = "consume"

    assert len(list(validator.iter_errors(broken))) == 2


def test_every_reference_of_the_asyncapi_document_resolves(asyncapi):
    refs = refs_in(asyncapi)

    assert refs
    for ref in refs:
        resolve(asyncapi, ref)


def test_each_operation_names_messages_of_its_own_channel(asyncapi):
    for name, operation in asyncapi["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel}/messages/"), (name, message)


def test_every_routing_key_has_a_channel_a_message_with_its_schema_and_a_send_by_its_producer(asyncapi):
    for key, message in CATALOGUE.items():
        channel = asyncapi["channels"][key]
        assert channel["address"] == key
        assert resolve(asyncapi, channel["messages"][key]["$ref"])["payload"] == {"$ref": f"#/components/schemas/{key}"}
        assert asyncapi["components"]["schemas"][key] == contracts.payload_schema(message)
        send = asyncapi["operations"][f"{message.producer}.send.{key}"]
        assert (send["action"], send["channel"]) == ("send", {"$ref": f"#/channels/{key}"})


def test_the_channels_bind_the_topic_exchange_as_the_topology_declares_it(asyncapi, settings):
    for key in CATALOGUE:
        amqp = asyncapi["channels"][key]["bindings"]["amqp"]
        assert amqp["is"] == "routingKey"
        assert amqp["exchange"] == {
            "name": settings.MESSAGING_EXCHANGE,
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": "/",
        }


def test_each_consumer_queue_is_a_quorum_queue_with_its_delivery_limit_bound_to_the_keys_it_handles(asyncapi, settings):
    for consumer in bus.consumers():
        channel = asyncapi["channels"][f"queue.{consumer}"]
        amqp = channel["bindings"]["amqp"]
        assert amqp["queue"]["name"] == channel["address"] == consumer
        assert amqp["queue"]["durable"] is True
        assert amqp["x-arguments"] == {
            "x-queue-type": "quorum",
            "x-delivery-limit": settings.MESSAGING_DELIVERY_LIMIT,
            "x-dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE,
        }
        compensating = bus.compensations(consumer)
        handled = sorted(key for key in bus.registry()[consumer] if key not in compensating)
        assert [b["routingKey"] for b in amqp["x-bound-to"]] == handled
        assert sorted(channel["messages"]) == handled
        receive = asyncapi["operations"][f"{consumer}.receive"]
        assert receive["action"] == "receive" and receive["bindings"]["amqp"]["ack"] is True


def test_the_compensations_have_queues_of_their_own_beside_their_consumers(asyncapi, settings):
    expected = {"payments": ["payment.refund"], "inventory": ["inventory.release"], "saga": ["payment.refunded"]}
    assert {consumer: bus.compensations(consumer) for consumer in expected} == expected
    for consumer, keys in expected.items():
        channel = asyncapi["channels"][f"queue.{consumer}.compensations"]
        amqp = channel["bindings"]["amqp"]
        assert amqp["queue"]["name"] == channel["address"] == f"{consumer}.compensations"
        assert amqp["x-arguments"]["x-queue-type"] == "quorum"
        assert amqp["x-arguments"]["x-delivery-limit"] == settings.MESSAGING_DELIVERY_LIMIT
        assert [b["routingKey"] for b in amqp["x-bound-to"]] == keys
        assert sorted(channel["messages"]) == keys
        assert not set(keys) & {
            b["routingKey"] for b in asyncapi["channels"][f"queue.{consumer}"]["bindings"]["amqp"]["x-bound-to"]
        }
        assert asyncapi["operations"][f"{consumer}.compensations.receive"]["action"] == "receive"
    assert "queue.webhooks.compensations" not in asyncapi["channels"]


def test_the_retry_delay_queues_and_the_dead_letters_are_documented_from_the_settings(settings):
    settings.MESSAGING_MAX_ATTEMPTS = 3
    settings.MESSAGING_RETRY_BASE_S = 0.5
    settings.MESSAGING_DELIVERY_LIMIT = 7

    document = contracts.asyncapi()

    channels = document["channels"]
    retries = sorted(name for name in channels if name.startswith("queue.payments.retry."))
    assert retries == ["queue.payments.retry.1000ms", "queue.payments.retry.500ms"]
    assert channels["queue.payments.retry.500ms"]["bindings"]["amqp"]["x-arguments"] == {
        "x-message-ttl": 500,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "payments",
    }
    # a compensation's retry waits apart, and goes back to the compensation queue, before new work
    compensation_retries = sorted(name for name in channels if name.startswith("queue.payments.compensations.retry."))
    assert compensation_retries == [
        "queue.payments.compensations.retry.1000ms",
        "queue.payments.compensations.retry.500ms",
    ]
    delayed = channels["queue.payments.compensations.retry.1000ms"]
    assert delayed["bindings"]["amqp"]["x-arguments"]["x-dead-letter-routing-key"] == "payments.compensations"
    assert sorted(delayed["messages"]) == ["payment.refund"]
    assert "payment.refund" not in channels["queue.payments.retry.500ms"]["messages"]
    assert document["operations"]["payments.compensations.retry.500ms"]["action"] == "send"
    assert channels["queue.payments"]["bindings"]["amqp"]["x-arguments"]["x-delivery-limit"] == 7
    assert channels[topology.DEAD_LETTER_EXCHANGE]["bindings"]["amqp"]["exchange"]["type"] == "fanout"
    assert channels[f"queue.{topology.DEAD_LETTER_QUEUE}"]["bindings"]["amqp"]["x-bound-to"] == [
        {"exchange": topology.DEAD_LETTER_EXCHANGE, "routingKey": ""}
    ]
    assert document["operations"]["deadletters.receive"]["action"] == "receive"


def test_the_documented_envelope_is_what_the_relay_sends():
    row = OutboxMessage(
        routing_key="order.completed",
        payload={"order_id": ORDER},
        headers={"version": 1},
        correlation_id="corr-1",
        causation_id=str(uuid.uuid4()),
        order_id=ORDER,
    )
    row.created_at = datetime.now(UTC)

    sent = _amqp_message(row)

    properties = {k: v for k, v in sent.properties.items() if k != "application_headers"}
    headers = sent.properties["application_headers"]
    jsonschema.Draft202012Validator(
        contracts.envelope_properties_schema("order.completed"), format_checker=FORMATS
    ).validate(properties)
    jsonschema.Draft202012Validator(contracts.envelope_headers_schema()).validate(headers)
    assert set(properties) == set(contracts.envelope_properties_schema()["properties"])
    assert set(headers) == set(contracts.envelope_headers_schema()["properties"])


def test_the_message_bindings_name_the_content_type_encoding_and_type(asyncapi):
    for key in CATALOGUE:
        message = asyncapi["components"]["messages"][key]
        assert message["contentType"] == "application/json"
        assert message["bindings"]["amqp"] == {
            "contentEncoding": "utf-8",
            "messageType": key,
            "bindingVersion": "0.3.0",
        }
        assert message["x-consumers"] == bus.consumers_for(key)
