"""One order is one trace across processes, in the production topology: a gunicorn web process and a Celery
worker on PostgreSQL and RabbitMQ, each exporting its spans with OTEL_TRACES_EXPORTER=console. The trace holds the
web's request and the worker's deliveries to payments, inventory and the saga, linked as the messages caused one
another, through the traceparent each outbox row keeps and the relay sends as an AMQP header. And the same in
the embedded default: one gunicorn process on SQLite, its in-process transport carrying the rows' traceparent.

The order's spans are kept as a test artefact (trace-*.json in TEST_LOG_DIR): scripts/trace_view.py draws them.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from config.access.services import api_token_create
from messaging.models import OutboxMessage
from tests.factories import make_account, make_product
from tests.processes import (
    LOG_DIR,
    Embedded,
    Process,
    celery_worker,
    free_port,
    process_env,
    wait_for,
    wait_until_consuming,
)
from tests.traces import (
    assert_one_trace_following_causation,
    attribute,
    consumers_in,
    service,
    spans_in_output,
    trace_id,
)

pytestmark = [pytest.mark.e2e]

TRACED = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"}
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture(params=["true", "false"], ids=["hand-off", "broker"])
def traced_processes(request, transactional_db, started):
    """A traced gunicorn web process and a traced worker, on this test's database and vhost: with the local
    hand-off (MESSAGING_LOCAL_HANDOFF=true), and with every message through the broker (the default)."""
    traced = {**TRACED, "MESSAGING_LOCAL_HANDOFF": request.param}
    port = free_port()
    web = Process(
        "traced-web",
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"],
        process_env(**traced, WEB_CONCURRENCY="1", WEB_THREADS="2"),
    )
    started(web, queues=())
    worker = started(celery_worker("traced-worker", **traced), queues=())
    wait_until_consuming(worker)
    base_url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(base_url), timeout=60, message="the traced web to answer")
    return base_url, web, worker, request.param == "true"


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def test_one_order_over_http_is_one_trace_across_the_web_and_the_worker(traced_processes):
    base_url, web, worker, handing_off = traced_processes
    sku = make_product(stock=5, price="2.00").sku
    customer = make_account(balance="20.00").customer_id
    token = api_token_create(role="operator", label="tracing", by="tests").token

    # when an order is placed over HTTP and runs to its end
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        placed = api.post("/api/orders", json={"customer_id": customer, "items": [{"sku": sku, "quantity": 1}]})
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        wait_for(
            lambda: api.get(f"/api/orders/{order_id}").json()["status"] in FINAL,
            timeout=60,
            message=f"order {order_id} to finish",
        )
    assert api_order_status(base_url, token, order_id) == "COMPLETED"
    rows = list(OutboxMessage.objects.filter(order_id=order_id).order_by("id"))
    messages = [
        {"message_id": str(row.message_id), "causation_id": row.causation_id, "routing_key": row.routing_key}
        for row in rows
    ]
    # what the relay published (with the hand-off, the saga's commands and replies went to the worker's own
    # consumers: processed in the same trace, never sent)
    published = {str(row.message_id) for row in rows if not row.handed_off}
    assert (published != {m["message_id"] for m in messages}) == handing_off
    # the last message a consumer here processes (order.completed is published for subscribers elsewhere)
    the_last = [m for m in messages if m["routing_key"] == "inventory.reserved"][-1]["message_id"]

    # then, once both processes have exported the order's spans (each batch within 100 ms): the last message
    # processed, and the relay's publish of every row it published (order.completed's comes after the last
    # processing)
    def exported():
        spans = spans_in_output(web.log()) + spans_in_output(worker.log())
        done = [span for span in spans if attribute(span, "messaging.message.id") == the_last]
        sent = {
            attribute(span, "messaging.message.id")
            for span in spans
            if attribute(span, "messaging.operation.type") == "send"
        }
        processed = any(attribute(span, "messaging.operation.type") == "process" for span in done)
        return spans if processed and sent >= published else None

    spans = wait_for(exported, timeout=30, message="the spans of the order's last message")
    requests = [span for span in spans if span["kind"] == "SpanKind.SERVER" and span["name"] == "POST api/orders"]
    assert len(requests) == 1, sorted({span["name"] for span in spans})
    the_trace = assert_one_trace_following_causation(spans, requests[0], messages)
    in_trace = [span for span in spans if trace_id(span) == the_trace]
    assert {service(span) for span in in_trace} == {"sagaflow-web", "sagaflow-worker"}
    assert consumers_in(spans, the_trace) == {"payments", "inventory", "saga"}

    # each relay publish is in the trace, under the span that wrote its row and linked to it, with the relay lag
    by_id = {span["context"]["span_id"]: span for span in in_trace}
    sends = [span for span in in_trace if attribute(span, "messaging.operation.type") == "send"]
    assert {attribute(send, "messaging.message.id") for send in sends} == published and len(sends) == len(published)
    for send in sends:
        writer = by_id[send["parent_id"]]
        assert attribute(writer, "messaging.operation.type") == "create"
        assert [link["context"]["span_id"] for link in send["links"]] == [writer["context"]["span_id"]]
        assert attribute(send, "messaging.system") == "rabbitmq"
        assert attribute(send, "sagaflow.relay.lag_ms") >= 0
    # the database statements of both processes are in it
    statements = {service(span) for span in in_trace if span["kind"] == "SpanKind.CLIENT"}
    assert statements == {"sagaflow-web", "sagaflow-worker"}
    # and the worker's log lines of the order carry its trace id beside the correlation id
    handled = [
        line
        for line in map(_json_or_none, worker.log().splitlines())
        if line and line.get("order_id") == order_id and str(line.get("message", "")).startswith("handled ")
    ]
    assert handled and {line["trace_id"] for line in handled} == {the_trace.removeprefix("0x")}
    assert all(line["correlation_id"] and line["span_id"] for line in handled)

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"trace-{order_id}.json").write_text(json.dumps(in_trace, indent=1))


def api_order_status(base_url: str, token: str, order_id: str) -> str:
    response = httpx.get(f"{base_url}/api/orders/{order_id}", headers={"Authorization": f"Bearer {token}"})
    return response.json()["status"]


def _json_or_none(raw: str) -> dict | None:
    if not raw.startswith("{"):
        return None
    try:
        found = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return found if isinstance(found, dict) and "level" in found else None


@pytest.fixture
def sampler() -> dict[str, str]:
    """The sampling of the traced processes: the SDK's default unless a test says otherwise."""
    return {}


