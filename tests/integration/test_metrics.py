"""/metrics: the database's figures read at scrape time, and the handling metrics of the process that handles.

Rows are counted by difference (before and after), except where a test owns the whole table, so that the
figures of other tests in the same database cannot make these fail.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.parser import text_string_to_metric_families

from messaging import metrics
from messaging.consumers import handle_delivery
from messaging.models import DeadLetter, OutboxMessage, WorkerHeartbeat
from tests.factories import make_account, make_product
from tests.integration.support import drain, make_overdue, order_of, outbox, place

pytestmark = [pytest.mark.django_db(transaction=True)]


def scrape(path: str = "/metrics") -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape of the web's /metrics."""
    response = Client().get(path)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def counter_value(counter: Counter | Histogram, suffix: str, **labels: str) -> float:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix) and sample.labels == labels:
                return sample.value
    return 0.0


def test_sagas_started_completed_and_failed_by_reason_are_read_from_the_database(inprocess):
    before = scrape()
    rich, poor = make_account(balance="100.00"), make_account(balance="1.00")
    sku = make_product(stock=5, price="10.00").sku

    # given one order that completes, one declined, one still pending and overdue
    place(rich.customer_id, (sku, 1))
    place(poor.customer_id, (sku, 1))
    drain()
    stuck = place(rich.customer_id, (sku, 1))
    make_overdue(stuck)

    after = scrape()
    assert value(after, "sagaflow_database_up") == 1
    assert delta(before, after, "sagaflow_sagas_started_total") == 3
    assert delta(before, after, "sagaflow_sagas_completed_total") == 1
    assert delta(before, after, "sagaflow_sagas_failed_total", reason="insufficient_funds") == 1
    assert delta(before, after, "sagaflow_sagas", state="PAYMENT_PENDING") == 1
    assert delta(before, after, "sagaflow_sagas_overdue") == 1
    assert order_of(stuck).status == "PENDING"


def test_the_outbox_backlog_and_the_age_of_its_oldest_message(inprocess):
    OutboxMessage.objects.filter(published_at__isnull=True).update(published_at=timezone.now())
    assert value(scrape(), "sagaflow_outbox_pending") == 0
    assert value(scrape(), "sagaflow_outbox_oldest_pending_age_seconds") == 0

    order_id = place(make_account().customer_id, (make_product().sku, 1))
    OutboxMessage.objects.filter(order_id=order_id).update(created_at=timezone.now() - timedelta(seconds=90))

    samples = scrape()
    assert value(samples, "sagaflow_outbox_pending") == len(outbox(order_id)) == 2
    assert 90 <= value(samples, "sagaflow_outbox_oldest_pending_age_seconds") < 120


def test_dead_letters_by_reason_and_status():
    reason = f"test_reason_{uuid.uuid4().hex[:6]}"
    now = timezone.now()
    for replayed, discarded in [(None, None), (None, None), (now, None), (None, now)]:
        DeadLetter.objects.create(
            message_id=str(uuid.uuid4()),
            routing_key="payment.process",
            queue="payments",
            body="{}",
            reason=reason,
            first_failed_at=now,
            last_failed_at=now,
            replayed_at=replayed,
            discarded_at=discarded,
        )

    samples = scrape()

    assert value(samples, "sagaflow_dead_letters", reason=reason, status="open") == 2
    assert value(samples, "sagaflow_dead_letters", reason=reason, status="replayed") == 1
    assert value(samples, "sagaflow_dead_letters", reason=reason, status="discarded") == 1


def test_the_age_of_each_loops_freshest_heartbeat():
    now = timezone.now()
    loop = f"test-loop-{uuid.uuid4().hex[:6]}"
    for worker, age in [("a:1", 40), ("b:2", 3)]:
        WorkerHeartbeat.objects.create(worker=worker, loop=loop, started_at=now, beat_at=now - timedelta(seconds=age))

    assert 3 <= value(scrape(), "sagaflow_heartbeat_age_seconds", loop=loop) < 10


def test_in_the_embedded_mode_metrics_include_the_dispatchers_handler_latency(inprocess):
    before = counter_value(metrics.HANDLER_SECONDS, "_count", consumer="payments", message_type="payment.process")
    place(make_account().customer_id, (make_product().sku, 1))
    drain()

    samples = scrape()

    count = value(
        samples, "sagaflow_handler_duration_seconds_count", consumer="payments", message_type="payment.process"
    )
    assert count == before + 1
    assert (
        value(
            samples,
            "sagaflow_messages_handled_total",
            consumer="saga",
            message_type="inventory.reserved",
            outcome="processed",
        )
        >= 1
    )


def test_with_a_broker_the_web_does_not_pretend_to_know_the_workers_handler_metrics(settings):
    settings.MESSAGING_TRANSPORT = "amqp"
    metrics.handled("payments", "payment.process", "processed", 0.01)

    names = {name for name, _ in scrape()}

    assert not any(name.startswith("sagaflow_handler_duration_seconds") for name in names)
    assert "sagaflow_sagas_started_total" in names


def test_a_transient_failure_counts_a_retry_and_a_permanent_one_a_dead_letter(inprocess, monkeypatch):
    from django.db import OperationalError

    order_id = place(make_account().customer_id, (make_product().sku, 1))
    row = outbox(order_id, "payment.process")[0]
    properties = {"message_id": str(row.message_id), "correlation_id": row.correlation_id, "type": row.routing_key}
    headers = {"order_id": order_id, "x-attempt": 1}
    retries = counter_value(metrics.RETRIES, "_total", consumer="payments", message_type="payment.process")
    dead = counter_value(metrics.DEAD_LETTERED, "_total", consumer="payments", reason="invalid_payload")

    def down(envelope):
        raise OperationalError("the database went away")

    monkeypatch.setitem(
        __import__("messaging.bus", fromlist=["registry"]).registry()["payments"], "payment.process", down
    )
    assert handle_delivery("payments", row.body(), properties, headers, row.routing_key).action == "retry"
    assert handle_delivery("payments", b'{"order_id": 1}', properties, headers, row.routing_key).action == "dead_letter"

    assert counter_value(metrics.RETRIES, "_total", consumer="payments", message_type="payment.process") == retries + 1
    assert counter_value(metrics.DEAD_LETTERED, "_total", consumer="payments", reason="invalid_payload") == dead + 1


def test_a_database_that_does_not_answer_still_gives_a_scrape_that_says_so(monkeypatch):
    from django.db import OperationalError

    def broken():
        raise OperationalError("no database")
        yield  # pragma: no cover

    monkeypatch.setattr(metrics, "_outbox_families", broken)

    samples = scrape()

    assert value(samples, "sagaflow_database_up") == 0
    assert not any(name.startswith("sagaflow_sagas") for name, _ in samples)
