"""One order is one trace, in the embedded transport: the HTTP request, each outbox write, each delivery to
payments, inventory and the saga, with parent links that follow the messages' causation (the SDK's in-memory
exporter, in this process). The production topology's counterpart is tests/e2e/test_tracing.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from config.access.services import api_token_create
from messaging import tracing
from messaging.models import OutboxMessage
from tests.factories import make_account, make_product
from tests.integration.support import drain, make_overdue
from tests.traces import (
    as_dicts,
    assert_one_trace_following_causation,
    attribute,
    consumers_in,
    trace_id,
    traced,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("inprocess")]


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    with traced() as exporter:
        yield exporter


def order_placed_over_http(customer: str, sku: str) -> str:
    client = Client()
    token = api_token_create(role="operator", label="tracing", by="tests").token
    response = client.post(
        "/api/orders",
        {"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def outbox_of(order_id: str) -> list[dict[str, str]]:
    return [
        {"message_id": str(row["message_id"]), "causation_id": row["causation_id"], "routing_key": row["routing_key"]}
        for row in OutboxMessage.objects.filter(order_id=order_id)
        .order_by("id")
        .values("message_id", "causation_id", "routing_key")
    ]


def test_one_order_placed_over_http_is_one_trace_through_payments_inventory_and_the_saga(exported):
    # given
    sku = make_product(stock=5, price="3.00").sku
    customer = make_account(balance="50.00").customer_id

    # when
    order_id = order_placed_over_http(customer, sku)
    drain()

    # then
    spans = as_dicts(exported.get_finished_spans())
    requests = [span for span in spans if span["kind"] == "SpanKind.SERVER" and "orders" in span["name"]]
    assert len(requests) == 1, [span["name"] for span in spans]
    the_trace = assert_one_trace_following_causation(spans, requests[0], outbox_of(order_id))
    assert consumers_in(spans, the_trace) == {"payments", "inventory", "saga"}
    in_trace = [span for span in spans if trace_id(span) == the_trace]
    names = {span["name"] for span in in_trace}
    assert {"inbox payments", "handle payment.process", "handle inventory.reserve"} <= names, names
    # The database statements of the request and of each handler are in the trace too (psycopg).
    statements = [span for span in in_trace if attribute(span, "db.system.name", attribute(span, "db.system"))]
    assert any("INSERT" in span["name"] for span in statements), sorted(names)
    processed = [span for span in in_trace if attribute(span, "messaging.operation.type") == "process"]
    assert {attribute(span, "sagaflow.verdict") for span in processed} == {"ack"}
    inbox = [span for span in in_trace if span["name"].startswith("inbox ")]
    assert {attribute(span, "sagaflow.inbox.outcome") for span in inbox} == {"processed"}
    # Every row of the order keeps the traceparent of the span that wrote it: the trace's own.
    assert {row.traceparent.split("-")[1] for row in OutboxMessage.objects.filter(order_id=order_id)} == {
        the_trace.removeprefix("0x")
    }


def test_with_tracing_off_no_trace_context_is_stored_on_the_outbox():
    sku = make_product(stock=5).sku
    customer = make_account().customer_id

    order_id = order_placed_over_http(customer, sku)
    drain()

    assert not tracing.enabled
    rows = OutboxMessage.objects.filter(order_id=order_id)
    assert rows.count() > 1
    assert set(rows.values_list("traceparent", "tracestate")) == {(None, None)}


def test_the_timeout_sweep_acts_in_the_order_trace_and_only_when_it_acts(exported):
    from saga.services import saga_sweep_timeouts

    # given an order whose payment never answers
    sku = make_product(stock=5).sku
    customer = make_account().customer_id
    order_id = order_placed_over_http(customer, sku)
    first_trace = {
        trace_id(span) for span in as_dicts(exported.get_finished_spans()) if span["kind"] == "SpanKind.SERVER"
    }
    exported.clear()

    # when the sweep finds nothing to do, then it leaves no span
    assert saga_sweep_timeouts() == 0
    assert [span["name"] for span in as_dicts(exported.get_finished_spans())] == []

    # when the saga is overdue, the sweep's span is in the order's trace
    make_overdue(order_id)
    assert saga_sweep_timeouts() == 1
    sweeps = [span for span in as_dicts(exported.get_finished_spans()) if span["name"] == "saga timeout sweep"]
    assert len(sweeps) == 1
    assert {trace_id(sweeps[0])} == first_trace
    assert attribute(sweeps[0], "sagaflow.order_id") == order_id
