"""One delivery, start to finish, whatever the transport: decode, dispatch, and decide what to do with it.

The transport acts on the verdict: ack, retry later through a delay, or store a dead letter, and acks the
original only after that is done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, StatusCode

from messaging import bus, metrics, tracing
from messaging.correlation import clean_id, printable
from messaging.deadletters import FailedDelivery, dead_letter_record, storable_body
from messaging.envelope import Envelope, decode
from messaging.errors import PermanentMessageError, is_transient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    action: str  # "ack", "retry", "dead_letter", or in a batch "alone"
    envelope: Envelope | None = None
    delay_s: float = 0.0
    failure: FailedDelivery | None = None


ALONE = Verdict("alone")


def retry_delay_s(attempt: int) -> float:
    """Exponential backoff: base, 2×base, 4×base… for the retry after `attempt` failed."""
    return settings.MESSAGING_RETRY_BASE_S * (2 ** (attempt - 1))


def handle_delivery(
    consumer: str,
    body: bytes | str,
    properties: dict[str, Any],
    headers: dict[str, Any],
    routing_key: str,
    *,
    in_batch: bool = False,
) -> Verdict:
    """Handle one delivery for `consumer` and say what the transport must do with it. Never raises: whatever
    the body, the headers or the properties hold, the verdict is "ack", "retry" or "dead_letter" with a reason.

    `in_batch`: in the caller's transaction, with others (see `bus.dispatch`). A delivery that would not be
    acked then gets "alone", with nothing logged or counted: the caller rolls the batch back and hands it over
    again alone, and that attempt classifies, logs and counts its failure."""
    if tracing.enabled:
        return _traced(consumer, body, properties, headers, routing_key, in_batch=in_batch)
    return _handled(consumer, body, properties, headers, routing_key, in_batch=in_batch)


def _traced(
    consumer: str,
    body: bytes | str,
    properties: dict[str, Any],
    headers: dict[str, Any],
    routing_key: str,
    *,
    in_batch: bool,
) -> Verdict:
    """`_handled` in a "process" span that continues the trace of the headers' traceparent: a child of the
    span that sent the message. In a batch, it is also linked to the batch's span."""
    known = properties if isinstance(properties, dict) else {}
    parent = tracing.extracted(headers if isinstance(headers, dict) else None)
    attributes = tracing.messaging_attributes(
        operation="process",
        destination=consumer,
        routing_key=clean_id(routing_key),
        message_id=clean_id(known.get("message_id")),
        correlation_id=clean_id(known.get("correlation_id")),
        consumer=consumer,
    )
    batch = trace.get_current_span().get_span_context() if in_batch else None
    links = [Link(batch)] if batch is not None and batch.is_valid else None
    with tracing.span(
        f"process {consumer}", kind=SpanKind.CONSUMER, parent=parent, links=links, attributes=attributes
    ) as span:
        verdict = _handled(consumer, body, properties, headers, routing_key, in_batch=in_batch)
        envelope = verdict.envelope
        tracing.set_attributes(
            span,
            sagaflow__verdict=verdict.action,
            sagaflow__message__type=envelope.routing_key if envelope else "",
            sagaflow__order_id=envelope.order_id if envelope else "",
            sagaflow__attempt=envelope.attempt if envelope else 1,
        )
        if span is not None and verdict.failure is not None:
            span.set_status(StatusCode.ERROR, f"dead-lettered: {verdict.failure.reason}")
        elif span is not None and verdict.action == "retry":
            tracing.set_attributes(span, sagaflow__retry__delay_s=verdict.delay_s)
            span.set_status(StatusCode.ERROR, "transient failure: retried later")
    return verdict


def _handled(
    consumer: str,
    body: bytes | str,
    properties: dict[str, Any],
    headers: dict[str, Any],
    routing_key: str,
    *,
    in_batch: bool,
) -> Verdict:
    try:
        return _verdict(consumer, body, properties, headers, routing_key, in_batch=in_batch)
    except Exception as error:  # noqa: BLE001 - even classifying failed: the delivery is still a dead letter
        if in_batch:
            return ALONE
        logger.error("a delivery to %s could not be classified; dead-lettered as it is", consumer, exc_info=error)
        wrapped = PermanentMessageError("unclassified", f"{type(error).__name__}: {printable(error)}")
        message_id = properties.get("message_id") if isinstance(properties, dict) else None
        return _dead(consumer, message_id, routing_key, body, {}, wrapped, attempts=1, cause=error)


