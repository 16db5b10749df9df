"""rate_limit_take: a burst of `count`, then one every period/count; atomic under concurrent callers."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from config.access.services import rate_limit_take
from tests.factories import unique


@pytest.mark.django_db
def test_a_burst_of_count_passes_then_requests_are_spaced_by_the_interval():
    key, start = unique("key"), 1_000_000.0

    burst = [rate_limit_take(key=key, count=3, period_s=60, now=start) for _ in range(3)]
    refused = rate_limit_take(key=key, count=3, period_s=60, now=start + 1)
    refused_again = rate_limit_take(key=key, count=3, period_s=60, now=start + 1)  # a refusal costs nothing
    after_one_interval = rate_limit_take(key=key, count=3, period_s=60, now=start + 20)
    right_after = rate_limit_take(key=key, count=3, period_s=60, now=start + 20)

    assert burst == [0.0, 0.0, 0.0]
    assert refused == pytest.approx(19.0) and refused_again == pytest.approx(19.0)
    assert after_one_interval == 0.0
    assert right_after == pytest.approx(20.0)
    assert rate_limit_take(key=unique("other"), count=3, period_s=60, now=start + 1) == 0.0  # per key


@pytest.mark.django_db
def test_a_long_idle_key_gets_a_full_burst_again_not_more():
    key, start = unique("key"), 1_000_000.0
    for _ in range(2):
        rate_limit_take(key=key, count=2, period_s=1, now=start)

    later = start + 3600
    allowed = [rate_limit_take(key=key, count=2, period_s=1, now=later) == 0.0 for _ in range(3)]

    assert allowed == [True, True, False]


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_on_separate_connections_pass_exactly_count():
    key = unique("key")
    results: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def caller() -> None:
        try:
            barrier.wait()
            waited = rate_limit_take(key=key, count=5, period_s=3600)
            with lock:
                results.append(waited)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(results) == 12
    assert sum(1 for waited in results if waited == 0.0) == 5
