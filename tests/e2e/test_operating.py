"""Operating a real worker: its heartbeats make /health's worker check, and it serves its own metrics."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import place_order, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import celery_worker, free_port, wait_for

pytestmark = [pytest.mark.e2e]


def test_health_sees_a_live_worker_and_names_it_missing_once_it_stops(api, started, settings):
    settings.HEALTH_WORKER_MAX_SILENCE_S = 3
    assert api.get("/health").json()["failing"] == ["worker"]

    worker = started(celery_worker("heartbeat", WORKER_HEARTBEAT_INTERVAL_S="0.5"))
    body = wait_for(
        lambda: (r := api.get("/health")).status_code == 200 and r.json(),
        timeout=15,
        message="/health to see the worker",
    )
    assert body["checks"]["worker"] == "ok"
    worker.stop()

    # Its loops fall silent one after the other, in no set order; wait until every one of them is named.
    loops = ["dead_letters", "inventory", "payments", "relay", "saga", "webhooks"]
    response = wait_for(
        lambda: (r := api.get("/health")).status_code == 503 and all(loop in r.text for loop in loops) and r,
        timeout=15,
        message=f"/health to miss every loop of the stopped worker: {loops}",
    )
    assert response.json()["failing"] == ["worker"]


def test_a_worker_serves_its_handler_latency_on_its_metrics_port(api, started):
    port = free_port()
    started(celery_worker("metrics", METRICS_WORKER_PORT=str(port), METRICS_WORKER_ADDR="127.0.0.1"))
    sku = create_product(api, stock_level=5)
    customer = create_account(api, balance_amount="100.00")
    order = place_order(api, customer, [{"sku": sku, "quantity": 1}])
    assert wait_final(api, order["id"])["status"] == "COMPLETED"

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for consumer, message_type in [
        ("payments", "payment.process"),
        ("inventory", "inventory.reserve"),
        ("saga", "inventory.reserved"),
    ]:
        labels = (("consumer", consumer), ("message_type", message_type))
        assert samples[("sagaflow_handler_duration_seconds_count", labels)] >= 1
    assert ("process_resident_memory_bytes", ()) in samples
    # what the database knows is the web's to say, not each worker's
    assert not any(name.startswith("sagaflow_sagas") for name, _ in samples)
