"""The published contracts of the messages, generated from the code rather than written beside it.

- `catalogue_schema()`: the JSON Schema (draft 2020-12) of every payload, from `messaging.catalogue`, the same
  source that validates them.
- `asyncapi()`: an AsyncAPI 3.0 document: the topic exchange with one channel per routing key, the consumer
  queues, their retry delay queues and the dead letters, with the AMQP bindings of what `messaging.topology`
  declares, and the envelope every message travels in.
- `catalogue_rows()`: each message as the docs list it: kind, producer, consumers, payload fields.

Everything is built on each call from the catalogue, the bus, the topology and the settings, so that it can
never say something the running product does not do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kombu import Exchange, Queue

from messaging import bus, topology
from messaging.catalogue import CATALOGUE, SCHEMA_VERSION, MessageType, field_schema
from messaging.envelope import ATTEMPT_HEADER

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
DEAD_LETTER_MESSAGE = "dead-letter"


@dataclass(frozen=True)
class CatalogueRow:
    routing_key: str
    kind: str
    producer: str
    consumers: tuple[str, ...]
    summary: str
    fields: tuple[tuple[str, str], ...]  # (name, type as the docs name it)


def catalogue_rows() -> list[CatalogueRow]:
    """Every message of the catalogue, in its order, with who sends it and which consumers handle it."""
    return [
        CatalogueRow(
            routing_key=message.routing_key,
            kind=message.kind,
            producer=message.producer,
            consumers=tuple(bus.consumers_for(message.routing_key)),
            summary=message.summary,
            fields=tuple((name, field_schema(check)["title"]) for name, check in message.fields.items()),
        )
        for message in CATALOGUE.values()
    ]


def payload_schema(message: MessageType) -> dict[str, Any]:
    """The JSON Schema of one message's payload: its fields required, any other field allowed."""
    return {
        "title": message.routing_key,
        "description": message.summary,
        "type": "object",
        "required": list(message.fields),
        "properties": {name: copy.deepcopy(field_schema(check)) for name, check in message.fields.items()},
        # A consumer ignores fields it does not know, so that a producer may add one before its consumers do.
        "additionalProperties": True,
    }


def catalogue_schema() -> dict[str, Any]:
    """Every payload's schema, under `$defs` by routing key. The AMQP `type` property says which one applies."""
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": "urn:sagaflow:messages",
        "title": "sagaflow messages",
        "description": f"The payload of each message, by routing key (schema version {SCHEMA_VERSION}).",
        "$defs": {routing_key: payload_schema(message) for routing_key, message in CATALOGUE.items()},
    }


# The envelope. Its fields are written by OutboxMessage.wire_properties() and wire_headers() and by the relay;
# tests/unit/test_contracts.py fails when they and this description part.


def envelope_properties_schema(routing_key: str | None = None) -> dict[str, Any]:
    """The AMQP basic properties every message carries (for `routing_key`, its `type` too)."""
    kind = {"type": "string", "description": "The routing key it was published with."}
    if routing_key is not None:
        kind["const"] = routing_key
    return {
        "type": "object",
        "required": ["message_id", "correlation_id", "type", "content_type", "delivery_mode", "timestamp"],
        "properties": {
            "message_id": {
                "type": "string",
                "format": "uuid",
                "description": (
                    "Stable across relay retries and dead-letter replays: the consumer's inbox applies it once."
                ),
            },
            "correlation_id": {
                "type": "string",
                "description": (
                    "The X-Correlation-ID of the HTTP request that started the chain, carried by every message "
                    "it causes."
                ),
            },
            "type": kind,
            "content_type": {"type": "string", "const": CONTENT_TYPE},
            "content_encoding": {"type": "string", "const": CONTENT_ENCODING},
            "delivery_mode": {"type": "integer", "const": 2, "description": "Persistent."},
            "timestamp": {"type": "integer", "description": "When the outbox row was written, in Unix seconds."},
        },
    }


