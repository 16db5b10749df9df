"""The embedded default end to end: one gunicorn process on SQLite with the in-process transport, no broker.

The same handlers and the same SQL as the production topology, on the other database engine.
"""

from __future__ import annotations

import re
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, Embedded, Process, asgi_server, free_port, wait_for

FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture
def embedded(tmp_path: Path):
    app = Embedded(tmp_path / "embedded.sqlite3", API_CUSTOMER_ORDER_RATE="2/min")
    app.manage("migrate", "--noinput")
    tokens = {
        "operator": app.manage("create_api_token", "--role", "operator", "--by", "tests"),
        "alice": app.manage("create_api_token", "--role", "customer", "--customer-id", "alice", "--by", "tests"),
    }
    with app.web() as (base_url, _):
        yield base_url, tokens


def test_the_embedded_default_completes_and_fails_orders_and_throttles_a_customer(embedded):
    base_url, tokens = embedded
    operator = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {tokens['operator']}"}, timeout=10)
    alice = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {tokens['alice']}"}, timeout=10)
    assert (
        operator.post("/api/products", json={"sku": "MUG", "name": "Mug", "price": "4.00", "stock": 1}).status_code
        == 201
    )
    assert operator.post("/api/accounts", json={"customer_id": "alice", "balance": "10.00"}).status_code == 201

    placed = [alice.post("/api/orders", json={"items": [{"sku": "MUG", "quantity": 1}]}) for _ in range(3)]

    assert [response.status_code for response in placed] == [201, 201, 429]
    assert 0 < int(placed[2].headers["Retry-After"]) <= 30  # 2/min: one more every 30 s
    orders = [response.json()["id"] for response in placed[:2]]

    def statuses() -> list[str] | None:
        found = [operator.get(f"/api/orders/{order_id}").json()["status"] for order_id in orders]
        return found if set(found) <= FINAL else None

    assert sorted(wait_for(statuses, timeout=30, message="both orders to end")) == ["COMPLETED", "FAILED"]
    assert operator.get("/api/accounts/alice").json()["balance"] == "6.00"  # one charge kept, one refunded
    assert operator.get("/api/products/MUG").json() == {
        "sku": "MUG",
        "name": "Mug",
        "price": "4.00",
        "on_hand": 0,
        "reserved": 0,
        "available": 0,
    }


def test_beside_the_embedded_default_the_asgi_server_answers_waits_from_the_same_sqlite(tmp_path: Path):
    app = Embedded(tmp_path / "embedded.sqlite3")
    app.manage("migrate", "--noinput")
    token = app.manage("create_api_token", "--role", "operator", "--by", "tests")
    headers = {"Authorization": f"Bearer {token}"}
    with asgi_server(app.env, "embedded-asgi") as (waits_url, _):
        # given an order placed while nothing delivers its messages (/health says so): it stays PENDING
        with app.web(ready=(200, 503), MESSAGING_INPROCESS_AUTOSTART="false") as (base_url, _):
            api = httpx.Client(base_url=base_url, headers=headers, timeout=10)
            assert api.post("/api/products", json={"sku": "MUG", "name": "Mug", "price": "4.00", "stock": 1}).is_success
            assert api.post("/api/accounts", json={"customer_id": "bob", "balance": "10.00"}).is_success
            placed = api.post("/api/orders", json={"customer_id": "bob", "items": [{"sku": "MUG", "quantity": 1}]})
        order_id = placed.json()["id"]

        # when a client waits for it, and the embedded default starts again
        with ThreadPoolExecutor(1) as pool:
            wait = pool.submit(httpx.get, f"{waits_url}/api/orders/{order_id}/wait", headers=headers, timeout=60)
            time.sleep(1.0)
            assert not wait.done()
            with app.web() as (base_url, _):
                waited = wait.result(timeout=60)
                read = httpx.get(f"{base_url}/api/orders/{order_id}", headers=headers, timeout=10).json()

    # then the wait answers with the order's end, as the status read shows it
    assert waited.status_code == 200 and waited.json()["status"] == "COMPLETED"
    assert waited.json() == read


def two_free_ports() -> int:
    """A port p on which nothing listens, nor on p + 1: `make run` serves the waits on PORT + 1."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_make_run_serves_the_embedded_default_with_its_waits_and_stops_both_on_sigterm(tmp_path: Path):
    port = two_free_ports()
    env = Embedded(tmp_path / "embedded.sqlite3", PORT=str(port), SECRET_KEY="tests-make-run").env
    run = Process("make-run", [sys.executable, str(ROOT / "scripts" / "run.py")], env).start()
    try:
        # given `make run` with neither DATABASE_URL nor BROKER_URL, once it has printed its demo tokens
        token = wait_for(
            lambda: re.search(r"export ALICE_TOKEN=(\S+)", run.log()), timeout=120, message="the demo tokens"
        ).group(1)
        headers = {"Authorization": f"Bearer {token}"}
        base_url, waits_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        wait_for(lambda: _live(base_url) and _live(waits_url), timeout=60, message="web and web-async")

        # when alice orders as the banner shows, and waits for the order on the port it names
        order = {"customer_id": "alice", "items": [{"sku": "WIDGET-1", "quantity": 1}]}
        placed = httpx.post(f"{base_url}/api/orders", json=order, headers=headers, timeout=10)
        assert placed.status_code == 201, placed.text
        assert f"{waits_url.replace('127.0.0.1', 'localhost')}/api/orders/$ORDER_ID/wait" in run.log()
        waited = httpx.get(f"{waits_url}/api/orders/{placed.json()['id']}/wait", headers=headers, timeout=60)

        # then the wait answers with the completed order, and SIGTERM stops both servers and then make run
        assert waited.status_code == 200 and waited.json()["status"] == "COMPLETED", waited.text
        children = [int(pid) for pid in re.findall(r"run: started (?:web|web-async) \(pid (\d+)\)", run.log())]
        assert len(children) == 2, run.log()[-3000:]
        run.popen.send_signal(signal.SIGTERM)
        assert run.popen.wait(40) == 128 + signal.SIGTERM
        assert not _live(base_url) and not _live(waits_url)
    finally:
        run.kill()


def _live(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
