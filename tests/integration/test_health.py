"""/health tells the truth: each check fails on its own fault, names itself, and the answer is 503.

The checks run in the view's executor threads, on their own database connections, so the rows they must see
are committed: these tests use transactional_db.
"""

from __future__ import annotations

import logging
import socket
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from messaging.heartbeat import INPROCESS, Heartbeat, live_loops, required_loops, worker_name
from messaging.models import DeadLetter, OutboxMessage, WorkerHeartbeat
from saga.models import Saga
from tests.factories import make_account, make_product
from tests.integration.support import place

pytestmark = [pytest.mark.django_db(transaction=True)]

ALL_CHECKS = {"database", "broker", "outbox_lag", "dead_letters", "worker", "stuck_sagas"}


@pytest.fixture
def client() -> Client:
    return Client()


def beat(*loops: str, age_s: float = 0.0, worker: str = "test-host:1") -> None:
    at = timezone.now() - timedelta(seconds=age_s)
    for loop in loops:
        WorkerHeartbeat.objects.update_or_create(worker=worker, loop=loop, defaults={"started_at": at, "beat_at": at})


@pytest.fixture
def live_worker() -> None:
    """Heartbeats of every consumer and the dead-letter store, as a running worker writes them."""
    beat(*required_loops())


def health(client: Client, path: str = "/health") -> tuple[int, dict]:
    response = client.get(path)
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store" or "no-store" in response["Cache-Control"]
    return response.status_code, response.json()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_everything_in_order_answers_200_with_every_check_ok(client, live_worker):
    status, body = health(client)

    assert status == 200, body
    assert body == {"status": "ok", "checks": {name: "ok" for name in ALL_CHECKS}, "failing": []}


def test_without_a_live_worker_the_worker_check_fails_and_names_the_silent_consumers(client):
    beat("payments", "saga", "dead_letters")
    beat("inventory", age_s=120)

    status, body = health(client)

    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["failing"] == ["worker"]
    assert "inventory" in body["checks"]["worker"] and "payments" not in body["checks"]["worker"]


def test_a_worker_whose_relay_is_silent_fails_the_worker_check(client):
    beat("payments", "inventory", "saga", "dead_letters")
    beat("relay", age_s=120)

    status, body = health(client)

    assert (status, body["failing"]) == (503, ["worker"])
    assert "relay" in body["checks"]["worker"] and "payments" not in body["checks"]["worker"]


def test_a_failing_probe_logs_one_warning_naming_the_failures_and_no_traceback(client, caplog):
    beat("payments", "inventory", "saga", "dead_letters")
    beat("relay", age_s=120)

    with caplog.at_level(logging.DEBUG):
        status, body = health(client)

    assert status == 503
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in problems] == [("config.views", "WARNING")]
    assert problems[0].getMessage() == f"unhealthy: worker: {body['checks']['worker']}"
    assert problems[0].exc_info is None and problems[0].failing == ["worker"]


def test_in_the_embedded_mode_the_in_process_dispatcher_is_the_worker(client, settings):
    settings.MESSAGING_TRANSPORT = "inprocess"
    assert required_loops() == {INPROCESS}
    assert health(client)[1]["failing"] == ["worker"]

    beat(INPROCESS)

    status, body = health(client)
    assert status == 200, body


def test_an_old_unpublished_outbox_row_fails_outbox_lag(client, live_worker, settings):
    settings.HEALTH_OUTBOX_LAG_MAX_S = 30
    fresh = OutboxMessage.objects.create(routing_key="order.completed", payload={"order_id": "x"})
    assert health(client)[0] == 200
    stale = OutboxMessage.objects.create(routing_key="order.completed", payload={"order_id": "y"})
    OutboxMessage.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(seconds=45))

    status, body = health(client)

    assert status == 503
    assert body["failing"] == ["outbox_lag"]
    assert "2 unpublished" in body["checks"]["outbox_lag"] and "limit 30s" in body["checks"]["outbox_lag"]
    OutboxMessage.objects.filter(pk__in=[fresh.pk, stale.pk]).update(published_at=timezone.now())
    assert health(client)[0] == 200


def dead_letter(*, age_s: float = 0.0) -> DeadLetter:
    at = timezone.now() - timedelta(seconds=age_s)
    return DeadLetter.objects.create(
        message_id=str(uuid.uuid4()),
        routing_key="payment.process",
        queue="payments",
        body="{}",
        reason="invalid_payload",
        first_failed_at=at,
        last_failed_at=at,
    )


def test_new_dead_letters_in_the_window_fail_until_replayed_or_discarded(client, live_worker, settings):
    settings.HEALTH_DEAD_LETTERS_WINDOW_S = 600
    settings.HEALTH_DEAD_LETTERS_MAX_NEW = 1
    dead_letter(age_s=3600)  # older than the window
    dead_letter()
    assert health(client)[0] == 200  # one new is within the limit
    second = dead_letter()

    status, body = health(client)

    assert (status, body["failing"]) == (503, ["dead_letters"])
    assert "2 new dead letters in the last 600s" in body["checks"]["dead_letters"]
    DeadLetter.objects.filter(pk=second.pk).update(discarded_at=timezone.now(), discarded_by="ops")
    assert health(client)[0] == 200


def test_a_saga_past_its_deadline_by_more_than_a_sweep_interval_fails_stuck_sagas(client, live_worker, settings):
    settings.SAGA_PAYMENT_DEADLINE_S = 30
    settings.SAGA_SWEEP_INTERVAL_S = 5
    order_id = place(make_account().customer_id, (make_product().sku, 1))
    # past the deadline, but the sweep still has time to compensate it
    Saga.objects.filter(order_id=order_id).update(state_entered_at=timezone.now() - timedelta(seconds=32))
    assert health(client)[0] == 200

    Saga.objects.filter(order_id=order_id).update(state_entered_at=timezone.now() - timedelta(seconds=40))

    status, body = health(client)
    assert (status, body["failing"]) == (503, ["stuck_sagas"])
    assert "1 sagas past their deadline" in body["checks"]["stuck_sagas"]


def test_an_unreachable_broker_fails_health_and_readiness_but_not_liveness(client, live_worker, settings):
    settings.BROKER_URL = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"

    status, body = health(client)
    assert (status, body["failing"]) == (503, ["broker"])
    assert "broker unreachable" in body["checks"]["broker"]

    status, body = health(client, "/health/ready")
    assert (status, body["failing"]) == (503, ["broker"])
    assert set(body["checks"]) == {"database", "broker"}

    response = client.get("/health/live")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readiness_asks_only_the_database_and_the_broker(client):
    # no worker, a stuck outbox: the web process can still take requests
    stale = OutboxMessage.objects.create(routing_key="order.completed", payload={"order_id": "z"})
    OutboxMessage.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(days=1))

    status, body = health(client, "/health/ready")

    assert status == 200, body
    assert body["checks"] == {"database": "ok", "broker": "ok"}
    assert health(client)[0] == 503


def test_a_heartbeat_writes_at_most_once_an_interval_and_forgets_long_gone_workers(settings):
    settings.WORKER_HEARTBEAT_INTERVAL_S = 60
    beat("payments", age_s=2 * 86400, worker="gone-host:7")
    heartbeat = Heartbeat("payments")

    heartbeat.beat()
    (row,) = WorkerHeartbeat.objects.all()
    assert (row.worker, row.loop) == (worker_name(), "payments")
    first = row.beat_at
    heartbeat.beat()  # within the interval: no write

    assert WorkerHeartbeat.objects.get().beat_at == first
    assert live_loops(within_s=5) == {"payments"}
