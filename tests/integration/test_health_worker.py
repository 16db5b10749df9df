"""/health's worker check sees a wedged loop, not only a dead one, and its broker check does not hang on a broker
that never answers."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from messaging.heartbeat import required_loops, stuck_loops
from tests.e2e.faultproxy import FaultProxy
from tests.integration.test_health import beat, health

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client() -> Client:
    return Client()


def test_a_loop_silent_in_a_worker_whose_other_loops_beat_fails_the_check_even_when_another_worker_has_it(
    client, settings
):
    settings.HEALTH_WORKER_MAX_SILENCE_S = 30
    beat(*required_loops(), worker="host-a:1")
    beat(*(required_loops() - {"relay"}), worker="host-b:2")
    beat("relay", age_s=120, worker="host-b:2")
    beat(*required_loops(), age_s=3600, worker="gone:3")  # a worker that stopped: nothing of it is stuck

    status, body = health(client)

    assert (status, body["failing"]) == (503, ["worker"])
    assert body["checks"]["worker"] == "Unavailable: silent for 30s in a live worker: relay in host-b:2"
    assert stuck_loops(within_s=30) == {"host-b:2": ["relay"]}


def test_a_broker_that_accepts_the_connection_but_never_answers_fails_the_broker_check_within_its_timeout(
    client, settings
):
    beat(*required_loops())
    with FaultProxy(5672) as proxy:
        proxy.silent()
        settings.BROKER_URL = proxy.url(settings.BROKER_URL)

        started = time.monotonic()
        status, body = health(client)

    assert (status, body["failing"]) == (503, ["broker"])
    assert time.monotonic() - started < 4
