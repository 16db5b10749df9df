"""A backlog is handled in batches, one transaction for several deliveries, and a batch holding a poison
message is rolled back and handled one message at a time: nothing lost, nothing doubled either way."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from django.conf import settings
from kombu import Connection, Producer
from prometheus_client.parser import text_string_to_metric_families

from messaging import topology
from messaging.models import DeadLetter, InboxMessage
from messaging.relay import ConfirmingPublisher, relay_once
from tests.e2e.conftest import place_order
from tests.e2e.streams import assert_recovered
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import celery_worker, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def worker_metrics(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_backlog_is_handled_in_batches_and_a_poisoned_batch_one_message_at_a_time(api, started):
    sku = create_product(api, stock_level=100)
    customers = [create_account(api, balance_amount="100.00") for _ in range(4)]
    # Orders placed while no worker runs: their messages wait in the outbox, then all reach the queues at once.
    orders = [place_order(api, customers[i % 4], [{"sku": sku, "quantity": 1}]) for i in range(40)]
    poison_id = str(uuid.uuid4())
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        topology.declare_all(broker.default_channel)
        # First in the payments queue, then the orders' payment.process, as a relay publishes them: the first
        # batch holds the poison.
        Producer(broker.channel()).publish(
            json.dumps({"order_id": "not-a-uuid", "customer_id": "x", "amount": "1.00", "currency": "EUR"}),
            exchange="",
            routing_key="payments",
            message_id=poison_id,
            type="payment.process",
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
        )
        assert relay_once(ConfirmingPublisher(broker)) >= len(orders)

    port = free_port()
    worker = started(celery_worker("batches", METRICS_WORKER_PORT=str(port), METRICS_WORKER_ADDR="127.0.0.1"))

    result = assert_recovered(
        api, orders, [worker], poison={poison_id}, name="backlog with poison", fault_in_flight=len(orders)
    )
    assert result["completed"] == len(orders)
    assert DeadLetter.objects.get(message_id=poison_id).reason == "invalid_payload"
    # Each message applied once by each of its consumers, batch or not.
    assert InboxMessage.objects.filter(routing_key="payment.process").count() == len(orders)
    assert InboxMessage.objects.filter(consumer="saga").count() == 2 * len(orders)

    samples = worker_metrics(port)
    for consumer in ("payments", "inventory", "saga"):
        labels = (("consumer", consumer),)
        batches = samples[("sagaflow_consumer_batch_size_count", labels)]
        deliveries = samples[("sagaflow_consumer_batch_size_sum", labels)]
        assert deliveries > batches, f"{consumer}: every delivery was handled alone"
    assert samples[("sagaflow_consumer_batches_split_total", (("consumer", "payments"),))] >= 1
