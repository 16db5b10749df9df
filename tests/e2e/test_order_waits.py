"""GET /api/orders/{id}/wait on the ASGI server (uvicorn), with real workers on PostgreSQL and RabbitMQ: a client
learns its order's outcome in one request, and waiting requests hold no thread of the server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.access.services import api_token_create
from tests.e2e.conftest import cut_connections, place_order
from tests.e2e.test_saga_flows import create_account, create_product
from tests.plugin import worker_database_url
from tests.processes import Process, asgi_server, celery_worker, process_env

pytestmark = [pytest.mark.e2e]

WAITS = 60


@pytest.fixture
def asgi(transactional_db) -> Iterator[tuple[str, Process, str]]:
    """The ASGI server: (base URL, process, the application_name of its database connections)."""
    name = f"sagaflow-asgi-{uuid.uuid4().hex[:8]}"
    with asgi_server(process_env(DATABASE_URL=f"{worker_database_url()}?application_name={name}")) as (url, server):
        yield url, server, name


def waits_counted(base_url: str, headers: dict) -> dict[str, float]:
    """The ASGI server's own count of its waits, from its /metrics: open now, and over by outcome."""
    answer = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    counted = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            if sample.name == "sagaflow_order_waits_in_progress":
                counted["open"] = sample.value
            elif sample.name == "sagaflow_order_waits_total":
                counted[sample.labels["outcome"]] = sample.value
    return counted


def threads_of(process: Process) -> int:
    assert process.popen is not None
    return len(list(Path(f"/proc/{process.popen.pid}/task").iterdir()))


def test_waits_answer_each_order_once_it_ends_and_hold_no_thread_while_they_wait(api, started, asgi):
    base_url, server, name = asgi
    sku = create_product(api, stock_level=WAITS, price="1.00")
    customer = create_account(api, balance_amount="1000.00")
    # given orders that stay PENDING: no worker runs yet
    orders = [place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"] for _ in range(WAITS)]
    headers = {"Authorization": api.headers["Authorization"]}
    idle_threads = threads_of(server)

    def wait(order_id: str) -> tuple[float, dict]:
        begun = time.monotonic()
        answer = httpx.get(f"{base_url}/api/orders/{order_id}/wait?timeout=50", headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        return time.monotonic() - begun, answer.json()

    with ThreadPoolExecutor(WAITS) as pool:
        # when every order has a client waiting for it
        waits = [pool.submit(wait, order_id) for order_id in orders]
        time.sleep(2.0)
        assert not any(w.done() for w in waits), "a wait answered before its order ended"
        # then the server holds no thread per waiting request
        waiting_threads = threads_of(server)
        assert waiting_threads < idle_threads + 12, (idle_threads, waiting_threads)
        # and its metrics show every one of them waiting
        assert waits_counted(base_url, headers) == {"open": WAITS}
        # and the waits outlive their server's database connections, cut while they wait
        cut, _ = cut_connections(name, seconds=1.0, give_up_after=1.0)
        assert cut >= 1

        # and once a worker runs the sagas, each wait answers with its order's end
        started(celery_worker())
        answers = [w.result(timeout=60) for w in waits]

    assert {body["status"] for _, body in answers} == {"COMPLETED"}
    assert sorted(body["id"] for _, body in answers) == sorted(orders)
    assert all(elapsed > 2.0 for elapsed, _ in answers)
    assert waits_counted(base_url, headers) == {"open": 0, "ended": WAITS}
    # the answer is the status read's, with the same headers that Django's own middleware adds
    read = api.get(f"/api/orders/{orders[0]}")
    assert next(body for _, body in answers if body["id"] == orders[0]) == read.json()
    # and a wait for an order that has ended answers at once
    begun = time.monotonic()
    again = httpx.get(f"{base_url}/api/orders/{orders[0]}/wait?timeout=50", headers=headers, timeout=10)
    assert again.json() == read.json() and time.monotonic() - begun < 2.0
    added = ("x-frame-options", "x-content-type-options", "referrer-policy", "cross-origin-opener-policy")
    assert {name: again.headers.get(name) for name in added} == {name: read.headers.get(name) for name in added}
    assert again.headers["x-frame-options"] == "DENY"


def test_a_wait_ends_at_its_timeout_and_refuses_what_the_status_read_refuses(api, asgi, live_server):
    base_url, server, _ = asgi
    sku = create_product(api, stock_level=5, price="1.00")
    customer = create_account(api, balance_amount="10.00")
    order_id = place_order(api, customer, [{"sku": sku, "quantity": 1}])["id"]  # PENDING: no worker runs
    operator = {"Authorization": api.headers["Authorization"]}

    def ask(path: str, headers: dict | None = None) -> httpx.Response:
        return httpx.get(f"{base_url}{path}", headers=operator if headers is None else headers, timeout=10)

    begun = time.monotonic()
    timed_out = ask(f"/api/orders/{order_id}/wait?timeout=1")
    assert timed_out.status_code == 200 and timed_out.json()["status"] == "PENDING"
    assert 1.0 <= time.monotonic() - begun < 5.0
    assert ask(f"/api/orders/{order_id}/wait?timeout=0").json()["status"] == "PENDING"
    assert waits_counted(base_url, operator) == {"open": 0, "timed_out": 2}

    for bad in ("-1", "61", "soon", "1.5"):
        refused = ask(f"/api/orders/{order_id}/wait?timeout={bad}")
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["code"] == "invalid_request" and "timeout" in refused.json()["details"]
    assert ask(f"/api/orders/{order_id}/wait", headers={}).status_code == 401
    missing = ask("/api/orders/00000000-0000-4000-8000-000000000000/wait")
    assert missing.status_code == 404 and missing.json()["code"] == "order_not_found"
    other = api_token_create(role="customer", customer_id="someone-else", label="e2e", by="tests").token
    assert ask(f"/api/orders/{order_id}/wait", headers={"Authorization": f"Bearer {other}"}).status_code == 404

    # the WSGI server, whose threads a wait would hold, sends the client to the ASGI one
    misdirected = api.get(f"/api/orders/{order_id}/wait")
    assert misdirected.status_code == 421 and misdirected.json()["code"] == "wait_needs_asgi"

    # and the server's own lines are the application's JSON (LOG_FORMAT=json), its access lines included
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {"uvicorn.error", "uvicorn.access"} <= {line["logger"] for line in lines}
    assert all("color_message" not in line for line in lines)
