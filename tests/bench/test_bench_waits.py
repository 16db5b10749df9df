"""`make bench` starts the product's ASGI server beside gunicorn, and its phases that wait for outcomes
(burst_waits, api_waits) read every order's end in GET /api/orders/{id}/wait, on real PostgreSQL and RabbitMQ,
and remove the database and the vhost they made."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from scripts.benchmark.topology import ROOT
from tests.plugin import PG_SERVER

pytestmark = pytest.mark.e2e


def test_the_wait_phases_see_every_order_end_through_the_asgi_server(tmp_path):
    out = tmp_path / "results.json"
    command = [sys.executable, "scripts/bench.py", "--phases", "burst_waits,api_waits", "--skip-embedded"]
    command += ["--burst-orders", "30", "--burst-clients", "4", "--api-poll-orders", "30", "--api-poll-clients", "4"]
    command += ["--warmup", "2", "--request-cpu-requests", "0", "--out", str(out), "--postgres-url", PG_SERVER]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    phases = json.loads(out.read_text())["phases"]
    for name in ("burst_waits", "api_waits"):
        phase = phases[name]
        assert (phase["completed"], phase["not_final"], phase["post_errors"]) == (30, 0, 0), name
        assert phase["outcome"] == "wait"
        assert phase["cpu_s_per_saga"]["web-async"] > 0, "the waits were served by the ASGI server"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        run_id = json.loads(out.read_text())["run_id"]
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"%{run_id}%",))
        assert left.fetchone()[0] == 0, "the bench left its database behind"
