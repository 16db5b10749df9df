"""Every metric that the alert rules and the Grafana dashboard name is one the code exports, with the labels they
use, and the dashboard shows every sagaflow metric.

What is exported is read from the code itself, not from a list: one scrape of the web's /metrics (the production
one: no in-process dispatcher) against this run's database, and one exposition of the registry a worker serves on
METRICS_WORKER_PORT. A labelled metric shows its labels only once it has a series, so the test first gives each
one: an order that completes and one that fails, a dead letter, a heartbeat, and a series of each worker metric.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from messaging import metrics
from messaging.models import DeadLetter, WorkerHeartbeat
from orders import waiting
from tests.factories import make_account, make_product
from tests.integration.support import drain, place
from tests.unit.test_monitoring import PROMETHEUS_SERIES, TARGET_LABELS, labels_used, queries, selectors

pytestmark = [pytest.mark.django_db(transaction=True)]

# The samples each kind of family exposes (prometheus_client adds the suffixes; `_created` is a family of its own).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "unknown": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}


@dataclass
class Exported:
    families: dict[str, str] = field(default_factory=dict)  # family name -> its kind
    labels: dict[str, set[str]] = field(default_factory=dict)  # sample name -> its label names, once it has a series

    def add(self, text: str) -> None:
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created") and family.name.removesuffix("_created") in self.families:
                continue  # the creation time of a counter or a histogram, not a metric of its own
            self.families[family.name] = family.type
            for sample in family.samples:
                self.labels.setdefault(sample.name, set()).update(sample.labels)

    def sample_names(self, family: str) -> set[str]:
        """The names Prometheus stores a family's samples under, even before it has a series."""
        return {family + suffix for suffix in SUFFIXES[self.families[family]]}

    def exports(self, name: str) -> bool:
        return any(name in self.sample_names(family) for family in self.families)


@pytest.fixture
def exported(inprocess, settings) -> Exported:
    """What Prometheus can scrape from the web and from a worker, with a series in every labelled metric."""
    rich, poor = make_account(balance="100.00"), make_account(balance="1.00")
    sku = make_product(stock=5, price="10.00").sku
    place(rich.customer_id, (sku, 1))
    place(poor.customer_id, (sku, 1))
    drain()
    now = timezone.now()
    DeadLetter.objects.create(
        message_id=str(uuid.uuid4()),
        routing_key="payment.process",
        queue="payments",
        body="{}",
        reason="invalid_payload",
        first_failed_at=now,
        last_failed_at=now,
    )
    WorkerHeartbeat.objects.create(worker="monitoring:1", loop="payments", started_at=now, beat_at=now)
    # A series of each worker metric, without changing any count: the label values are the code's positions.
    metrics.RETRIES.labels("payments", "payment.process")
    metrics.DEAD_LETTERED.labels("payments", "invalid_payload")
    metrics.BATCH_SIZE.labels("payments")
    metrics.BATCHES_SPLIT.labels("payments")
    metrics.HANDED_OFF.labels("payment.processed")
    metrics.HANDOFFS_RELEASED.labels("payment.processed")
    waiting.WAITS.labels("ended")  # the ASGI server's: its /metrics is the web's, with its own waits counted

    settings.MESSAGING_TRANSPORT = "amqp"  # the web of the production topology
    response = Client().get("/metrics")
    assert response.status_code == 200
    found = Exported()
    found.add(response.content.decode())
    found.add(generate_latest(metrics.worker_registry()).decode())
    return found


def unknown_names(exported: Exported, query: str) -> list[str]:
    return [s.name for s in selectors(query) if not exported.exports(s.name) and s.name not in PROMETHEUS_SERIES]


def test_every_metric_the_alerts_and_the_dashboard_name_is_exported(exported):
    unknown = {where: names for where, query in queries() if (names := unknown_names(exported, query))}
    assert not unknown, f"not exported by the web or the worker: {unknown}"


def test_every_label_they_use_is_a_label_of_a_metric_they_select(exported):
    wrong = {}
    for where, query in queries():
        known = set(TARGET_LABELS)
        for selector in selectors(query):
            labels = {**PROMETHEUS_SERIES, **exported.labels}.get(selector.name)
            assert labels is not None, f"{selector.name} has no series to read its labels from: give it one above"
            known |= labels
        if labels_used(query) - known:
            wrong[where] = sorted(labels_used(query) - known)
    assert not wrong, f"labels no metric of the query has: {wrong}"


def test_the_dashboard_shows_every_sagaflow_metric(exported):
    shown = {selector.name for where, query in queries() if where.startswith("panel") for selector in selectors(query)}
    ours = [family for family in exported.families if family.startswith("sagaflow_")]
    assert len(ours) >= 15, ours
    missing = sorted(family for family in ours if not exported.sample_names(family) & shown)
    assert not missing, f"no panel shows {missing}"


def test_a_name_without_its_suffix_or_with_a_wrong_one_is_not_exported(exported):
    # Counters are read as <name>_total, histograms as _bucket, _sum and _count; a gauge has no suffix.
    assert unknown_names(
        exported,
        "sagaflow_sagas_failed + sagaflow_handler_duration_seconds "
        "+ sagaflow_outbox_pending_total + sagaflow_no_such_metric",
    ) == [
        "sagaflow_sagas_failed",
        "sagaflow_handler_duration_seconds",
        "sagaflow_outbox_pending_total",
        "sagaflow_no_such_metric",
    ]
    assert (
        unknown_names(
            exported,
            "sagaflow_sagas_failed_total + sagaflow_handler_duration_seconds_bucket "
            "+ sagaflow_consumer_batch_size_count + sagaflow_outbox_pending + up",
        )
        == []
    )
    assert exported.labels["sagaflow_handler_duration_seconds_bucket"] == {"consumer", "message_type", "le"}
