"""Trace context across our own messages: the W3C `traceparent` of the code that writes an outbox row is kept on
the row, the relay sends it as AMQP headers, and each consumer continues the trace from them.

kombu and py-amqp have no OpenTelemetry instrumentation, so the spans and their context are ours. Attribute
names follow the OpenTelemetry messaging semantic conventions. `config.tracing.setup()` turns tracing on; until
it does (OTEL_TRACES_EXPORTER unset or "none"), every helper here returns at its first line: no span, no context
stored on a row, no header sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_TRACEPARENT_LENGTH = 55  # version-traceid-spanid-flags, W3C Trace Context level 1
MAX_TRACESTATE_LENGTH = 512  # the length the W3C recommendation asks every vendor to pass on whole

# Set by config.tracing.setup() once a tracer provider is installed; read on every message, so a plain global.
enabled = False

_propagator = TraceContextTextMapPropagator()
_tracer = trace.get_tracer("sagaflow.messaging")


def tracer() -> trace.Tracer:
    return _tracer


def current_trace_context() -> tuple[str | None, str | None]:
    """(traceparent, tracestate) of the span running now, to store on an outbox row; (None, None) when tracing
    is off or no span runs. A sampled-out span's context is stored too, with its flag saying so: the messages it
    causes then stay out of the trace store, where without it each consumer would start a trace of its own."""
    if not enabled:
        return None, None
    if not trace.get_current_span().get_span_context().is_valid:
        return None, None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    traceparent = carrier.get(TRACEPARENT)
    if not traceparent or len(traceparent) > MAX_TRACEPARENT_LENGTH:
        return None, None
    tracestate = carrier.get(TRACESTATE) or None
    if tracestate is not None and len(tracestate) > MAX_TRACESTATE_LENGTH:
        tracestate = None
    return traceparent, tracestate


def context_headers(traceparent: str | None, tracestate: str | None) -> dict[str, str]:
    """The AMQP headers that carry a stored trace context: none when there is none."""
    if not traceparent:
        return {}
    return {TRACEPARENT: traceparent, TRACESTATE: tracestate} if tracestate else {TRACEPARENT: traceparent}


def extracted(headers: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The trace context that headers (or a row's stored columns) carry, or None. Values of any type are taken as
    they come: the propagator ignores a traceparent that does not parse, and so does this."""
    if not enabled or not headers:
        return None
    carrier = {key: value for key in (TRACEPARENT, TRACESTATE) if isinstance(value := headers.get(key), str) and value}
    if TRACEPARENT not in carrier:
        return None
    found = _propagator.extract(carrier)
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def span_context_in(found: otel_context.Context) -> trace.SpanContext:
    """The span context a context of `extracted()` holds, for a link."""
    return trace.get_current_span(found).get_span_context()


def traceparent_of(target: Span | None) -> str | None:
    """The traceparent that continues `target`, for the headers of the message it sends."""
    if target is None or not target.is_recording():
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(target))
    return carrier.get(TRACEPARENT)


def messaging_system() -> str:
    """`messaging.system`: RabbitMQ in the production topology; the embedded transport is none of the
    convention's well-known systems, so it is named as ours."""
    from django.conf import settings

    return "rabbitmq" if settings.MESSAGING_TRANSPORT == "amqp" else "sagaflow_inprocess"


def messaging_attributes(
    *,
    operation: str,
    destination: str,
    routing_key: str = "",
    message_id: str = "",
    correlation_id: str = "",
    consumer: str = "",
) -> dict[str, Any]:
    """The messaging semantic conventions' attributes of one operation on one message."""
    attributes: dict[str, Any] = {
        "messaging.system": messaging_system(),
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": destination,
    }
    if routing_key:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if message_id:
        attributes["messaging.message.id"] = message_id
    if correlation_id:
        attributes["messaging.message.conversation_id"] = correlation_id
    if consumer:
        attributes["messaging.consumer.group.name"] = consumer
    return attributes


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    links: list[Link] | None = None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span made current for the block, or nothing at all (None) when tracing is off. With `parent`, the span
    continues that context rather than the current one."""
    if not enabled:
        yield None
        return
    with _tracer.start_as_current_span(name, context=parent, kind=kind, links=links, attributes=attributes) as current:
        yield current


def set_attributes(target: Span | None, **attributes: Any) -> None:
    """Attributes on a span of `span()`, which is None when tracing is off. Dots are spelt `__`."""
    if target is not None and target.is_recording():
        target.set_attributes({key.replace("__", "."): value for key, value in attributes.items() if value != ""})


def log_fields() -> dict[str, str]:
    """`trace_id` and `span_id` of the current recorded span (lowercase hex, as trace viewers show them), for a
    log line written later, outside it; empty when there is none."""
    if not enabled:
        return {}
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": format(span_context.trace_id, "032x"), "span_id": format(span_context.span_id, "016x")}


class TraceContextLogFilter(logging.Filter):
    """Adds `trace_id` and `span_id` to each record written inside a recorded span (or given them by `log_fields`
    when it was written after the span), beside the correlation fields of `LogContextFilter`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if enabled and not hasattr(record, "trace_id"):
            for name, value in log_fields().items():
                setattr(record, name, value)
        return True
