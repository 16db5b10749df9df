"""What py-amqp and kombu decode off the wire, made tolerant of what a foreign publisher may send.

py-amqp decodes a delivery's short strings (its properties: message_id, type, correlation_id…, and the routing
key) as strict UTF-8, and a value it cannot decode raises inside `drain_events`, before any consumer code
runs. The consumer then loses its connection, the message comes back, and it fails again, together with every
message delivered on that connection, until the broker's delivery limit dead-letters them all (and the
dead-letter queue, which has no such limit, would stop for good). RabbitMQ passes such bytes on unchanged.

`install()` wraps the two decoders: what they decode still comes out as before; only when they raise is the
frame decoded again with a short string that is not UTF-8 kept as bytes (as py-amqp already does for header
values) and a headers table that cannot be decoded kept whole, base64-encoded, under UNDECODABLE_HEADERS.
kombu, for its part, decompresses a body whose headers hold `compression`, and a value it cannot apply
(any such header on a body that was never compressed) raises in `drain_events` too: the body is then left as
it came. The consumer then sees a message it can dead-letter with its reason.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from struct import unpack_from
from typing import Any

import kombu.message
from amqp import abstract_channel, serialization
from amqp.spec import Basic

UNDECODABLE_HEADERS = "x-sagaflow-undecodable-headers"

# The content-header properties of basic, in wire order: (flag bit, name, AMQP type).
_BASIC_PROPERTIES = [
    (0x8000, "content_type", "s"),
    (0x4000, "content_encoding", "s"),
    (0x2000, "application_headers", "F"),
    (0x1000, "delivery_mode", "o"),
    (0x0800, "priority", "o"),
    (0x0400, "correlation_id", "s"),
    (0x0200, "reply_to", "s"),
    (0x0100, "expiration", "s"),
    (0x0080, "message_id", "s"),
    (0x0040, "timestamp", "L"),
    (0x0020, "type", "s"),
    (0x0010, "user_id", "s"),
    (0x0008, "app_id", "s"),
    (0x0004, "cluster_id", "s"),
]
# The method frames whose arguments are bits, integers and short strings only: basic.deliver, get-ok, return…
_SIMPLE_ARGUMENTS = set("bBoslL")
_installed = False


def install() -> None:
    """Make this process's py-amqp decoding tolerant (see the module's docstring). Idempotent."""
    global _installed
    if _installed:
        return
    strict_properties = serialization.PROPERTY_CLASSES[Basic.CLASS_ID]
    strict_arguments = abstract_channel.loads
    serialization.PROPERTY_CLASSES[Basic.CLASS_ID] = _falling_back(strict_properties, tolerant_properties)
    abstract_channel.loads = _falling_back(strict_arguments, tolerant_arguments)
    kombu.message.decompress = _falling_back(kombu.message.decompress, _as_it_came)
    _installed = True


def _falling_back(strict: Callable, tolerant: Callable) -> Callable:
    def decode(*args: Any) -> Any:
        try:
            return strict(*args)
        except Exception:  # noqa: BLE001 - decoded again, leniently; what is still wrong raises from there
            return tolerant(*args)

    return decode


def _as_it_came(body: bytes, compression: Any) -> bytes:
    return body


def tolerant_properties(buf: bytes, offset: int) -> tuple[dict[str, Any], int]:
    """Decode basic's content-header properties as py-amqp does, keeping what is not UTF-8 as bytes."""
    (flags,) = unpack_from(">H", buf, offset)
    offset += 2
    properties: dict[str, Any] = {}
    for bit, name, kind in _BASIC_PROPERTIES:
        if flags & bit:
            properties[name], offset = _read(kind, buf, offset)
    return properties, offset


def tolerant_arguments(format: str, buf: bytes, offset: int) -> tuple[list[Any], int]:
    """Decode a method frame's arguments as py-amqp does, keeping a short string that is not UTF-8 as bytes.
    Only for frames of bits, integers and short strings (a delivery's); any other raises as before."""
    if not set(format) <= _SIMPLE_ARGUMENTS:
        return serialization.loads(format, buf, offset)
    values: list[Any] = []
    bits = bitcount = 0
    for kind in format:
        if kind == "b":
            if not bitcount:
                bits, bitcount = buf[offset], 8
                offset += 1
            values.append(bool(bits & 1))
            bits, bitcount = bits >> 1, bitcount - 1
            continue
        bits = bitcount = 0
        value, offset = _read(kind, buf, offset)
        values.append(value)
    return values, offset


def _read(kind: str, buf: bytes, offset: int) -> tuple[Any, int]:
    if kind == "s":
        length = buf[offset]
        raw = bytes(buf[offset + 1 : offset + 1 + length])
        try:
            return raw.decode("utf-8", "surrogatepass"), offset + 1 + length
        except UnicodeDecodeError:
            return raw, offset + 1 + length
    if kind == "F":
        (length,) = unpack_from(">I", buf, offset)
        end = offset + 4 + length
        try:
            (table,), _ = serialization.loads("F", buf, offset)
        except Exception:  # noqa: BLE001 - an odd value or a table too deep: keep its bytes instead
            table = {UNDECODABLE_HEADERS: base64.b64encode(bytes(buf[offset + 4 : end])).decode()}
        return table, end
    size, code = {"o": (1, ">B"), "B": (2, ">H"), "l": (4, ">I"), "L": (8, ">Q")}[kind]
    (value,) = unpack_from(code, buf, offset)
    return value, offset + size


# Besides the headers table: every short-string property at its longest, the timestamp and the frame's own bytes.
_PROPERTIES_BESIDE_HEADERS = 8 * 256 + 64


def fits_one_frame(headers: dict[str, Any], frame_max: int) -> bool:
    """Whether a message with these headers can be published: they encode, and its properties fit the one
    content-header frame AMQP gives them (RabbitMQ closes the connection of a publisher that sends more)."""
    try:
        table = serialization.dumps("F", [headers])
    except Exception:  # noqa: BLE001 - a value py-amqp cannot encode, or a table nested too deep
        return False
    return len(table) + _PROPERTIES_BESIDE_HEADERS <= frame_max
