"""Waits for orders to end, for GET /api/orders/{id}/wait (orders/api.py), with no thread held per waiting request.

The waits of one event loop share one watch: while any request waits, it asks the database every
ORDER_WAIT_POLL_S which of the awaited orders have ended, in one query for all of them, and wakes their requests.
A notification per ended order would save that query, but cost a listening connection per process and a NOTIFY
in the commit of every saga's end, which PostgreSQL queues for all sessions in one place; the query costs about a
millisecond per interval, whatever the number of waits.

Each process counts its own waits (`sagaflow_order_waits_*`, on its /metrics): how many are open now, how each
ended, and the watch's failed queries, which its waits outlive but an operator should see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from prometheus_client import Counter, Gauge

from orders.selectors import orders_ended

logger = logging.getLogger(__name__)

T = TypeVar("T")

WAITS_OPEN = Gauge(
    "sagaflow_order_waits_in_progress",
    "Requests of this process waiting for their order's end (GET /api/orders/{id}/wait).",
)
WAITS = Counter(
    "sagaflow_order_waits",
    "Waits of this process that are over, by outcome: ended (the order did), timed_out (answered as it was at the "
    "wait's timeout) or abandoned (the client went away first).",
    ["outcome"],
)
WATCH_FAILURES = Counter(
    "sagaflow_order_wait_watch_failures",
    "Queries of the waits' watch that failed (the database restarting, say); the waits go on, asked again at the "
    "next interval.",
)


def in_pool(function: Callable[..., T]) -> Callable[..., Any]:
    """`function` as a coroutine that runs on the event loop's thread pool, whose threads keep their database
    connections from one call to the next, checked first as a request's are. Django's own thread per request
    would open a connection for each wait, and hold it while the request waits."""

    def checked(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        return function(*args, **kwargs)

    return sync_to_async(checked, thread_sensitive=False)


class EndWatch:
    """The waits of one event loop. `ended_among(order_ids)` says which of them have ended; it runs on the pool."""

    def __init__(self, interval: float, ended_among: Callable[[list[str]], set[str]]):
        self.interval = interval
        self._ended_among = in_pool(ended_among)
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._watching: asyncio.Task[None] | None = None

    def waiting(self) -> int:
        return sum(len(futures) for futures in self._waiting.values())

    async def ended(self, order_id: str, timeout: float) -> bool:
        """True once the order has ended; False if `timeout` seconds pass first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(order_id, []).append(future)
        if self._watching is None or self._watching.done():
            self._watching = asyncio.create_task(self._watch())
        WAITS_OPEN.inc()
        outcome = "abandoned"  # unless it ends or times out: cancelled, as Django cancels the view of a client gone
        try:
            await asyncio.wait_for(future, timeout)
            outcome = "ended"
            return True
        except TimeoutError:
            outcome = "timed_out"
            return False
        finally:
            WAITS_OPEN.dec()
            WAITS.labels(outcome).inc()
            futures = self._waiting.get(order_id, [])
            if future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[order_id]

    async def _watch(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.interval)
            try:
                ended = await self._ended_among(list(self._waiting))
            except Exception:
                # The watch outlives a failed query (the database restarting, say): its waits go on, and the next
                # interval asks again.
                WATCH_FAILURES.inc()
                logger.warning("could not read which awaited orders have ended", exc_info=True)
                continue
            for order_id in ended:
                for future in self._waiting.pop(order_id, []):
                    if not future.done():
                        future.set_result(None)


_watches: WeakKeyDictionary[asyncio.AbstractEventLoop, EndWatch] = WeakKeyDictionary()


def end_watch() -> EndWatch:
    """The watch of the running event loop (a server has one; a test client makes one per request)."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = EndWatch(settings.ORDER_WAIT_POLL_S, lambda ids: orders_ended(order_ids=ids))
    return watch
