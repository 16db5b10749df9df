"""Webhooks end to end: real workers on PostgreSQL and RabbitMQ, and the embedded default on SQLite, POSTing to a
real HTTP receiver in the test process (tests/webhook_receiver.py says what each of its paths does)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from messaging.models import DeadLetter
from orders.models import WebhookAttempt, WebhookEndpoint
from orders.webhooks import EVENT_ID_HEADER, event_id_of
from tests.e2e.conftest import place_order, wait_final
from tests.e2e.test_saga_flows import create_account, create_product
from tests.processes import Embedded, celery_worker, wait_for
from tests.webhook_receiver import start_receiver, stop_receiver

pytestmark = [pytest.mark.e2e]

SECRET = "whsec-e2e-0123456789abcdef"
ALL_EVENTS = ["order.completed", "order.failed", "order.cancelled"]
QUEUES = ("payments", "inventory", "saga", "webhooks")
# A worker that gives up on an endpoint fast: three attempts, 1 s then 2 s apart, a second each at most, so that a
# hanging endpoint's third attempt starts 5 s after its first.
TIMING = {"WEBHOOK_TIMEOUT_S": "1", "MESSAGING_RETRY_BASE_S": "1", "MESSAGING_MAX_ATTEMPTS": "3"}


@pytest.fixture
def receiver():
    server = start_receiver(SECRET, hang_s=3.0, slow_s=0.5)
    yield server
    stop_receiver(server)


def outcomes(endpoint: WebhookEndpoint) -> list[tuple]:
    rows = WebhookAttempt.objects.filter(endpoint=endpoint).order_by("attempt")
    return list(rows.values_list("attempt", "status_code", "succeeded"))


def test_a_worker_delivers_signed_retries_times_out_and_dead_letters_and_a_slow_endpoint_stalls_no_order(
    api, started, receiver
):
    # given endpoints of every kind, and a worker that consumes the webhooks queue beside the saga's
    endpoints = {
        path: WebhookEndpoint.objects.create(url=receiver.url + path, secret=SECRET, events=ALL_EVENTS)
        for path in ("/ok", "/flaky/2", "/down", "/timeout", "/slow")
    }
    started(celery_worker("webhooks", **TIMING), QUEUES)
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="100.00")

    # when an order completes
    first = wait_final(api, place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"])
    assert first["status"] == "COMPLETED"
    event_id = event_id_of(first["id"], "order.completed")

    # then a second order, placed while the webhooks of the first are still being tried, ends as fast: the
    # timeouts and the slow endpoint hold up only the webhooks consumer
    placed_at = time.monotonic()
    second = wait_final(api, place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"], timeout=15)
    second_took = time.monotonic() - placed_at
    assert second["status"] == "COMPLETED"
    # (no bound on the clock: a loaded machine may take long; what would show a stall is that the first order's
    # timing-out endpoint, 1 s an attempt and a backoff between, had its three attempts before the second ended)
    tried = len(receiver.to("/timeout"))
    assert tried < 3, f"the first order's webhooks were all tried before the second ended ({second_took:.1f} s)"

    # and in the end every endpoint has been tried as it deserves
    wait_for(
        lambda: len(receiver.to("/timeout")) == 6 and DeadLetter.objects.count() == 4,
        timeout=60,
        interval=0.2,
        message="both orders' webhooks to the failing endpoints to be dead-lettered",
    )
    wait_for(lambda: len(receiver.taken.get("/slow", [])) == 2, timeout=30, message="the slow endpoint to take both")
    second_event = event_id_of(second["id"], "order.completed")
    for path in ("/ok", "/flaky/2", "/slow"):
        assert sorted(receiver.taken[path]) == sorted([event_id, second_event]), path
        assert all(r.verified for r in receiver.to(path)), path
    [ok_first, ok_second] = receiver.to("/ok")
    body = json.loads(ok_first.body)
    assert (body["id"], body["type"], body["data"]["order"]["id"]) == (event_id, "order.completed", first["id"])
    assert ok_first.headers[EVENT_ID_HEADER.lower()] == event_id

    flaky = [r for r in receiver.to("/flaky/2") if r.headers[EVENT_ID_HEADER.lower()] == event_id]
    assert [r.answered for r in flaky] == [503, 503, 204] and len({r.body for r in flaky}) == 1
    flaky_attempts = WebhookAttempt.objects.filter(endpoint=endpoints["/flaky/2"], event_id=event_id)
    assert sorted(flaky_attempts.values_list("attempt", "status_code", "succeeded")) == [
        (1, 503, False),
        (2, 503, False),
        (3, 204, True),
    ]
    assert outcomes(endpoints["/down"]) == [(n, 500, False) for n in (1, 1, 2, 2, 3, 3)]
    hanging = list(WebhookAttempt.objects.filter(endpoint=endpoints["/timeout"]))
    assert len(hanging) == 6 and all(
        a.status_code is None and a.error.startswith("timed out after 1s") for a in hanging
    )
    assert all(900 <= a.duration_ms < 2500 for a in hanging), [a.duration_ms for a in hanging]

    letters = list(DeadLetter.objects.values_list("queue", "routing_key", "reason", "attempts", "detail"))
    assert (
        sorted((q, k, r, n) for q, k, r, n, _ in letters)
        == [("webhooks", "webhook.deliver", "retries_exhausted", 3)] * 4
    )
    details = sorted(d for *_, d in letters)
    assert sum("HTTP 500" in d for d in details) == 2 and sum("timed out" in d for d in details) == 2, details


def test_a_worker_killed_while_an_endpoint_answers_leaves_the_event_owed_and_it_comes_again_with_the_same_id(
    api, started, receiver
):
    # given an endpoint that takes its time, and a worker that waits for it
    receiver.slow_s = 4.0
    slow = WebhookEndpoint.objects.create(url=receiver.url + "/slow", secret=SECRET, events=ALL_EVENTS)
    first = started(celery_worker("doomed", WEBHOOK_TIMEOUT_S="10"), QUEUES)
    sku = create_product(api, stock_level=5, price="10.00")
    customer = create_account(api, balance_amount="100.00")
    order = wait_final(api, place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"])

    # when the worker dies while the endpoint still works on the POST
    wait_for(lambda: receiver.to("/slow"), timeout=20, message="the POST to reach the endpoint")
    first.kill()
    assert not WebhookAttempt.objects.exists()  # the attempt never ended: nothing to record

    # then another worker sends it again, with the same id and body, and the receiver acts once
    started(celery_worker("heir", WEBHOOK_TIMEOUT_S="10"), QUEUES)
    wait_for(lambda: WebhookAttempt.objects.filter(succeeded=True).exists(), timeout=40, message="the resend")
    first_post, resent = receiver.to("/slow")
    assert resent.body == first_post.body and resent.verified
    assert resent.headers[EVENT_ID_HEADER.lower()] == event_id_of(order["id"], "order.completed")
    wait_for(lambda: receiver.duplicates["/slow"] == 1, timeout=10, message="the receiver to see the duplicate")
    assert receiver.taken["/slow"] == [event_id_of(order["id"], "order.completed")]
    assert outcomes(slow) == [(1, 204, True)]
    assert not DeadLetter.objects.exists()


@pytest.fixture
def embedded(tmp_path: Path):
    app = Embedded(
        tmp_path / "embedded.sqlite3", WEBHOOK_TIMEOUT_S="5", MESSAGING_RETRY_BASE_S="0.2", MESSAGING_MAX_ATTEMPTS="3"
    )
    app.manage("migrate", "--noinput")
    token = app.manage("create_api_token", "--role", "operator", "--by", "tests")
    with app.web() as (base_url, _):
        yield base_url, token, app.manage


def test_the_embedded_default_delivers_webhooks_on_a_thread_of_its_own_that_a_slow_endpoint_does_not_stall(
    embedded, receiver
):
    base_url, token, manage = embedded
    receiver.slow_s = 2.0
    for path in ("/slow", "/flaky/1"):
        manage(
            "shell",
            "-c",
            "from orders.models import WebhookEndpoint; "
            f"WebhookEndpoint.objects.create(url={receiver.url + path!r}, secret={SECRET!r}, events={ALL_EVENTS!r})",
        )
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert api.post("/api/products", json={"sku": "MUG", "name": "Mug", "price": "4.00", "stock": 5}).status_code == 201
    assert api.post("/api/accounts", json={"customer_id": "alice", "balance": "40.00"}).status_code == 201

    def ended(order_id: str) -> bool:
        return api.get(f"/api/orders/{order_id}").json()["status"] == "COMPLETED"

    orders = []
    started = time.monotonic()
    for _ in range(3):
        response = api.post("/api/orders", json={"customer_id": "alice", "items": [{"sku": "MUG", "quantity": 1}]})
        assert response.status_code == 201, response.text
        orders.append(response.json()["id"])
        wait_for(lambda: ended(orders[-1]), timeout=10, interval=0.05, message="the order to complete")
    all_ended = time.monotonic() - started

    # Three orders ended one after the other while the slow endpoint answered at most one of their webhooks.
    assert all_ended < 2 * receiver.slow_s, all_ended
    events = sorted(event_id_of(order_id, "order.completed") for order_id in orders)
    wait_for(
        lambda: (
            sorted(receiver.taken.get("/slow", [])) == events and sorted(receiver.taken.get("/flaky/1", [])) == events
        ),
        timeout=30,
        message="every webhook to be delivered",
    )
    assert all(r.verified for r in receiver.requests)
    assert [r.answered for r in receiver.to("/flaky/1")].count(503) == 3  # each event failed once, then was taken
