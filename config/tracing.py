"""OpenTelemetry's SDK, set up from the standard OTEL_* variables when a process starts (web, worker, beat).

Off by default: with OTEL_TRACES_EXPORTER unset or "none", nothing of the SDK is loaded, no tracer provider is
installed and the API stays the no-op it is. Otherwise:

- OTEL_TRACES_EXPORTER: "otlp" (OTLP over HTTP/protobuf, to OTEL_EXPORTER_OTLP_ENDPOINT or
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, default http://localhost:4318) or "console" (one JSON object a line on
  standard output, each span as the SDK writes it);
- OTEL_SERVICE_NAME: sagaflow-web, sagaflow-worker or sagaflow-beat unless it is set;
- OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG: read by the SDK (default parentbased_always_on);
- OTEL_BSP_* (batching and its delay), OTEL_RESOURCE_ATTRIBUTES: read by the SDK too;
- OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: "psycopg" and/or "django" to leave those spans out.

The Django and psycopg instrumentations are installed with it: a span for each request, one for each statement.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

logger = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "none")


def exporter_name() -> str:
    return os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"


def service_name(kind: str) -> str:
    return os.environ.get("OTEL_SERVICE_NAME", "").strip() or f"sagaflow-{kind}"


def setup(kind: str) -> bool:
    """Install the tracer provider of this process, of `kind` web, worker or beat. Returns whether tracing is on.

    Called once per process, before Django builds its middleware (the Django instrumentation adds its own).
    """
    from messaging import tracing

    if tracing.enabled:
        return True
    name = exporter_name()
    if name == "none":
        return False
    if name not in EXPORTERS:
        logger.error("OTEL_TRACES_EXPORTER=%s is none of %s; tracing stays off", name, ", ".join(EXPORTERS))
        return False
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    install(BatchSpanProcessor(_exporter(name)), kind=kind)
    logger.info("tracing on: %s spans of %s", name, service_name(kind))
    return True


def install(processor, *, kind: str, provider=None) -> None:
    """Install a tracer provider that hands its spans to `processor`, instrument Django and psycopg, and turn
    tracing on. Tests call it with the SDK's in-memory exporter; a second call only adds the processor."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    from messaging import tracing

    current = trace.get_tracer_provider()
    if provider is None and isinstance(current, TracerProvider):
        provider = current
    if provider is None:
        resource = Resource.create(
            {SERVICE_NAME: service_name(kind), SERVICE_INSTANCE_ID: f"{socket.gethostname()}:{os.getpid()}"}
        )
        provider = TracerProvider(resource=resource, sampler=statements_in_traces(_sampler_of_env()))
        trace.set_tracer_provider(provider)
    provider.add_span_processor(processor)
    _instrument(provider)
    tracing.enabled = True


def _sampler_of_env():
    from opentelemetry.sdk.trace.sampling import _get_from_env_or_default

    return _get_from_env_or_default()


def statements_in_traces(delegate):
    """The sampler `delegate` (that of OTEL_TRACES_SAMPLER), except that a database statement outside any span
    (a relay's poll, a heartbeat) is not recorded: on its own it would be a trace of one span, every second, from
    every loop. Built here, not at import: the SDK is loaded only when tracing is on."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class StatementsInTraces(Sampler):
        def should_sample(
            self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
        ):
            if kind == trace.SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
                return SamplingResult(Decision.DROP)
            return delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"StatementsInTraces{{{delegate.get_description()}}}"

    return StatementsInTraces()


def disabled_instrumentations() -> set[str]:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, as OpenTelemetry's auto-instrumentation reads it: "psycopg" leaves
    out the statements' spans (most of a trace's spans, and of its cost), "django" the requests'."""
    return {name.strip() for name in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")} - {""}


def _instrument(provider) -> None:
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    disabled = disabled_instrumentations()
    if "django" not in disabled and not DjangoInstrumentor().is_instrumented_by_opentelemetry:
        # Health probes and metric scrapes would otherwise be most of the traces.
        DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls="/health,/metrics,/static")
    if "psycopg" not in disabled and not PsycopgInstrumentor().is_instrumented_by_opentelemetry:
        PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)


def _exporter(name: str):
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    # One span a line, so that the output can be read line by line beside the JSON logs.
    return ConsoleSpanExporter(out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + os.linesep)
