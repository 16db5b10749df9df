"""Reading exported spans in tests: the console exporter's lines, or the in-memory exporter's spans, as the same
dicts (the SDK's own JSON form), and the check that one order is one trace that follows its messages' causation."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

Span = dict[str, Any]


def spans_in_output(text: str) -> list[Span]:
    """The spans that OTEL_TRACES_EXPORTER=console wrote among a process's other output (one JSON object a line)."""
    spans = []
    for raw in text.splitlines():
        if raw.startswith("{") and '"span_id"' in raw:
            try:
                found = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict) and "context" in found:
                spans.append(found)
    return spans


def as_dicts(readable_spans: Iterable[Any]) -> list[Span]:
    """Spans of the SDK's in-memory exporter, in the form the console exporter writes them."""
    return [json.loads(span.to_json(indent=None)) for span in readable_spans]


def trace_id(span: Span) -> str:
    return span["context"]["trace_id"]


def span_id(span: Span) -> str:
    return span["context"]["span_id"]


def attribute(span: Span, name: str, default: Any = None) -> Any:
    return (span.get("attributes") or {}).get(name, default)


def service(span: Span) -> str:
    return span.get("resource", {}).get("attributes", {}).get("service.name", "")


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    """The span's parent, its parent's parent, and so on, as far as the exported spans go."""
    chain, seen = [], set()
    parent = span.get("parent_id")
    while parent and parent in by_id and parent not in seen:
        seen.add(parent)
        chain.append(by_id[parent])
        parent = by_id[parent].get("parent_id")
    return chain


def messaging_spans(spans: list[Span], operation: str, message_id: str) -> list[Span]:
    return [
        span
        for span in spans
        if attribute(span, "messaging.operation.type") == operation
        and attribute(span, "messaging.message.id") == message_id
    ]


def assert_one_trace_following_causation(spans: list[Span], request: Span, messages: list[dict[str, str]]) -> str:
    """One order's spans form one trace, rooted at the HTTP `request` span, whose parent links follow the
    messages' causation: each message's "create" span descends from the processing of the message that caused it
    (or from the request, for the first), and each processing of a message descends from its "create" span.

    `messages`: the order's outbox rows as dicts of message_id, causation_id and routing_key. Returns the trace id.
    """
    the_trace = trace_id(request)
    in_trace = [span for span in spans if trace_id(span) == the_trace]
    by_id = {span_id(span): span for span in in_trace}
    assert messages, "the order wrote no message"
    for message in messages:
        created = messaging_spans(spans, "create", message["message_id"])
        assert len(created) == 1, f"{message['routing_key']}: {len(created)} create spans"
        assert trace_id(created[0]) == the_trace, f"{message['routing_key']} was written in another trace"
        lineage = ancestors(created[0], by_id)
        if message["causation_id"]:
            causes = [
                span
                for span in lineage
                if attribute(span, "messaging.operation.type") == "process"
                and attribute(span, "messaging.message.id") == message["causation_id"]
            ]
            assert causes, f"{message['routing_key']} does not descend from the processing of its cause"
        else:
            assert request in lineage, f"{message['routing_key']} does not descend from the HTTP request"
        for processed in messaging_spans(spans, "process", message["message_id"]):
            assert trace_id(processed) == the_trace, f"{message['routing_key']} was processed in another trace"
            assert created[0] in ancestors(processed, by_id), f"{message['routing_key']}: processing not under create"
    return the_trace


def consumers_in(spans: list[Span], the_trace: str) -> set[str]:
    return {
        attribute(span, "messaging.consumer.group.name")
        for span in spans
        if trace_id(span) == the_trace and attribute(span, "messaging.operation.type") == "process"
    } - {None}


@contextlib.contextmanager
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process for a block, as OTEL_TRACES_EXPORTER turns it on, with its spans kept in memory.
    The Django and psycopg instrumentations are removed afterwards, and the database connections are closed on
    both sides, so that each connection is made by the instrumentation in force."""
    from django.db import connections
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from config import tracing as tracing_setup
    from messaging import tracing

    exporter = InMemorySpanExporter()
    tracing_setup.install(SimpleSpanProcessor(exporter), kind="web")
    connections.close_all()
    try:
        yield exporter
    finally:
        tracing.enabled = False
        exporter.shutdown()
        DjangoInstrumentor().uninstrument()
        PsycopgInstrumentor().uninstrument()
        connections.close_all()
