"""The trace context's way across our messages (messaging.tracing), the log fields it adds, and the SDK's set-up
from OTEL_* (config.tracing): off by default, and then nothing is stored, sent or logged."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
from django.conf import settings
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from config import tracing as tracing_setup
from messaging import tracing
from messaging.models import OutboxMessage
from tests.traces import traced


@pytest.fixture
def exported():
    with traced() as exporter:
        yield exporter


def hex_ids(span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def test_with_tracing_off_nothing_is_stored_sent_or_continued():
    assert not tracing.enabled
    with tracing.span("anything") as span:
        assert span is None
        assert tracing.current_trace_context() == (None, None)
    assert tracing.extracted({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}) is None


def test_the_traceparent_of_the_current_span_goes_into_headers_and_comes_out_as_its_context(exported):
    with tracing.span("create order.created") as span:
        traceparent, tracestate = tracing.current_trace_context()
    trace_hex, span_hex = hex_ids(span)

    assert traceparent.startswith(f"00-{trace_hex}-{span_hex}-")
    assert int(traceparent[-2:], 16) & 1  # sampled (the SDK may set the "random trace id" flag beside it)
    assert tracestate is None
    headers = tracing.context_headers(traceparent, tracestate)
    assert headers == {"traceparent": traceparent}
    continued = trace.get_current_span(tracing.extracted(headers)).get_span_context()
    assert (continued.trace_id, continued.span_id, continued.is_remote) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
        True,
    )


def test_a_child_of_an_extracted_context_is_in_the_same_trace_with_the_sender_as_parent(exported):
    with tracing.span("send") as sender:
        headers = tracing.context_headers(*tracing.current_trace_context())
    with tracing.span("process", parent=tracing.extracted(headers)):
        pass

    process = next(span for span in exported.get_finished_spans() if span.name == "process")
    assert process.context.trace_id == sender.get_span_context().trace_id
    assert process.parent.span_id == sender.get_span_context().span_id


def test_the_tracestate_travels_with_the_traceparent(exported):
    incoming = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=abc,other=1",
    }
    with tracing.span("handle", parent=tracing.extracted(incoming)):
        traceparent, tracestate = tracing.current_trace_context()

    assert traceparent.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert tracestate == "vendor=abc,other=1"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        None,
        {"traceparent": "garbage"},
        {"traceparent": 12345},
        {"traceparent": b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"tracestate": "vendor=abc"},
    ],
)
def test_headers_without_a_usable_traceparent_continue_no_trace(exported, headers):
    assert tracing.extracted(headers) is None


def test_a_sampled_out_span_stores_its_context_marked_unsampled_and_its_messages_stay_unsampled(exported):
    sampled_out = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(sampled_out)):
        traceparent, _ = tracing.current_trace_context()
    assert traceparent == f"00-{1:032x}-{2:016x}-00"

    with tracing.span("process payments", parent=tracing.extracted({"traceparent": traceparent})) as span:
        assert not span.is_recording()
        assert tracing.traceparent_of(span) is None
    assert exported.get_finished_spans() == ()


def test_no_span_running_stores_no_context(exported):
    assert tracing.current_trace_context() == (None, None)


def test_the_wire_headers_carry_the_row_context_or_the_sender_span_context():
    row = OutboxMessage(routing_key="order.created", payload={}, headers={"version": 1}, order_id="o-1")
    assert "traceparent" not in row.wire_headers()

    row.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    row.tracestate = "vendor=abc"
    assert row.wire_headers()["traceparent"] == row.traceparent
    assert row.wire_headers()["tracestate"] == "vendor=abc"
    sender = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    assert row.wire_headers(traceparent=sender)["traceparent"] == sender


def json_line(message: str = "hello") -> dict:
    """One record written through the project's console handler: its filters, then its JSON formatter."""
    configurator = logging.config.DictConfigurator(settings.LOGGING)
    formatter = configurator.configure_formatter(dict(settings.LOGGING["formatters"]["json"]))
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    for name in settings.LOGGING["handlers"]["console"]["filters"]:
        handler.addFilter(configurator.configure_filter(dict(settings.LOGGING["filters"][name])))
    logger = logging.Logger("sagaflow.test")
    logger.addHandler(handler)
    logger.warning(message)
    return json.loads(buffer.getvalue())


def test_a_json_line_in_a_span_carries_its_trace_id_and_span_id_beside_the_correlation_id(exported):
    from messaging import correlation

    with correlation.bound(correlation_id="corr-9"), tracing.span("handle") as span:
        line = json_line()

    assert (line["trace_id"], line["span_id"]) == hex_ids(span)
    assert line["correlation_id"] == "corr-9"


def test_a_json_line_outside_a_span_or_with_tracing_off_has_no_trace_fields(exported):
    assert not {"trace_id", "span_id"} & set(json_line())
    tracing.enabled = False
    with tracing.span("handle"):
        assert not {"trace_id", "span_id"} & set(json_line())


@pytest.fixture
def otel_env(monkeypatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    tracing.enabled = False


def test_tracing_is_off_unless_an_exporter_is_named(otel_env):
    assert tracing_setup.setup("web") is False
    otel_env.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing_setup.setup("web") is False
    otel_env.setenv("OTEL_TRACES_EXPORTER", "zipkin-by-carrier-pigeon")
    assert tracing_setup.setup("web") is False
    assert not tracing.enabled


def test_the_service_name_defaults_to_the_process_kind_unless_set(otel_env):
    assert [tracing_setup.service_name(kind) for kind in ("web", "worker", "beat")] == [
        "sagaflow-web",
        "sagaflow-worker",
        "sagaflow-beat",
    ]
    otel_env.setenv("OTEL_SERVICE_NAME", "shop-api")
    assert tracing_setup.service_name("web") == "shop-api"


def test_statements_outside_any_span_are_not_sampled_and_those_inside_are():
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision

    sampler = tracing_setup.statements_in_traces(ALWAYS_ON)
    inside = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(1)))
    )

    assert sampler.should_sample(None, 7, "SELECT", trace.SpanKind.CLIENT).decision == Decision.DROP
    assert sampler.should_sample(inside, 7, "SELECT", trace.SpanKind.CLIENT).decision == Decision.RECORD_AND_SAMPLE
    assert sampler.should_sample(None, 7, "POST", trace.SpanKind.SERVER).decision == Decision.RECORD_AND_SAMPLE
