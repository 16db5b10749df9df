"""A token revoked anywhere is refused by every gunicorn worker at the database's notice, though each keeps the
tokens it has looked up (API_TOKEN_CACHE_S, its default here): each forked worker listens on its own."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from config.access.services import api_token_create
from tests.plugin import worker_database_url
from tests.processes import Process, free_port, manage, process_env, wait_for

pytestmark = [pytest.mark.e2e]

NAME = "tokens-web"


def listeners() -> int:
    """The web's connections that listen for token changes (their last statement is the LISTEN or the probe)."""
    with psycopg.connect(worker_database_url(), autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND (query LIKE 'LISTEN sagaflow_api_token%%' OR query = 'SELECT 1')",
            [NAME],
        ).fetchone()[0]


def test_every_gunicorn_worker_refuses_a_token_revoked_by_the_command(transactional_db, started):
    port = free_port()
    web = Process(
        NAME,
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "-w", "2", "--threads", "4"],
        process_env(DATABASE_URL=f"{worker_database_url()}?application_name={NAME}"),
    )
    started(web, queues=())
    token = api_token_create(role="operator", label="revoked", by="tests").token
    url = f"http://127.0.0.1:{port}/api/products"
    headers = {"Authorization": f"Bearer {token}"}

    def statuses(count: int) -> list[int]:
        with httpx.Client(headers=headers, timeout=10) as client, ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: client.get(url).status_code, range(count)))

    def answers() -> bool:
        try:
            return statuses(1) == [200]
        except httpx.TransportError:
            return False

    wait_for(answers, timeout=60, message="the web to answer")
    # Until both workers have served the token and so listen (each starts its listener at its first lookup).
    wait_for(lambda: statuses(40) == [200] * 40 and listeners() == 2, timeout=30, message="both workers to listen")

    manage("revoke_api_token", token, "--by", "tests")

    wait_for(lambda: set(statuses(40)) == {401}, timeout=2, interval=0.05, message="every worker to refuse it")
    assert set(statuses(80)) == {401}