def envelope_headers_schema() -> dict[str, Any]:
    """The AMQP application headers every message carries."""
    return {
        "type": "object",
        "required": ["causation_id", "order_id", "version", ATTEMPT_HEADER],
        "properties": {
            "causation_id": {
                "type": "string",
                "description": (
                    "The message_id of the message whose handling published this one; empty for one published by "
                    "an HTTP request."
                ),
            },
            "order_id": {"type": "string", "description": "The order the message is about."},
            "version": {"type": "integer", "const": SCHEMA_VERSION, "description": "The payload schema's version."},
            ATTEMPT_HEADER: {
                "type": "integer",
                "minimum": 1,
                "description": ("1 when published; one more at each retry through a delay queue."),
            },
        },
    }


def dead_letter_headers_schema() -> dict[str, Any]:
    """The headers the worker adds to a message it dead-letters (the broker's own add `x-death` instead)."""
    # Imported here: the web process has no other use for the worker's module.
    from messaging.worker import DETAIL_HEADER, QUEUE_HEADER, REASON_HEADER, TRACEBACK_HEADER

    schema = envelope_headers_schema()
    schema["required"] = []
    schema["properties"].update(
        {
            REASON_HEADER: {
                "type": "string",
                "description": (
                    "Why: undecodable_body, unknown_type, invalid_payload, handler_error or retries_exhausted."
                ),
            },
            DETAIL_HEADER: {"type": "string", "description": "The error, in words (at most 1000 characters)."},
            QUEUE_HEADER: {"type": "string", "description": "The consumer queue that gave up on it."},
            TRACEBACK_HEADER: {"type": "string", "description": "The end of the handler's traceback, if it raised."},
            "x-death": {"type": "array", "description": "Set by RabbitMQ when the broker dead-lettered it itself."},
        }
    )
    return schema


# The AsyncAPI document.


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the messaging, as this process's settings declare it."""
    messages = {key: _message(message) for key, message in CATALOGUE.items()}
    messages[DEAD_LETTER_MESSAGE] = _dead_letter_message()
    schemas: dict[str, Any] = {key: payload_schema(message) for key, message in CATALOGUE.items()}
    schemas.update({"envelope.headers": envelope_headers_schema(), "dead-letter.headers": dead_letter_headers_schema()})
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "sagaflow messages",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": (
                "The commands and events of the order saga on RabbitMQ. Each context writes its messages to an "
                "outbox in the transaction of its change; a relay publishes them to the topic exchange, persistent "
                "and confirmed. Each consumer queue is a quorum queue; a consumer applies a message once (its inbox "
                "refuses a redelivery), retries a transient failure through delay queues, and dead-letters a "
                "permanent one. With no BROKER_URL (the embedded mode) the same messages pass in-process instead."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "rabbitmq": {
                "host": "{host}",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "The RabbitMQ of BROKER_URL.",
                "variables": {"host": {"default": "localhost:5672", "description": "BROKER_URL's host and port."}},
            }
        },
        "channels": {**_routing_key_channels(), **_queue_channels(), **_dead_letter_channels()},
        "operations": {**_send_operations(), **_receive_operations(), **_failure_operations()},
        "components": {"schemas": schemas, "messages": messages},
    }


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in path)}


