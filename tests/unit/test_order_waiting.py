"""The watch that the waits of one event loop share (orders/waiting.py): one query per interval for all of them,
every wait woken when its order ends, and nothing left behind by a wait that timed out or was cancelled. Each
counts in the process's metrics as what it was."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from orders.waiting import EndWatch


class Counts:
    """The process's wait metrics now, and what has changed since."""

    NAMES = {
        "open": ("sagaflow_order_waits_in_progress", {}),
        "ended": ("sagaflow_order_waits_total", {"outcome": "ended"}),
        "timed_out": ("sagaflow_order_waits_total", {"outcome": "timed_out"}),
        "abandoned": ("sagaflow_order_waits_total", {"outcome": "abandoned"}),
        "watch_failures": ("sagaflow_order_wait_watch_failures_total", {}),
    }

    def __init__(self) -> None:
        self.before = self.now()

    def now(self) -> dict[str, float]:
        return {key: REGISTRY.get_sample_value(name, labels) or 0.0 for key, (name, labels) in self.NAMES.items()}

    def changed(self) -> dict[str, float]:
        now = self.now()
        return {key: now[key] - self.before[key] for key in now if now[key] != self.before[key]}


class Orders:
    """Which orders have ended, and what the watch asked."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.asked: list[list[str]] = []
        self.failures = 0

    def ended_among(self, order_ids: list[str]) -> set[str]:
        self.asked.append(sorted(order_ids))
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database went away")
        return self.ended & set(order_ids)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


def test_every_wait_for_an_order_wakes_when_it_ends_and_all_waits_share_each_query():
    orders = Orders()
    watch = EndWatch(0.01, orders.ended_among)
    counts = Counts()

    async def scenario():
        waits = [asyncio.create_task(watch.ended(order_id, 5)) for order_id in ("a", "a", "b")]
        await asyncio.sleep(0.05)
        assert watch.waiting() == 3 and not any(w.done() for w in waits)
        assert counts.changed() == {"open": 3}
        orders.ended.add("a")
        first, second = await asyncio.gather(waits[0], waits[1])
        assert first and second and not waits[2].done()
        orders.ended.add("b")
        assert await waits[2]
        return watch.waiting()

    assert run(scenario()) == 0
    assert ["a", "b"] in orders.asked, "one query asks for every awaited order"
    assert orders.asked[-1] == ["b"], "an order that ended is asked for no more"
    assert counts.changed() == {"ended": 3}


def test_a_wait_past_its_timeout_says_so_and_leaves_nothing_behind():
    orders = Orders()
    watch = EndWatch(0.01, orders.ended_among)
    counts = Counts()

    async def scenario():
        ended = await watch.ended("a", 0.05)
        await asyncio.sleep(0.05)
        return ended, watch.waiting(), len(orders.asked)

    ended, waiting, asked = run(scenario())
    assert ended is False and waiting == 0
    assert asked == len(orders.asked), "with nothing to wait for, the watch stops asking"
    assert counts.changed() == {"timed_out": 1}


def test_a_cancelled_wait_is_forgotten():
    orders = Orders()
    watch = EndWatch(0.01, orders.ended_among)
    counts = Counts()

    async def scenario():
        wait = asyncio.create_task(watch.ended("a", 5))
        await asyncio.sleep(0.03)
        wait.cancel()  # the client went away: Django cancels its view
        await asyncio.gather(wait, return_exceptions=True)
        return watch.waiting()

    assert run(scenario()) == 0
    assert counts.changed() == {"abandoned": 1}


def test_the_watch_outlives_failed_queries():
    orders = Orders()
    orders.failures = 3
    watch = EndWatch(0.01, orders.ended_among)
    counts = Counts()

    async def scenario():
        wait = asyncio.create_task(watch.ended("a", 5))
        await asyncio.sleep(0.1)
        orders.ended.add("a")
        return await wait

    assert run(scenario()) is True
    assert orders.failures == 0 and len(orders.asked) > 3
    assert counts.changed() == {"watch_failures": 3, "ended": 1}
