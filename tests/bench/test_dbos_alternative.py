"""The DBOS Transact alternative the bench compares the product with runs the same saga: money and stock come
out as the product's would, compensation included, and the bench measures it end to end.

Its virtualenv (.venv-dbos) is made by `make` from PyPI on first use: a machine that cannot reach PyPI fails
here, loudly, as it fails `make install`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from scripts.benchmark.api import Api
from scripts.benchmark.deployments import DbosDeployment
from scripts.benchmark.topology import ROOT
from tests.plugin import PG_SERVER

pytestmark = pytest.mark.e2e
DBOS_PYTHON = ROOT / ".venv-dbos" / "bin" / "python"


@pytest.fixture(scope="module")
def dbos_venv() -> Path:
    subprocess.run(["make", "-s", ".venv-dbos/bin/.installed"], cwd=ROOT, check=True, timeout=600)
    return DBOS_PYTHON


@pytest.fixture
def alternative(dbos_venv, tmp_path):
    from scripts.benchmark.cli import parse_args

    args = parse_args(["--system", "dbos", "--postgres-url", PG_SERVER, "--dbos-python", str(dbos_venv)])
    deployment = DbosDeployment(args, uuid.uuid4().hex[:10], tmp_path)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"{deployment.db_name}%",))
        assert left.fetchone()[0] == 0, "the alternative's databases were left behind"


def final(api: Api, order_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, content = api.request("GET", f"/api/orders/{order_id}")
        order = json.loads(content)
        if status == 200 and order["status"] != "PENDING":
            return order
        time.sleep(0.05)
    raise AssertionError(f"order {order_id} still pending after {timeout}s")


def test_the_alternative_charges_reserves_and_compensates_as_the_product_does(alternative):
    api = Api(alternative)
    api.post("/api/products", {"sku": "SCARCE", "name": "scarce", "price": "2.50", "stock": 3})
    api.post("/api/accounts", {"customer_id": "rich", "balance": "100.00"})
    api.post("/api/accounts", {"customer_id": "poor", "balance": "1.00"})

    placed = [
        api.post("/api/orders", {"customer_id": "rich", "items": [{"sku": "SCARCE", "quantity": 1}]}) for _ in range(5)
    ]
    declined = api.post("/api/orders", {"customer_id": "poor", "items": [{"sku": "SCARCE", "quantity": 1}]})
    outcomes = [final(api, order["id"]) for order in placed]

    assert sorted(o["status"] for o in outcomes) == ["COMPLETED"] * 3 + ["FAILED"] * 2
    assert {o["failure_reason"] for o in outcomes if o["status"] == "FAILED"} == {"out_of_stock"}
    assert final(api, declined["id"])["failure_reason"] == "payment_declined"
    # its wait answers an ended order as its status read does, and a pending one at its timeout
    status, content = api.request("GET", f"/api/orders/{placed[0]['id']}/wait?timeout=5")
    assert status == 200 and json.loads(content) == final(api, placed[0]["id"])
    assert all(o["updated_at"] > o["created_at"] for o in outcomes)
    [(stock, rich, poor, refunded)] = alternative.query(
        "SELECT (SELECT stock FROM inventory_product WHERE sku = 'SCARCE'),"
        " (SELECT balance FROM payments_account WHERE customer_id = 'rich'),"
        " (SELECT balance FROM payments_account WHERE customer_id = 'poor'),"
        " (SELECT count(*) FROM payments_payment WHERE status = 'REFUNDED')"
    )
    assert (stock, rich, poor, refunded) == (0, Decimal("92.50"), Decimal("1.00"), 2)
    status, content = api.request(
        "POST", "/api/orders", {"customer_id": "rich", "items": [{"sku": "NONE", "quantity": 1}]}
    )
    assert status == 400, content


def test_the_bench_measures_the_alternative_and_leaves_nothing_behind(dbos_venv, tmp_path):
    out = tmp_path / "results.json"
    command = [sys.executable, "scripts/bench.py", "--system", "dbos", "--phases", "burst,burst_waits"]
    command += ["--burst-orders", "40"]
    command += ["--burst-clients", "4", "--warmup", "2", "--request-cpu-requests", "10", "--out", str(out)]
    command += ["--postgres-url", PG_SERVER, "--dbos-python", str(dbos_venv)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "DBOS Transact alternative benchmark" in finished.stdout
    burst = json.loads(out.read_text())["phases"]["burst"]
    assert (burst["completed"], burst["not_final"], burst["post_errors"]) == (40, 0, 0)
    assert burst["sagas_per_s"] > 0
    assert burst["cpu_s_per_saga"]["web"] > 0 and burst["cpu_s_per_saga"]["postgres backends"] > 0
    assert burst["request_cpu"]["ms_per_request"]["GET /api/orders/{id}"] > 0
    waited = json.loads(out.read_text())["phases"]["burst_waits"]
    assert (waited["completed"], waited["not_final"], waited["post_errors"]) == (40, 0, 0)