def _message(message: MessageType) -> dict[str, Any]:
    return {
        "name": message.routing_key,
        "title": message.routing_key,
        "summary": message.summary,
        "contentType": CONTENT_TYPE,
        "headers": _ref("components", "schemas", "envelope.headers"),
        "payload": _ref("components", "schemas", message.routing_key),
        "correlationId": {
            "description": "The AMQP property correlation_id.",
            "location": "$message.header#/correlation_id",
        },
        "tags": [{"name": message.kind}, {"name": message.producer}],
        "bindings": {
            "amqp": {
                "contentEncoding": CONTENT_ENCODING,
                "messageType": message.routing_key,
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
        "x-kind": message.kind,
        "x-producer": message.producer,
        "x-consumers": bus.consumers_for(message.routing_key),
        "x-amqp-properties": envelope_properties_schema(message.routing_key),
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER_MESSAGE,
        "title": "dead letter",
        "summary": "A message a consumer gave up on, as it was received, with why. The worker stores it as a row.",
        "headers": _ref("components", "schemas", "dead-letter.headers"),
        "payload": {"description": "The original body, whatever it was (it may not even be JSON)."},
        "x-amqp-properties": envelope_properties_schema(),
    }


def _exchange_binding(exchange: Exchange) -> dict[str, Any]:
    return {
        "is": "routingKey",
        "bindingVersion": AMQP_BINDING_VERSION,
        "exchange": {
            "name": exchange.name,
            "type": exchange.type,
            "durable": exchange.durable,
            "autoDelete": exchange.auto_delete,
            "vhost": "/",
        },
    }


def _queue_binding(queue: Queue) -> dict[str, Any]:
    binding: dict[str, Any] = {
        "is": "queue",
        "bindingVersion": AMQP_BINDING_VERSION,
        "queue": {
            "name": queue.name,
            "durable": queue.durable,
            "exclusive": queue.exclusive,
            "autoDelete": queue.auto_delete,
            "vhost": "/",
        },
    }
    # kombu sets queue_arguments from its table of attributes, and its annotations leave it out.
    arguments = queue.queue_arguments  # type: ignore[attr-defined]
    if arguments:
        binding["x-arguments"] = dict(arguments)
    bound = sorted((b.exchange.name, b.routing_key or "") for b in queue.bindings or ())
    if not bound and queue.exchange is not None and queue.exchange.name:
        bound = [(queue.exchange.name, queue.routing_key or "")]
    if bound:
        binding["x-bound-to"] = [{"exchange": name, "routingKey": key} for name, key in bound]
    return binding


def _channel_messages(routing_keys: list[str]) -> dict[str, Any]:
    return {key: _ref("components", "messages", key) for key in routing_keys}


def _routing_key_channels() -> dict[str, Any]:
    exchange = topology.main_exchange()
    return {
        key: {
            "address": key,
            "title": f"{key} on {exchange.name}",
            "description": message.summary,
            "messages": _channel_messages([key]),
            "bindings": {"amqp": _exchange_binding(exchange)},
        }
        for key, message in CATALOGUE.items()
    }


def _queue_channel_id(queue_name: str) -> str:
    return f"queue.{queue_name}"


def _queue_channels() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    for consumer in bus.consumers():
        channels[_queue_channel_id(consumer)] = {
            "address": consumer,
            "title": f"the {consumer} queue",
            "description": (
                f"The quorum queue of the {consumer} consumer, bound to the routing keys it handles but its "
                "compensations. A message that kills its consumer again and again is dead-lettered by the broker "
                "past the delivery limit."
            ),
            "messages": _channel_messages(topology.bound_keys(consumer)),
            "bindings": {"amqp": _queue_binding(topology.consumer_queue(consumer))},
        }
        compensations = topology.compensation_queue(consumer)
        if compensations is not None:
            channels[_queue_channel_id(compensations.name)] = {
                "address": compensations.name,
                "title": f"the compensations of {consumer}",
                "description": (
                    f"The quorum queue of the {consumer} consumer's compensations. The consumer's threads take "
                    "what they receive of it first, so that an undo never waits behind its backlog of new work."
                ),
                "messages": _channel_messages(bus.compensations(consumer)),
                "bindings": {"amqp": _queue_binding(compensations)},
            }
        for queue_name in topology.queue_names(consumer):
            for queue in topology.retry_queues(queue_name):
                channels[_queue_channel_id(queue.name)] = {
                    "address": queue.name,
                    "title": f"a retry delay of {queue_name}",
                    "description": (
                        f"A message whose handling failed for a passing reason waits out the TTL here, then goes "
                        f"back to the {queue_name} queue alone (through the default exchange), one attempt later."
                    ),
                    "messages": _channel_messages(topology.bound_keys(queue_name)),
                    "bindings": {"amqp": _queue_binding(queue)},
                }
    return channels


def _dead_letter_channels() -> dict[str, Any]:
    exchange = topology.dead_letter_exchange()
    return {
        exchange.name: {
            "address": None,
            "title": "the dead-letter exchange",
            "description": "Fanout: what a consumer gives up on, and what the broker dead-letters, by any key.",
            "messages": {DEAD_LETTER_MESSAGE: _ref("components", "messages", DEAD_LETTER_MESSAGE)},
            "bindings": {"amqp": _exchange_binding(exchange)},
        },
        _queue_channel_id(topology.DEAD_LETTER_QUEUE): {
            "address": topology.DEAD_LETTER_QUEUE,
            "title": "the dead-letter queue",
            "description": "Every dead letter, stored by the worker as a DeadLetter row that can be replayed.",
            "messages": {DEAD_LETTER_MESSAGE: _ref("components", "messages", DEAD_LETTER_MESSAGE)},
            "bindings": {"amqp": _queue_binding(topology.dead_letter_queue())},
        },
    }


def _publish_binding() -> dict[str, Any]:
    return {"amqp": {"deliveryMode": 2, "timestamp": True, "mandatory": False, "bindingVersion": AMQP_BINDING_VERSION}}


def _send_operations() -> dict[str, Any]:
    return {
        f"{message.producer}.send.{key}": {
            "action": "send",
            "title": f"{message.producer} publishes {key}",
            "summary": "Written to the outbox in the transaction of the change, then published and confirmed.",
            "channel": _ref("channels", key),
            "messages": [_ref("channels", key, "messages", key)],
            "bindings": _publish_binding(),
        }
        for key, message in CATALOGUE.items()
    }


def _receive_operations() -> dict[str, Any]:
    operations = {}
    for consumer in bus.consumers():
        for queue_name in topology.queue_names(consumer):
            channel = _queue_channel_id(queue_name)
            own = queue_name == consumer
            operations[f"{queue_name}.receive"] = {
                "action": "receive",
                "title": f"{consumer} consumes its queue" if own else f"{consumer} consumes its compensations",
                "summary": "Validated against the catalogue, applied once with its inbox row, acked after the commit.",
                "channel": _ref("channels", channel),
                "messages": [_ref("channels", channel, "messages", key) for key in topology.bound_keys(queue_name)],
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
            }
    operations["deadletters.receive"] = {
        "action": "receive",
        "title": "the worker stores dead letters",
        "channel": _ref("channels", _queue_channel_id(topology.DEAD_LETTER_QUEUE)),
        "messages": [_ref("channels", _queue_channel_id(topology.DEAD_LETTER_QUEUE), "messages", DEAD_LETTER_MESSAGE)],
        "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
    }
    return operations


def _failure_operations() -> dict[str, Any]:
    operations = {}
    dead_letters = topology.dead_letter_exchange().name
    for consumer in bus.consumers():
        for queue_name in topology.queue_names(consumer):
            for queue in topology.retry_queues(queue_name):
                channel = _queue_channel_id(queue.name)
                operations[f"{queue_name}.retry.{queue.name.rsplit('.', 1)[-1]}"] = {
                    "action": "send",
                    "title": f"{consumer} delays a retry of {queue_name}",
                    "channel": _ref("channels", channel),
                    "messages": [_ref("channels", channel, "messages", key) for key in topology.bound_keys(queue_name)],
                    "bindings": _publish_binding(),
                }
        operations[f"{consumer}.dead-letter"] = {
            "action": "send",
            "title": f"{consumer} gives up on a message",
            "channel": _ref("channels", dead_letters),
            "messages": [_ref("channels", dead_letters, "messages", DEAD_LETTER_MESSAGE)],
            "bindings": _publish_binding(),
        }
    return operations
