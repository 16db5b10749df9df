"""Hypothesis strategies for hostile messages: bodies, headers and properties of every shape a publisher can put
on the wire, each message meant for a consumer's queue or for the dead-letter queue itself.

None of them can be handled: every body either is not a JSON object or carries an `order_id` that is not a
UUID, which every type of the catalogue requires. So each one must end as a stored dead letter. Every value
here is one py-amqp can publish. The in-process tests take them all; the end-to-end one asks for
`through_broker=True`, which leaves out the one value RabbitMQ itself refuses at the door (a NaN or infinite
double in a header closes the publisher's connection with 541 INTERNAL_ERROR), as such a message never reaches
a consumer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from messaging.catalogue import CATALOGUE, validate_payload
from messaging.errors import InvalidPayloadError
from messaging.topology import DEAD_LETTER_QUEUE

MARKER = "x-hostile-marker"
CONSUMER_QUEUES = ["payments", "inventory", "saga"]
FIELDS = sorted({name for message_type in CATALOGUE.values() for name in message_type.fields})


@dataclass(frozen=True)
class HostileMessage:
    queue: str
    body: bytes
    properties: dict[str, Any]
    headers: dict[str, Any] = field(default_factory=dict)

    def marked(self, marker: str) -> HostileMessage:
        """The same message with `marker` in a header of its own, to find its dead letter by."""
        return HostileMessage(self.queue, self.body, self.properties, {**self.headers, MARKER: marker})

    @property
    def has_no_id(self) -> bool:
        return self.properties.get("message_id") in (None, "", b"")


def _fits_a_short_string(value: str | bytes) -> bool:
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return len(raw) <= 255


# Text of every kind: control characters, newlines, right-to-left marks and lone surrogates included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
short_strings = st.one_of(
    any_text,
    st.binary(max_size=40),  # mostly not UTF-8
    st.integers(129, 255).map(lambda n: "s" * n),  # longer than every column it may reach
    st.sampled_from(["", "\n", "a\r\nforged: line", "\x00", "\u202eevil", "\udcff", " "]),
).filter(_fits_a_short_string)

_decimals = st.builds(
    lambda digits, places: Decimal(digits).scaleb(-places), st.integers(-(2**31) + 1, 2**31 - 1), st.integers(0, 30)
)


def _amqp_values(*, finite: bool) -> st.SearchStrategy[Any]:
    """What a headers table can hold: scalars, and arrays and tables of them; `finite` leaves out NaN and the
    infinities."""
    scalars = st.one_of(
        short_strings,
        st.binary(max_size=200),
        st.integers(-(2**63) + 1, 2**63 - 1),
        st.floats(allow_nan=not finite, allow_infinity=not finite),
        st.booleans(),
        st.none(),
        _decimals,
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_strings.filter(bool), inner, max_size=4),
        max_leaves=12,
    )


amqp_values = _amqp_values(finite=False)
deep_values = st.integers(20, 200).map(lambda depth: _nested(depth))

# The headers our consumers and dead-letter store read, with values of every type.
_READ_HEADERS = [
    "x-attempt",
    "causation_id",
    "order_id",
    "version",
    "x-death",
    "x-delivery-count",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-sagaflow-reason",
    "x-sagaflow-queue",
    "x-sagaflow-detail",
    "x-sagaflow-traceback",
    "x-sagaflow-original",
    "correlation_id",
]


def _headers(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.dictionaries(st.sampled_from(_READ_HEADERS), values | deep_values, max_size=6),
        st.dictionaries(short_strings.filter(bool), values, max_size=5),
        st.builds(lambda size: {"large": "h" * size}, st.integers(1_000, 60_000)),
    )


headers = _headers(amqp_values)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


# JSON of every type but an object, and objects whose order_id is anything but a UUID.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
not_a_uuid = json_values.filter(lambda value: _refused_as_an_order_id(value))
wrong_payloads = st.builds(
    lambda order_id, rest: {**rest, "order_id": order_id},
    not_a_uuid,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
)


def _refused_as_an_order_id(value: Any) -> bool:
    try:
        validate_payload("order.completed", {"order_id": value})
    except InvalidPayloadError:
        return True
    return False


def bodies(*, huge: bool) -> st.SearchStrategy[bytes]:
    """Bodies of every shape; `huge` adds bodies of megabytes."""
    shapes = [
        st.integers(1, 120_000).map(lambda n: b"[" * n),  # a RecursionError in the decoder, from about 1,000
        st.integers(1, 30_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
        st.binary(max_size=300),  # mostly not UTF-8, sometimes with NUL
        any_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
        json_values.filter(lambda value: not isinstance(value, dict)).map(lambda value: json.dumps(value).encode()),
        wrong_payloads.map(lambda payload: json.dumps(payload).encode()),
        st.just(b'{"order_id": "' + b"9" * 100_000 + b'"}'),
    ]
    if huge:
        shapes.append(st.sampled_from([1, 4]).map(lambda megabytes: b'"' + b"x" * (megabytes << 20) + b'"'))
    return st.one_of(*shapes)


message_ids = st.one_of(st.none(), st.just(""), short_strings, st.uuids().map(str))
properties = st.fixed_dictionaries(
    {},
    optional={
        "message_id": message_ids,
        "type": st.sampled_from(sorted(CATALOGUE)) | short_strings,
        "correlation_id": short_strings,
        "timestamp": st.integers(0, 2**64 - 1),
        "content_type": short_strings,
        "content_encoding": short_strings,
    },
)


def hostile_messages(*, huge: bool = False, through_broker: bool = False) -> st.SearchStrategy[HostileMessage]:
    """Messages for a consumer's queue or for the dead-letter queue, none of which can be handled;
    `through_broker` keeps to those RabbitMQ accepts from a publisher."""
    return st.builds(
        HostileMessage,
        queue=st.sampled_from([*CONSUMER_QUEUES, DEAD_LETTER_QUEUE]),
        body=bodies(huge=huge),
        properties=properties.map(lambda props: {k: v for k, v in props.items() if v is not None}),
        headers=_headers(_amqp_values(finite=True)) if through_broker else headers,
    )
