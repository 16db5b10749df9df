"""Real faults under a stream of orders: after each, nothing is lost, nothing is doubled, nothing is stuck."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import pytest
from django.conf import settings
from kombu import Connection, Producer

from messaging.models import DeadLetter
from tests.e2e.conftest import cut_connections
from tests.e2e.streams import OrderStream, assert_recovered, in_flight
from tests.processes import celery_beat, celery_worker, wait_for, wait_until_consuming

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


def test_worker_killed_mid_stream_loses_and_doubles_nothing(api, started):
    first = started(celery_worker("worker-a"))
    stream = OrderStream(api, interval=0.01, clients=4)
    stream.start()
    time.sleep(2)

    fault_in_flight = in_flight()
    first.kill()
    time.sleep(1)
    second = started(celery_worker("worker-b"))
    time.sleep(2)

    assert_recovered(api, stream.finish(), [second], name="worker SIGKILL", fault_in_flight=fault_in_flight)


@pytest.mark.exclusive
def test_broker_restart_mid_stream_loses_and_doubles_nothing(api, started):
    worker = started(celery_worker())
    stream = OrderStream(api, interval=0.01, clients=4)
    stream.start()
    time.sleep(2)

    fault_in_flight = in_flight()
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=60)
    try:
        time.sleep(2)
    finally:
        # Whatever happens, the broker comes back: later tests, and other users of this machine, need it.
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=120)
        subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=120)
    wait_until_consuming(worker, timeout=90)
    time.sleep(2)

    assert_recovered(api, stream.finish(), [worker], name="RabbitMQ restart", fault_in_flight=fault_in_flight)


# What the worker logs when a cut meets work in flight: a handler's retry, a batch rolled back, a loop's
# reconnect, a periodic task's failure.
CUT_MET_WORK = re.compile(
    r"transient failure|was rolled back|lost its connection|failed; reconnecting|raised unexpected"
)


def test_database_connections_cut_mid_stream_are_retried(api, started):
    from tests.plugin import worker_database_url

    name = f"sagaflow-worker-{uuid.uuid4().hex[:8]}"
    worker = started(
        celery_worker(DATABASE_URL=f"{worker_database_url()}?application_name={name}", MESSAGING_MAX_ATTEMPTS="10")
    )
    stream = OrderStream(api, interval=0.01, clients=4)
    stream.start()
    time.sleep(2)

    fault_in_flight = in_flight()
    cut, busy = cut_connections(name, seconds=3)
    assert busy > 0, f"{cut} connections cut, none of them busy"
    time.sleep(2)

    assert_recovered(api, stream.finish(), [worker], name="PostgreSQL connections cut", fault_in_flight=fault_in_flight)
    assert CUT_MET_WORK.search(worker.log()), "no cut met a handler, a batch or a loop at work"


POISON = [
    ("payments", "payment.process", b"\x00\xffnot json", "undecodable_body"),
    ("inventory", "inventory.teleport", json.dumps({"order_id": str(uuid.uuid4())}).encode(), "unknown_type"),
    ("saga", "payment.processed", json.dumps({"order_id": "not-a-uuid"}).encode(), "invalid_payload"),
    (
        "saga",
        "payment.failed",
        json.dumps({"order_id": str(uuid.uuid4()), "code": "x", "reason": "y"}).encode(),
        "handler_error",
    ),
]


def test_poison_messages_are_dead_lettered_and_the_stream_goes_on(api, started):
    worker = started(celery_worker())
    stream = OrderStream(api)
    stream.start()
    time.sleep(1)

    fault_in_flight = in_flight()
    poison_ids = set()
    with Connection(settings.BROKER_URL, transport_options={"confirm_publish": True}) as broker:
        producer = Producer(broker.channel())
        for queue, message_type, body, _reason in POISON:
            message_id = str(uuid.uuid4())
            poison_ids.add(message_id)
            producer.publish(
                body,
                exchange="",
                routing_key=queue,
                message_id=message_id,
                type=message_type,
                content_type="application/json",
                content_encoding="binary",
                delivery_mode=2,
            )
    time.sleep(2)

    assert_recovered(
        api, stream.finish(), [worker], poison=poison_ids, name="poison messages", fault_in_flight=fault_in_flight
    )
    reasons = dict(DeadLetter.objects.values_list("routing_key", "reason"))
    assert {reason for *_, reason in POISON} == set(DeadLetter.objects.values_list("reason", flat=True))
    assert reasons["inventory.teleport"] == "unknown_type"
    letter = DeadLetter.objects.get(reason="invalid_payload")
    assert "order_id" in letter.detail and letter.queue == "saga"


def test_a_participant_that_never_replies_is_timed_out_and_its_late_reply_refunded(api, started):
    timing = {"SAGA_PAYMENT_DEADLINE_S": "2", "SAGA_INVENTORY_DEADLINE_S": "2", "SAGA_SWEEP_INTERVAL_S": "0.5"}
    started(celery_worker("core", MESSAGING_CONSUMERS="saga,inventory", **timing), queues=("saga", "inventory"))
    payments = started(celery_worker("payments", MESSAGING_CONSUMERS="payments", **timing), queues=("payments",))
    started(celery_beat(**timing), queues=())
    stream = OrderStream(api, interval=0.1)
    stream.start()
    time.sleep(1)

    # the payments consumer stops: nobody answers payment.process
    payments.stop()
    time.sleep(2)
    fault_in_flight = in_flight()
    orders = stream.finish()
    wait_for(lambda: in_flight() == 0 or _all_compensating(orders), timeout=30, message="the stuck sagas to time out")
    # and comes back: its late replies arrive after the timeout
    payments = started(celery_worker("payments-again", MESSAGING_CONSUMERS="payments", **timing), queues=("payments",))

    result = assert_recovered(
        api, orders, [payments], name="participant never replies", fault_in_flight=fault_in_flight
    )
    assert result["failed"] > 0
    timed_out = [
        o for o in (api.get(f"/api/orders/{o['id']}").json() for o in orders) if o["failure_reason"] == "timeout"
    ]
    assert timed_out, "no order timed out"


def _all_compensating(orders: list[dict]) -> bool:
    from saga.models import Saga

    pending = Saga.objects.filter(
        order_id__in=[o["id"] for o in orders], state__in=["PAYMENT_PENDING", "INVENTORY_PENDING"]
    )
    return not pending.exists()
