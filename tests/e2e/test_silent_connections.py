"""Connections that fail the way networks do, through a fault proxy between the worker and its servers.

Under a stream of orders each fault runs, then the proxy heals. Afterwards every order is final, the audit is
clean, nothing was charged twice, and the worker is the same process, beating again: it noticed and recovered
by itself. While the worker's broker or database side is silent, /health answers 503 and names its loops. A
worker stops within seconds of SIGTERM whatever its connections are doing.

The worker runs with short heartbeats and timeouts, so that each fault is noticed within a few seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.utils import timezone

from messaging.heartbeat import required_loops
from messaging.models import WorkerHeartbeat
from tests.e2e.faultproxy import FaultProxy
from tests.e2e.streams import OrderStream, assert_recovered, in_flight
from tests.plugin import worker_database_url
from tests.processes import Process, celery_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

QUICK = {
    "MESSAGING_BROKER_HEARTBEAT_S": "2",
    "MESSAGING_BROKER_TIMEOUT_S": "2",
    "WORKER_HEARTBEAT_INTERVAL_S": "0.5",
    "DATABASE_CONNECT_TIMEOUT_S": "2",
    "DATABASE_STATEMENT_TIMEOUT_S": "3",
    # Each delivery that meets the fault fails at once and is retried; it must not run out of attempts meanwhile.
    "MESSAGING_MAX_ATTEMPTS": "10",
}
# What /health allows the test worker's loops: six of its heartbeat intervals.
MAX_SILENCE_S = 3


@pytest.fixture
def proxies() -> Iterator[dict[str, FaultProxy]]:
    """A fault proxy in front of RabbitMQ ("broker") and one in front of PostgreSQL ("database")."""
    with (
        FaultProxy(urlsplit(settings.BROKER_URL).port) as broker,
        FaultProxy(urlsplit(worker_database_url()).port or 5432) as database,
    ):
        yield {"broker": broker, "database": database}


def proxied_worker(proxies: dict[str, FaultProxy], side: str) -> Process:
    """A worker whose connections to `side` ("broker" or "database") go through its proxy."""
    urls = {"broker": ("BROKER_URL", settings.BROKER_URL), "database": ("DATABASE_URL", worker_database_url())}
    variable, url = urls[side]
    return celery_worker(f"proxied-{side}", **{variable: proxies[side].url(url)}, **QUICK)


def fresh_loops(worker: Process) -> set[str]:
    """The loops that this worker process has beaten for in the last MAX_SILENCE_S."""
    since = timezone.now() - timedelta(seconds=MAX_SILENCE_S)
    name = f"{socket.gethostname()}:{worker.popen.pid}"
    return set(WorkerHeartbeat.objects.filter(worker=name, beat_at__gte=since).values_list("loop", flat=True))


def worker_check_names_every_loop(api, seen: list[str]) -> bool:
    """Whether /health answers 503 with a worker check that names every loop; what it said goes to `seen`."""
    response = api.get("/health")
    said = response.json()["checks"]["worker"]
    seen.append(f"{response.status_code} {said}")
    return response.status_code == 503 and all(loop in said for loop in required_loops())


FAULTS: dict[str, tuple[str, Callable[[FaultProxy], None], bool]] = {
    # name: (which proxy, the fault, whether /health must answer 503 while it lasts)
    "broker silent both ways": ("broker", lambda proxy: proxy.silent(), True),
    "broker silent server to worker": ("broker", lambda proxy: proxy.silent("down"), True),
    "broker silent worker to server": ("broker", lambda proxy: proxy.silent("up"), True),
    "broker reset": ("broker", FaultProxy.reset, False),
    "broker latency": ("broker", lambda proxy: proxy.latency(0.3), False),
    "database silent both ways": ("database", lambda proxy: proxy.silent(), True),
    "database reset": ("database", FaultProxy.reset, False),
    "database latency": ("database", lambda proxy: proxy.latency(0.05), False),
}


def run_fault(api, worker: Process, proxies: dict[str, FaultProxy], name: str) -> None:
    side, inject, silent = FAULTS[name]
    stream = OrderStream(api, interval=0.05)
    stream.start()
    time.sleep(1.5)

    # given orders in flight, when the fault starts
    fault_in_flight = in_flight()
    inject(proxies[side])
    started_at = time.monotonic()
    seen: list[str] = []
    try:
        if silent:
            # then /health sees every loop of the worker stop making progress
            wait_for(
                lambda: worker_check_names_every_loop(api, seen),
                timeout=30,
                interval=0.5,
                message=f"/health to fail the worker check during '{name}'",
            )
        else:
            time.sleep(2.5)  # the orders of the stream meet it: several at 50 ms apart
    except BaseException as error:
        stream.halt.set()
        raise AssertionError(f"{error}; /health said last: {seen[-1:]}") from error
    finally:
        proxies[side].heal()
    noticed_s = time.monotonic() - started_at

    # and once healed the same worker recovers by itself
    assert_recovered(api, stream.finish(), [worker], name=name, fault_in_flight=fault_in_flight)
    wait_for(
        lambda: fresh_loops(worker) >= required_loops(),
        timeout=30,
        message=f"every loop of the worker to beat again after '{name}'",
    )
    wait_for(lambda: api.get("/health").status_code == 200, timeout=30, message=f"/health to pass after '{name}'")
    print(
        f"{name}: {'503 after' if silent else 'lasted'} {noticed_s:.1f}s, "
        f"recovered {time.monotonic() - started_at - noticed_s:.1f}s after healing"
    )


@pytest.fixture
def health_quick(settings) -> None:
    settings.HEALTH_WORKER_MAX_SILENCE_S = MAX_SILENCE_S


@pytest.mark.parametrize("side", ["broker", "database"])
def test_each_fault_of_a_connection_is_noticed_and_the_same_worker_recovers(api, started, proxies, health_quick, side):
    worker = started(proxied_worker(proxies, side))
    pid = worker.popen.pid

    for name in [name for name, (fault_side, *_) in FAULTS.items() if fault_side == side]:
        run_fault(api, worker, proxies, name)

    assert worker.running() and worker.popen.pid == pid


@pytest.mark.parametrize("side", ["broker", "database"])
def test_a_worker_whose_connections_are_silent_stops_within_seconds_of_sigterm(api, started, proxies, side):
    worker = started(proxied_worker(proxies, side))
    stream = OrderStream(api, interval=0.05)
    stream.start()
    time.sleep(1.5)
    proxies[side].silent()
    # long enough for its loops to be stuck in whatever waits on the silent side
    time.sleep(3)

    started_at = time.monotonic()
    os.killpg(worker.popen.pid, signal.SIGTERM)
    try:
        worker.popen.wait(15)
    except Exception:  # noqa: BLE001 - reported below, with the log
        pass
    took = time.monotonic() - started_at
    stream.finish()

    assert not worker.running(), f"still running 15s after SIGTERM:\n{worker.log()[-3000:]}"
    print(f"{side} silent: the worker stopped {took:.1f}s after SIGTERM")
    assert took < 8, f"took {took:.1f}s to stop"