@pytest.fixture
def traced_embedded(tmp_path: Path, sampler: dict[str, str]):
    """The embedded default, traced: one gunicorn process on SQLite with the in-process transport, no broker."""
    database = tmp_path / "embedded.sqlite3"
    app = Embedded(database, LOG_FORMAT="json", LOG_LEVEL="info")
    app.manage("migrate", "--noinput")
    token = app.manage("create_api_token", "--role", "operator", "--by", "tests")
    with app.web("traced-embedded", ready=(200, 503), **TRACED, **sampler) as (base_url, web):
        yield base_url, token, web, database


def completed_embedded_order(base_url: str, token: str) -> str:
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        assert api.post("/api/products", json={"sku": "MUG", "name": "Mug", "price": "4.00", "stock": 3}).is_success
        assert api.post("/api/accounts", json={"customer_id": "ann", "balance": "10.00"}).is_success
        placed = api.post("/api/orders", json={"customer_id": "ann", "items": [{"sku": "MUG", "quantity": 1}]})
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        wait_for(
            lambda: api.get(f"/api/orders/{order_id}").json()["status"] in FINAL,
            timeout=60,
            message=f"order {order_id} to finish",
        )
        assert api.get(f"/api/orders/{order_id}").json()["status"] == "COMPLETED"
    return order_id


def test_one_order_over_http_is_one_trace_in_the_embedded_default(traced_embedded):
    base_url, token, web, database = traced_embedded
    order_id = completed_embedded_order(base_url, token)
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT message_id, causation_id, routing_key FROM messaging_outboxmessage WHERE order_id = ? ORDER BY id",
            [order_id],
        ).fetchall()
    # SQLite keeps a UUID as its 32 hex digits.
    messages = [
        {"message_id": str(uuid.UUID(message_id)), "causation_id": causation_id, "routing_key": routing_key}
        for message_id, causation_id, routing_key in rows
    ]
    # the last message a consumer here processes (order.completed is published for subscribers elsewhere)
    the_last = [m for m in messages if m["routing_key"] == "inventory.reserved"][-1]["message_id"]

    def exported():
        spans = spans_in_output(web.log())
        processed = [span for span in spans if attribute(span, "messaging.message.id") == the_last]
        return spans if any(attribute(span, "messaging.operation.type") == "process" for span in processed) else None

    spans = wait_for(exported, timeout=30, message="the spans of the order's last message")
    requests = [span for span in spans if span["kind"] == "SpanKind.SERVER" and span["name"] == "POST api/orders"]
    assert len(requests) == 1, sorted({span["name"] for span in spans})
    the_trace = assert_one_trace_following_causation(spans, requests[0], messages)
    assert consumers_in(spans, the_trace) == {"payments", "inventory", "saga"}
    in_trace = [span for span in spans if trace_id(span) == the_trace]
    assert {service(span) for span in in_trace} == {"sagaflow-web"}
    assert {attribute(span, "messaging.system") for span in in_trace} - {None} == {"sagaflow_inprocess"}


@pytest.mark.parametrize(
    "sampler", [{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}]
)
def test_a_sampled_out_order_is_traced_nowhere_not_even_by_its_consumers(traced_embedded):
    base_url, token, web, database = traced_embedded
    order_id = completed_embedded_order(base_url, token)

    # the rows keep the request's trace, flagged unsampled (the flags' lowest bit), and no span of the order is
    # recorded, not even by the consumers
    with sqlite3.connect(database) as db:
        stored = {
            row[0]
            for row in db.execute("SELECT traceparent FROM messaging_outboxmessage WHERE order_id = ?", [order_id])
        }
    assert len(stored) > 1 and all(value and not int(value[-2:], 16) & 1 for value in stored), stored
    assert len({value.split("-")[1] for value in stored}) == 1
    web.stop()  # the SDK exports what it holds at exit
    assert spans_in_output(web.log()) == []
