"""The embedded default end to end: one gunicorn process on SQLite with the in-process transport, no broker.

The same handlers and the same SQL as the production topology, on the other database engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, Process, free_port, wait_for

FINAL = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture
def embedded(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "BROKER_URL"}}
    env.update(
        {"SQLITE_PATH": str(tmp_path / "embedded.sqlite3"), "PYTHONUNBUFFERED": "1", "API_CUSTOMER_ORDER_RATE": "2/min"}
    )

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    manage("migrate", "--noinput")
    tokens = {
        "operator": manage("create_api_token", "--role", "operator", "--by", "tests"),
        "alice": manage("create_api_token", "--role", "customer", "--customer-id", "alice", "--by", "tests"),
    }
    port = free_port()
    # No process flags: gunicorn.conf.py's embedded process model, as `make run` starts it.
    web = Process(
        "embedded-web", [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"], env
    ).start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(base_url), timeout=60, message="the embedded web to answer /health")
        yield base_url, tokens
    finally:
        web.stop()
        if web.popen and web.popen.returncode not in (0, None, -15):
            print(web.log()[-4000:])


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


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