def _verdict(
    consumer: str,
    body: bytes | str,
    properties: dict[str, Any],
    headers: dict[str, Any],
    routing_key: str,
    *,
    in_batch: bool,
) -> Verdict:
    properties = properties if isinstance(properties, dict) else {}
    headers = headers if isinstance(headers, dict) else {}
    # What a dead letter keeps: the headers, and the correlation id as it came (cleaned for the envelope only).
    stored_headers = {**headers, "correlation_id": properties.get("correlation_id") or ""}
    try:
        envelope = decode(body, properties, headers, routing_key)
    except PermanentMessageError as error:
        if in_batch:
            return ALONE
        return _dead(
            consumer,
            properties.get("message_id"),
            properties.get("type") or routing_key,
            body,
            stored_headers,
            error,
            attempts=1,
        )
    try:
        bus.dispatch(consumer, envelope, in_batch=in_batch)
        return Verdict("ack", envelope)
    except Exception as error:  # noqa: BLE001 - every failure is classed, none may kill the consumer
        if in_batch:
            return ALONE
        return _classified(consumer, envelope, body, stored_headers, error)


def _classified(
    consumer: str, envelope: Envelope, body: bytes | str, headers: dict[str, Any], error: Exception
) -> Verdict:
    """What to do with a delivery whose handling raised `error`: dead-letter it or retry it later."""
    if isinstance(error, PermanentMessageError):
        return _dead(consumer, envelope.message_id, envelope.routing_key, body, headers, error, envelope.attempt)
    if not is_transient(error):
        logger.error("handler of %s failed permanently", envelope.routing_key, exc_info=error)
        wrapped = PermanentMessageError("handler_error", f"{type(error).__name__}: {error}")
        wrapped.__cause__ = error
        return _dead(
            consumer, envelope.message_id, envelope.routing_key, body, headers, wrapped, envelope.attempt, error
        )
    drop_broken_connection()
    if envelope.attempt >= settings.MESSAGING_MAX_ATTEMPTS:
        wrapped = PermanentMessageError("retries_exhausted", f"{type(error).__name__}: {error}")
        return _dead(
            consumer, envelope.message_id, envelope.routing_key, body, headers, wrapped, envelope.attempt, error
        )
    delay = retry_delay_s(envelope.attempt)
    metrics.RETRIES.labels(consumer, envelope.routing_key).inc()
    logger.warning(
        "transient failure of %s (attempt %s), retry in %.2fs: %s",
        envelope.routing_key,
        envelope.attempt,
        delay,
        printable(error),
    )
    return Verdict("retry", envelope, delay_s=delay)


def _dead(
    consumer: str,
    message_id: Any,
    routing_key: Any,
    body: bytes | str,
    headers: dict[str, Any],
    error: PermanentMessageError,
    attempts: int,
    cause: BaseException | None = None,
) -> Verdict:
    """A dead-letter verdict. The ids, type and headers go as they came: the store cuts what does not fit."""
    metrics.DEAD_LETTERED.labels(consumer, error.reason).inc()
    failure = FailedDelivery(
        message_id=message_id,
        routing_key=routing_key,
        queue=consumer,
        body=storable_body(body),
        headers=dict(headers),
        reason=error.reason,
        detail=error.detail,
        attempts=attempts,
        error=cause or error,
    )
    return Verdict("dead_letter", failure=failure)


def store_dead_letter(verdict: Verdict) -> None:
    """Store the dead letter of a verdict. Raises when the database is down: the caller must not ack then."""
    assert verdict.failure is not None
    dead_letter_record(verdict.failure)


def drop_broken_connection() -> None:
    # A connection that failed mid-transaction is useless; the next message opens a fresh one.
    try:
        if connection.connection is not None and not connection.is_usable():
            connection.close()
    except Exception:  # noqa: BLE001
        connection.close()
