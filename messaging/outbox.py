"""`publish()`: the only way any app emits a message."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from opentelemetry.trace import SpanKind

from config.kernel import sql
from messaging import correlation, tracing
from messaging.catalogue import SCHEMA_VERSION, validate_payload
from messaging.models import OutboxMessage

# Sent by the trigger of migration 0004 on every insert into the outbox, at commit.
NOTIFY_CHANNEL = "sagaflow_outbox"


# Set while a worker's consumer thread may hand the rows its handlers write to the consumers it hosts
# (messaging/handoff.py): it leases the rows it will take.
handoff_collector: ContextVar[Any] = ContextVar("handoff_collector", default=None)


class OutboxOutsideTransactionError(RuntimeError):
    """publish() was called with no transaction open; the message would not be atomic with its cause."""


def publish(routing_key: str, payload: dict[str, Any], *, order_id: str = "") -> OutboxMessage:
    """Insert a message into the outbox, in the caller's transaction. Never sends on the spot.

    Must run inside `transaction.atomic()`. The correlation and causation ids come from the current context
    (the HTTP request, or the message being handled). The relay is woken when the transaction commits.
    """
    if not connection.in_atomic_block:
        raise OutboxOutsideTransactionError(f"publish({routing_key!r}) must run inside transaction.atomic()")
    validate_payload(routing_key, payload)
    order_id = order_id or str(payload.get("order_id", ""))
    message = OutboxMessage(
        routing_key=routing_key,
        payload=payload,
        headers={"version": SCHEMA_VERSION},
        correlation_id=correlation.correlation_id.get() or correlation.new_id(),
        causation_id=correlation.message_id.get() or "",
        order_id=order_id,
    )
    collector = handoff_collector.get()
    if collector is not None:
        collector.lease(message)
    if tracing.enabled:
        _insert_traced(message)
    else:
        sql.insert(message)
    _wake_relay_on_commit()
    return message


def _insert_traced(message: OutboxMessage) -> None:
    """Insert the row inside a span of its own ("create"), whose context the row keeps for the relay."""
    attributes = tracing.messaging_attributes(
        operation="create",
        destination=settings.MESSAGING_EXCHANGE,
        routing_key=message.routing_key,
        message_id=str(message.message_id),
        correlation_id=message.correlation_id,
    )
    with tracing.span(f"create {message.routing_key}", kind=SpanKind.PRODUCER, attributes=attributes) as span:
        message.traceparent, message.tracestate = tracing.current_trace_context()
        # At once, also inside sql.batched(): the span times the insert, and names the row's id.
        sql.insert(message, at_once=True)
        tracing.set_attributes(span, sagaflow__outbox__id=message.pk, sagaflow__order_id=message.order_id)


def _wake_relay_on_commit() -> None:
    # With PostgreSQL, the relays are woken by the outbox's insert trigger; with no database notification
    # (SQLite), they find the rows on their next sweep.
    if settings.MESSAGING_TRANSPORT == "inprocess":
        from messaging import inprocess

        transaction.on_commit(inprocess.wake)


def republish(
    *,
    message_id: str,
    routing_key: str,
    payload: Any,
    target_queue: str,
    correlation_id: str = "",
    causation_id: str = "",
    order_id: str = "",
    headers: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Queue a stored message again, with its original id, for one consumer queue. Must run in a transaction.

    Used to replay dead letters: the payload is not re-validated here (the consumer validates it), and the
    original `message_id` lets the consumer's inbox refuse a second effect.
    """
    if not connection.in_atomic_block:
        raise OutboxOutsideTransactionError("republish() must run inside transaction.atomic()")
    message = OutboxMessage.objects.create(
        message_id=message_id,
        routing_key=routing_key,
        payload=payload,
        headers=headers or {"version": SCHEMA_VERSION},
        correlation_id=correlation_id or correlation.correlation_id.get() or correlation.new_id(),
        causation_id=causation_id,
        order_id=order_id,
        target_queue=target_queue,
    )
    _wake_relay_on_commit()
    return message


def order_trace_context(order_id: str):
    """The trace context of an order's latest message, so that work done for the order later (the timeout sweep)
    joins the order's trace. None when tracing is off or no message of the order kept one."""
    if not tracing.enabled or not order_id:
        return None
    stored = (
        OutboxMessage.objects.filter(order_id=order_id, traceparent__isnull=False)
        .order_by("-id")
        .values(tracing.TRACEPARENT, tracing.TRACESTATE)
        .first()
    )
    return tracing.extracted(stored)
