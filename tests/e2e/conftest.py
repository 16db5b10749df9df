"""End-to-end fixtures: the API served by pytest-django's live server, and real Celery worker processes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from config.access.services import api_token_create
from tests.plugin import TEST_VHOST, add_vhost, delete_vhost
from tests.processes import Process, celery_worker, wait_for, wait_until_consuming

FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture(autouse=True)
def own_vhost(settings, monkeypatch) -> Iterator[str]:
    """A vhost for this test alone: no message of an earlier test can reach its workers."""
    name = f"{TEST_VHOST}_{uuid.uuid4().hex[:6]}"
    url = add_vhost(name)
    settings.BROKER_URL = url
    monkeypatch.setenv("BROKER_URL", url)
    yield url
    delete_vhost(name)


@pytest.fixture
def api(live_server, transactional_db) -> Iterator[httpx.Client]:
    """An HTTP client of the live server that speaks as an operator (every /api/ path needs a token)."""
    token = api_token_create(role="operator", label="e2e", by="tests").token
    with httpx.Client(base_url=live_server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def worker(transactional_db) -> Iterator[Process]:
    process = celery_worker().start()
    try:
        wait_until_consuming(process)
        yield process
    finally:
        process.stop()
        if process.popen and process.popen.returncode not in (0, None, -15):
            print(process.log()[-4000:])


@pytest.fixture
def started(transactional_db) -> Iterator:
    """Starts processes for the test and stops them after it; waits until a worker consumes its queues."""
    processes: list[Process] = []

    def start(process: Process, queues=("payments", "inventory", "saga")) -> Process:
        processes.append(process.start())
        if queues:
            wait_until_consuming(process, queues)
        return process

    yield start
    for process in processes:
        process.stop()


def place_order(api: httpx.Client, customer_id: str, items: list[dict], **headers: str) -> dict:
    response = api.post("/api/orders", json={"customer_id": customer_id, "items": items}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def wait_final(api: httpx.Client, order_id: str, timeout: float = 30) -> dict:
    def final():
        order = api.get(f"/api/orders/{order_id}").json()
        return order if order["status"] in FINAL else None

    return wait_for(final, timeout=timeout, interval=0.05, message=f"order {order_id} to finish")


def balance(api: httpx.Client, customer_id: str) -> Decimal:
    return Decimal(api.get(f"/api/accounts/{customer_id}").json()["balance"])


def stock(api: httpx.Client, sku: str) -> dict:
    return api.get(f"/api/products/{sku}").json()


def cut_connections(application_name: str, seconds: float, give_up_after: float = 30.0) -> tuple[int, int]:
    """Terminate every backend of `application_name`, over and over, for `seconds` and then until at least one
    of them was cut while busy (in a statement or inside a transaction): a cut that only meets idle connections
    tests nothing, since an idle connection the server closed is replaced without a word. Returns the backends
    cut, and how many of them were busy."""
    from django.db import connection

    cut = busy = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds or (busy == 0 and time.monotonic() - start < give_up_after):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') FROM ("
                " SELECT state, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
                ") AS terminated",
                [application_name],
            )
            terminated, were_busy = cursor.fetchone()
        cut += terminated
        busy += were_busy
        time.sleep(0.05)
    return cut, busy
